"""Convolution strips: a convolution whose GEMM rows share activation entries (docs/driver.md,
"Convolution strips")."""


import numpy as np

from intdeploy.host.job import Strips

__all__ = ["conv_strips"]

def conv_strips(x, layer, info):
    """The activation entries of a convolution as strips (docs/driver.md, "Convolution strips").

    Strip ``(image, oh)`` holds, for each column ``col`` of the padded input, the ``KH`` pixels
    ``(oh*sh + kh, col)``, each as ``P = ceil(Cin / C)`` entries (channels padded with the zero
    point): ``L = J * sw * KH * P`` entries, ``J = ceil(Wp / sw)`` columns groups. GEMM row ``j`` of
    the strip starts at entry ``j * row_step`` (``row_step = sw * KH * P``) and reads ``KW * KH * P``
    consecutive entries: columns ``j*sw .. j*sw + KW - 1``, i.e. output ``(oh, j)`` with the weights
    in ``(kw, kh, c)`` order. Rows ``j >= OW`` read into the next strip; their results are dropped.
    Returns the :class:`~intdeploy.host.job.Strips` of the :class:`~intdeploy.host.job.GemmJob` (with the reordered weights; their padded
    channels hold the weight zero point when representable, else 0), or None for a 1-step kernel.
    """
    C = info.cols
    w = layer.weight.astype(np.int64)
    n, kh, kw, cin = w.shape
    if kh * kw == 1:
        return None
    sh, sw = layer.stride
    (pt, pb), (pl, pr) = layer.padding
    zp = layer.input_zero_point
    P_ = -(-cin // C)
    b, h, wd, _ = x.shape
    hp, wp = h + pt + pb, wd + pl + pr
    J = -(-wp // sw)
    xp = np.full((b, hp, J * sw, P_ * C), zp, dtype=np.int64)
    xp[:, pt:pt + h, pl:pl + wd, :cin] = x
    oh_n = (hp - kh) // sh + 1
    ow_n = (wp - kw) // sw + 1
    rows = np.arange(oh_n)[:, None] * sh + np.arange(kh)[None, :]            # (OH, KH) input rows
    strips = xp[:, rows]                                                      # (B, OH, KH, cols, P*C)
    entries = strips.transpose(0, 1, 3, 2, 4).reshape(b * oh_n, J * sw * kh * P_, C)
    wlo, whi = -(1 << (info.weight_bits - 1)), (1 << (info.weight_bits - 1)) - 1
    w_zp = np.broadcast_to(np.asarray(layer.weight_zero_point, dtype=np.int64), (n,))
    fill = np.where((w_zp >= wlo) & (w_zp <= whi), w_zp, 0)
    ws = np.broadcast_to(fill[:, None, None, None], (n, kw, kh, P_ * C)).copy()
    ws[..., :cin] = w.transpose(0, 2, 1, 3)
    return Strips(entries=entries, per_strip=J, valid=ow_n, row_step=sw * kh * P_, w=ws.reshape(n, kw * kh * P_ * C))
