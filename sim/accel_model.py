"""Executable model of the accelerator top: what the RTL does with a stream of command packets.

:class:`AcceleratorModel` implements docs/protocol.md exactly: the buffers sized by
:class:`intdeploy.host.protocol.Info`, every check with its error code in the documented precedence (word
by word, first error wins, TLAST seen on the last word of its beat, padding to the end of the
beat, partial writes, the threshold-channel disable rule), the RUN arithmetic computed with
golden's functions only (:func:`intdeploy.golden.mac_array.linear`, :func:`intdeploy.golden.requantizer.requantize`,
:func:`intdeploy.golden.threshold.threshold`, :func:`intdeploy.golden.add.add`, :func:`intdeploy.golden.pool.pool_windows`),
the response packing and the STATUS counters. The RTL top's bench compares its responses with
this model's, response by response and word by word (:func:`response_mismatch`), except the
implementation-defined STATUS words ``cycles`` and ``busy_cycles``.

Any input is defined: random words, missing fields and huge lengths give exactly one response
per packet and never an exception. Responses are emitted when a packet's TLAST beat has been
processed, so the model buffers the packet's words and then walks them in order; this is
equivalent to checking word by word as the hardware does, because nothing is observable before
TLAST and the walk stops at the first error.

Cycle counters are the model's own idealised counts (one word per cycle on either stream, two for
the entries of buffer writes where the top takes two (:func:`input_cycles`), one MAC step per
cycle, no latency): ``cycles`` = input cycles + words sent + MAC steps, less the input cycles
of buffer writes the top executes while a RUN computes (docs/protocol.md "Overlap": writes behind
a RUN, with only such writes between, that do not meet its entries; at most the RUN's MAC steps);
``busy_cycles`` = ``mac_cycles`` = MAC steps of the executed RUNs. Only ``mac_cycles`` is
implementation-independent (:func:`~intdeploy.host.timing.program_cycles` computes ``cycles`` for a program without
executing it, :mod:`intdeploy.host.timing`, shared with the driver's cost model).
:attr:`AcceleratorModel.overlap` tells how the last packet stood to the RUN before it.
:class:`ModelEngine` runs the model as an engine of :func:`intdeploy.host.driver.run_network`.
"""

import numpy as np

from intdeploy import wire
from intdeploy.golden.add import AddParams, add
from intdeploy.golden.mac_array import linear
from intdeploy.golden.pool import pool_windows
from intdeploy.golden.requantizer import RequantParams, requantize
from intdeploy.golden.threshold import threshold
from intdeploy.host import protocol as P
from intdeploy.host.timing import AddTable, Overlap, input_cycles, response_cycles

__all__ = ["AcceleratorModel", "ModelEngine", "entry_params", "response_mismatch", "STATUS_UNCOMPARED"]

#: STATUS payload words that depend on the implementation (cycles, busy_cycles: 2 words each).
STATUS_UNCOMPARED = (3, 4, 5, 6)

_OK, _UNKNOWN_OPCODE, _TRUNCATED, _BAD_LENGTH, _OUT_OF_RANGE, _BAD_PARAM, _BAD_HEADER = (
    P.STATUS[n] for n in ("OK", "UNKNOWN_OPCODE", "TRUNCATED", "BAD_LENGTH", "OUT_OF_RANGE", "BAD_PARAM", "BAD_HEADER"))
_OP = P.OPCODES
_RUN = _OP["RUN"]


def entry_params(entries):
    """Parameter entries (raw words, ``(channels, 8)``, valid) as ``(channel indices,
    RequantParams)`` per rounding mode among them."""
    f = wire.PARAM.decode_array(entries)
    out = []
    for code in np.unique(f["rounding"]).tolist():
        idx = np.nonzero(f["rounding"] == code)[0]
        out.append((idx, RequantParams(rounding=wire.ROUNDING_NAMES[code],
                                       **{k: f[k][idx] for k in ("mult", "shift", "bias", "offset", "zero_point",
                                                                 "lo", "hi")})))
    return out


class _Error(Exception):
    """A protocol error detected while walking a packet; ``code`` is its status."""

    def __init__(self, code):
        super().__init__(P.STATUS_NAMES[code])
        self.code = code


def _wrap32(x):
    return ((np.asarray(x, dtype=np.int64) + (1 << 31)) & P.MASK32) - (1 << 31)


