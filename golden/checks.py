"""Argument checks shared by every layer: one message per kind of mistake, naming the argument."""

import numpy as np

__all__ = ["check_int"]


def check_int(name, value, lo=None, hi=None):
    """``value`` as a Python int: an integer (not a bool) within ``[lo, hi]`` (either bound may
    be None). ValueError otherwise, one line naming ``name``: ``name: expected an integer, got
    'x'`` or ``name: 9 is out of range; allowed [1, 8]``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: expected an integer, got {value!r}")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        allowed = f"[{lo}, {hi}]" if lo is not None and hi is not None else f">= {lo}" if lo is not None else f"<= {hi}"
        raise ValueError(f"{name}: {int(value)} is out of range; allowed {allowed}")
    return int(value)