class _Packet:
    """The words of one packet being walked: ``word(p)`` raises TRUNCATED if TLAST came before ``p``."""

    def __init__(self, words):
        self.words = words
        self.n = len(words)
        self.length = words[1] if self.n > 1 else 0
        self.end = 2 + self.length          # header + payload words
        self.threshold_channel = None       # set once a threshold has been stored

    def word(self, p):
        if p >= self.n:
            raise _Error(_TRUNCATED)
        return self.words[p]


class AcceleratorModel:
    """Bit-exact executable model of the accelerator top for the elaboration parameters ``info``.

    Parameters
    ----------
    info : intdeploy.host.protocol.Info
        Buffer sizes, array shape, bus width; INFO answers with exactly these.

    Attributes
    ----------
    weights : int64 ``(weight_banks, weight_depth, R, C)``, two's complement values
    acts : int64 ``(act_depth, C)``, raw bytes 0..255
    residual : int64 ``(residual_depth, R)``, raw bytes 0..255
    params : int64 ``(param_channels, 8)``, raw words of valid entries
    th_values : int64 ``(threshold_channels, 2**max_q - 1)``; ``th_q``, ``th_negate`` per channel
    counters : dict ``commands``, ``errors``, ``last_error``, ``cycles``, ``busy_cycles``,
        ``mac_cycles``
    """

    def __init__(self, info):
        if not isinstance(info, P.Info):
            raise ValueError(f"info: expected intdeploy.host.protocol.Info, got {type(info).__name__}")
        self.info = info
        self.per_beat = info.bus_width // 32
        self.power_up()

    # --- state ----------------------------------------------------------------------------

    def power_up(self):
        """State at power-up: every buffer entry 0, threshold channels disabled, counters 0."""
        i = self.info
        self.weights = np.zeros((i.weight_banks, i.weight_depth, i.rows, i.cols), dtype=np.int64)
        self.acts = np.zeros((i.act_depth, i.cols), dtype=np.int64)
        self.residual = np.zeros((i.residual_depth, i.rows), dtype=np.int64)
        self.params = np.zeros((i.param_channels, P.PARAM_WORDS), dtype=np.int64)
        self.th_values = np.zeros((i.threshold_channels, (1 << i.max_q) - 1), dtype=np.int64)
        self.th_negate = np.zeros(i.threshold_channels, dtype=bool)
        self.reset()

    def reset(self):
        """A reset of either domain: packets in flight dropped, counters cleared, threshold
        channels disabled; the other buffers keep their contents (docs/protocol.md)."""
        self.th_q = np.zeros(self.info.threshold_channels, dtype=np.int64)
        self.counters = dict(commands=0, errors=0, last_error=0, cycles=0, busy_cycles=0, mac_cycles=0)
        self._pending = []
        self._overlap = Overlap()
        self._table = AddTable()

    @property
    def overlap(self):
        """How the last packet stood to the RUN it was behind: "apart", "meets" or None."""
        return self._overlap.last

    # --- streams --------------------------------------------------------------------------

    def process(self, beats):
        """Feed ``(beat, last)`` pairs of the command stream; returns the response ``(beat, last)``
        pairs produced (one response packet per command packet whose TLAST was fed).

        A packet may span several calls.
        """
        out = []
        per = self.per_beat
        for beat, last in beats:
            beat = int(beat)
            self._pending.extend((beat >> (32 * j)) & P.MASK32 for j in range(per))
            if last:
                words, self._pending = self._pending, []
                out.extend(P.to_beats(self.packet(words), self.info.bus_width))
        return out

    def transact(self, packets):
        """Send whole packets (lists of words, zero-padded to the bus); returns their Responses.

        Equivalent to :meth:`process` on the packets' beats, without the per-beat conversion.
        """
        if self._pending:
            raise ValueError("packets: a packet fed to process() is still waiting for its TLAST")
        responses = []
        for words in packets:
            if not len(words):
                raise ValueError("packets: a packet has at least one word")
            responses.append(P.parse_response(self.packet(words)))
        return responses

    def packet(self, words):
        """Handle one complete packet (its words, padding included); returns the response words."""
        words = [int(w) & P.MASK32 for w in words]
        words += [0] * (-len(words) % self.per_beat)
        pk = _Packet(words)
        opcode, tag = words[0] & 0xFF, (words[0] >> 8) & 0xFF
        try:
            payload, steps = self._walk(pk, opcode)
            status = _OK
        except _Error as e:
            status, payload, steps = e.code, [], 0
            if pk.threshold_channel is not None:
                # A failed threshold write never leaves a half-written channel in use.
                self.th_q[pk.threshold_channel] = 0
        resp = P.response(opcode, tag, status, payload)
        c = self.counters
        c["commands"] += 1
        if status:
            c["errors"] += 1
            c["last_error"] = status
        c["mac_cycles"] += steps
        c["busy_cycles"] += steps
        cycles = input_cycles(words, self.info, status == _OK)
        run_ok = opcode == _RUN and status == _OK
        out_bytes = P.RunDescriptor.decode(words[2:2 + P.RUN_WORDS])[0].out_bytes if run_ok else None
        fill = self._table.run(words[2:2 + P.RUN_WORDS]) if run_ok else 0
        c["cycles"] += (cycles - self._overlap.packet(words, status == _OK, steps, cycles)
                        + response_cycles(len(resp), self.info, out_bytes) + steps + fill)
        return resp

    # --- the walk -------------------------------------------------------------------------

    def _walk(self, pk, opcode):
        """Checks in the documented order; returns ``(payload, mac_steps)`` or raises _Error."""
        if opcode not in P.OPCODE_NAMES:
            raise _Error(_UNKNOWN_OPCODE)
        if pk.words[0] >> 16:
            raise _Error(_BAD_HEADER)
        length = pk.word(1)
        if opcode in P.FIXED_LENGTHS and length != P.FIXED_LENGTHS[opcode]:
            raise _Error(_BAD_LENGTH)
        if opcode in P.MIN_LENGTHS and length < P.MIN_LENGTHS[opcode]:
            raise _Error(_BAD_LENGTH)
        run = None
        if opcode in (_OP["WRITE_WEIGHTS"], _OP["WRITE_ACTS"], _OP["WRITE_RESIDUAL"]):
            self._write_buffer(pk, opcode)
        elif opcode == _OP["WRITE_PARAMS"]:
            self._write_params(pk)
        elif opcode == _OP["WRITE_THRESHOLDS"]:
            self._write_thresholds(pk)
        elif opcode == _OP["RUN"]:
            pk.word(2 + P.RUN_WORDS - 1)
            run = pk.words[2:2 + P.RUN_WORDS]
            self._check_run(run)
        if pk.n < pk.end:
            raise _Error(_TRUNCATED)
        if pk.n > -(-pk.end // self.per_beat) * self.per_beat:
            raise _Error(_BAD_LENGTH)          # a further beat after the payload's beat
        if opcode == _OP["INFO"]:
            return self.info.encode(), 0
        if opcode == _OP["STATUS"]:
            c = self.counters
            return [c["commands"], c["errors"], c["last_error"], c["cycles"] & P.MASK32, c["cycles"] >> 32,
                    c["busy_cycles"] & P.MASK32, c["busy_cycles"] >> 32,
                    c["mac_cycles"] & P.MASK32, c["mac_cycles"] >> 32], 0
        if run is not None:
            return self._run(run)
        return [], 0

    def _write_buffer(self, pk, opcode):
        i = self.info
        if opcode == _OP["WRITE_WEIGHTS"]:
            store, depth, ew = self.weights, i.weight_depth, i.weight_entry_words
            bank = pk.word(2)
            if bank >= i.weight_banks:
                raise _Error(_OUT_OF_RANGE)
            p = 3
        else:
            bank = None
            store, depth, ew = ((self.acts, i.act_depth, i.act_entry_words) if opcode == _OP["WRITE_ACTS"]
                                else (self.residual, i.residual_depth, i.residual_entry_words))
            p = 2
        address = pk.word(p)
        if address >= depth:
            raise _Error(_OUT_OF_RANGE)
        count = pk.word(p + 1)
        if count < 1 or address + count > depth:
            raise _Error(_OUT_OF_RANGE)
        first = p + 2                      # first entry word
        if pk.length != first - 2 + count * ew:
            raise _Error(_BAD_LENGTH)
        stored = min(count, (min(pk.n, pk.end) - first) // ew)
        if stored <= 0:
            return
        words = np.array(pk.words[first:first + stored * ew], dtype=np.int64).reshape(stored, ew)
        if bank is not None:
            vals = P.unpack_entries(words, i.rows * i.cols, i.weight_bits, signed=True)
            store[bank, address:address + stored] = vals.reshape(stored, i.rows, i.cols)
        else:
            store[address:address + stored] = P.unpack_entries(words, store.shape[1], 8, signed=False)

    def _write_params(self, pk):
        i = self.info
        first = pk.word(2)
        if first >= i.param_channels:
            raise _Error(_OUT_OF_RANGE)
        count = pk.word(3)
        if count < 1 or first + count > i.param_channels:
            raise _Error(_OUT_OF_RANGE)
        if pk.length != 2 + P.PARAM_WORDS * count:
            raise _Error(_BAD_LENGTH)
        for c in range(count):
            base = 4 + P.PARAM_WORDS * c
            pk.word(base + P.PARAM_WORDS - 1)          # the channel is checked at its word 7
            entry = pk.words[base:base + P.PARAM_WORDS]
            try:
                P.decode_requant(entry)
            except ValueError:
                raise _Error(_BAD_PARAM) from None
            self.params[first + c] = entry

    def _write_thresholds(self, pk):
        i = self.info
        ch = pk.word(2)
        if ch >= i.threshold_channels:
            raise _Error(_OUT_OF_RANGE)
        qw = pk.word(3)
        q, negate = qw & 0xF, bool((qw >> 8) & 1)
        if not 1 <= q <= i.max_q:
            raise _Error(_BAD_PARAM)
        if pk.length != 2 + (1 << q) - 1:
            raise _Error(_BAD_LENGTH)
        prev = None
        for k in range((1 << q) - 1):
            t = P.sext(pk.word(4 + k), 32)
            if prev is not None and t < prev:
                raise _Error(_BAD_PARAM)
            prev = t
            self.th_values[ch, k] = t
            self.th_q[ch], self.th_negate[ch] = q, negate
            pk.threshold_channel = ch

    def _check_run(self, w):
        i = self.info
        f = wire.RUN.decode(w)
        m, k, nt = f["m_count"], f["k_steps"], f["n_tiles"]
        if not (1 <= m <= 0xFFFF and 1 <= k <= 0xFFFF and 1 <= nt <= 0xFFFF):
            raise _Error(_OUT_OF_RANGE)
        row_step = f["row_step"] or k
        if f["act_base"] + (m - 1) * row_step + k > i.act_depth:
            raise _Error(_OUT_OF_RANGE)
        if f["bank"] >= i.weight_banks or f["weight_base"] + nt * k > i.weight_depth:
            raise _Error(_OUT_OF_RANGE)
        channels = f["channel_base"] + nt * i.rows
        epilogue = f["epilogue"]
        if channels > i.param_channels or (epilogue == wire.EPILOGUES["threshold"] and channels > i.threshold_channels):
            raise _Error(_OUT_OF_RANGE)
        if epilogue not in wire.EPILOGUES.values() or f["out_bytes"] not in wire.OUT_BYTES.values() or \
                (epilogue == wire.EPILOGUES["threshold"] and f["channel_base"] % wire.threshold_alignment(i.rows)):
            raise _Error(_BAD_PARAM)
        if f["add"]:
            if f["residual_base"] + nt * m > i.residual_depth:
                raise _Error(_OUT_OF_RANGE)
            for name in ("add_a", "add_b", "add_out"):
                base = wire.RUN[name].word
                try:
                    P.decode_requant(w[base:base + 8], reserved=False)   # reserved bits are ignored in a RUN
                except ValueError:
                    raise _Error(_BAD_PARAM) from None
        if f["pool"]:
            mode, taps, d = f["pool_mode"], f["pool_taps"], f["pool_d"]
            if mode not in wire.POOL_NAMES or not 1 <= taps <= i.max_pool_taps or m % taps:
                raise _Error(_BAD_PARAM)
            if mode == wire.POOL["avg_nemo"]:
                mult = f["pool_mult"]
                if d > i.max_pool_shift or not (mult >= 1 and mult * taps <= (1 << d) < (mult + 1) * taps):
                    raise _Error(_BAD_PARAM)
            if mode == wire.POOL["avg_tflite"] and f["pool_lo"] > f["pool_hi"]:
                raise _Error(_BAD_PARAM)

    # --- RUN ------------------------------------------------------------------------------

    def _requant(self, acc, entries):
        """Per-channel requantizer: each channel with its own rounding (golden's requantize)."""
        y = np.empty_like(acc)
        for idx, params in entry_params(entries):
            y[:, idx] = requantize(acc[:, idx], params)
        return y

    def _thresholds(self, acc, channels):
        y = np.zeros_like(acc)
        for j, ch in enumerate(channels.tolist()):
            q = int(self.th_q[ch])
            if q:                            # a disabled channel outputs 0
                th = self.th_values[ch, :(1 << q) - 1][None, :]
                y[:, j] = threshold(acc[:, j:j + 1], th, np.array([self.th_negate[ch]]))[:, 0]
        return y

    def _run(self, w):
        i = self.info
        R, C = i.rows, i.cols
        d, _ = P.RunDescriptor.decode(w)
        m, k, nt = d.m_count, d.k_steps, d.n_tiles
        rows = d.act_base + (d.row_step or k) * np.arange(m)[:, None] + np.arange(k)      # entry of (row, step)
        raw = self.acts[rows]
        x = (P.sext(raw, 8) if d.x_signed else raw).reshape(m, k * C)
        if d.add:
            add_params = AddParams(in_zero_points=d.add_zero_points, left_shift=d.add_left_shift,
                                   branches=d.add_branches, output=d.add_output, sum_shift=d.add_sum_shift)
        results = []
        for n in range(nt):
            tile = self.weights[d.bank, d.weight_base + n * k:d.weight_base + (n + 1) * k]     # (k, R, C)
            wt = tile.transpose(1, 0, 2).reshape(R, k * C)
            channels = d.channel_base + n * R + np.arange(R)
            entries = self.params[channels]
            w_zp = wire.PARAM.decode_array(entries)["w_zero_point"]
            acc = _wrap32(linear(x, wt, d.x_zero_point, w_zp))      # the int32 accumulator wraps
            y = self._requant(acc, entries) if d.epilogue == "requant" else self._thresholds(acc, channels)
            if d.add:
                rb = d.residual_base + n * m
                b = self.residual[rb:rb + m]
                y = add(y, P.sext(b, 8) if d.residual_signed else b, add_params)
            if d.pool:
                taps = P.sext(y, wire.POOL_TAP_BITS).reshape(m // d.pool_taps, d.pool_taps, R)
                kw = {"avg_nemo": dict(d=d.pool_d), "avg_tflite": dict(lo=d.pool_lo, hi=d.pool_hi)}.get(d.pool_mode, {})
                y = pool_windows(taps, d.pool_mode, **kw)
            results.append(y)
        values = np.stack(results).reshape(1, -1)                   # (tile, output, channel) order
        payload = P.pack_entries(values, 8 * d.out_bytes)[0].tolist()
        return payload, m * k * nt


class ModelEngine:
    """The ``model`` engine: the executable model of the accelerator (:mod:`intdeploy.sim.accel_model`)."""

    name = "model"

    def __init__(self, info=None):
        self.info = P.Info() if info is None else info
        self.model = AcceleratorModel(self.info)

    def execute(self, packets):
        """Send ``packets`` (lists of words) in order; returns one :class:`intdeploy.host.protocol.Response` each."""
        return self.model.transact(packets)


def response_mismatch(expected, actual):
    """None if the Response ``actual`` equals the model's ``expected`` word for word (STATUS
    ``cycles`` and ``busy_cycles`` excepted), else a one-line description of the first difference."""
    for name in ("opcode", "tag", "status"):
        if getattr(expected, name) != getattr(actual, name):
            return f"{name}: expected {getattr(expected, name)}, got {getattr(actual, name)} ({expected} vs {actual})"
    if len(expected.payload) != len(actual.payload):
        return f"length: expected {len(expected.payload)} payload words, got {len(actual.payload)} ({expected})"
    skip = STATUS_UNCOMPARED if expected.opcode == P.OPCODES["STATUS"] and expected.ok else ()
    for j, (a, b) in enumerate(zip(expected.payload, actual.payload)):
        if j not in skip and (a & P.MASK32) != (b & P.MASK32):
            return f"payload word {j}: expected 0x{a & P.MASK32:08x}, got 0x{b & P.MASK32:08x} ({expected})"
    return None
