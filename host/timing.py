"""The accelerator top's idealised timing: the cycles a program of packets takes.

One word per cycle on either stream, two for the entries of buffer writes where the top takes
two, result words in pairs where the top sends two, one MAC step per cycle, the writes behind a
RUN that do not meet its entries hidden behind its MAC steps (docs/protocol.md "Overlap";
docs/top.md "Throughput and latency"). The driver's cost model chooses between programs with
:func:`program_cycles`, and the executable model (:mod:`intdeploy.sim.accel_model`) counts its
STATUS ``cycles`` with the same functions.
"""

from intdeploy import wire
from intdeploy.host import protocol as P

__all__ = ["Overlap", "AddTable", "ADD_TABLE_CYCLES", "input_cycles", "response_cycles", "program_cycles"]

#: The add unit's branch-b table fill (hw/add.py "branch b by table"; the epilogue's table of the
#: 2**8 values of an int8 or uint8 residual): one result per cycle, paid by a RUN with an add whose
#: branch-b parameters or residual signedness differ from those of the last RUN with an add
#: (tests/test_add.py ties it to the hardware).
ADD_TABLE_CYCLES = 1 << 8


class AddTable:
    """Which RUNs refill the add unit's branch-b table: feed every RUN's descriptor words (and
    whether it was executed) to :meth:`run`, which returns the fill cycles it costs (0 or
    :data:`ADD_TABLE_CYCLES`). The table depends on branch b's zero point, the left shift and
    branch b's requantizer fields (not on its word 7 or reserved bits, which a RUN ignores) and the
    residual's signedness."""

    def __init__(self):
        self.key = None

    def run(self, descriptor, ok=True):
        f = wire.RUN.decode(descriptor)
        if not ok or not f["add"]:
            return 0
        b = {k: v for k, v in f["add_b"].items() if k != "w_zero_point"}
        key = (f["add_zero_point_b"], f["add_left_shift"], f["residual_signed"], tuple(sorted(b.items())))
        fill, self.key = key != self.key, key
        return ADD_TABLE_CYCLES if fill else 0

_OP = P.OPCODES
_RUN = _OP["RUN"]
_OVERLAPPED = (_OP["WRITE_WEIGHTS"], _OP["WRITE_ACTS"], _OP["WRITE_RESIDUAL"])


class Overlap:
    """Which buffer writes the top executes while a RUN computes (docs/protocol.md "Overlap"):
    those behind a RUN, with only such writes between, that do not meet its entries. Feed every
    packet in order to :meth:`packet`; it returns the packet's words hidden behind the RUN's
    MAC steps (at most those steps over all the writes behind one RUN), the model's idealised
    count of the overlap. :attr:`last` is "apart", "meets" or None for the last packet."""

    def __init__(self):
        self.behind = None           # (reads, MAC steps left to hide words in) of the RUN before
        self.last = None

    def packet(self, words, ok, steps, cycles=None):
        """``cycles``: the packet's input cycles (default one per word)."""
        cycles = len(words) if cycles is None else cycles
        opcode = words[0] & 0xFF
        self.last = None
        if opcode == _RUN:
            self.behind = (P.RunDescriptor.decode(words[2:2 + P.RUN_WORDS])[0].reads(), steps) if ok else None
            return 0
        if opcode not in _OVERLAPPED:
            self.behind = None
            return 0
        if self.behind is None or not ok:
            return 0                             # an erroneous write never waits
        reads, budget = self.behind
        buf, (bank, lo, hi) = P.writes(words)
        r = reads.get(buf)
        if r is not None and r[0] == bank and lo < r[2] and r[1] < hi:
            self.last = "meets"
            self.behind = None                   # it and what follows wait for the RUN's end
            return 0
        self.last = "apart"
        hidden = min(budget, cycles)
        self.behind = (reads, budget - hidden)
        return hidden


def input_cycles(words, info, ok=True):
    """Cycles the top takes to read the packet ``words`` (its padding to the end of the beat
    included): one per word, but the entries of an OK buffer write whose entries are two or
    more words go two words per cycle on a bus of two or more words per beat (docs/top.md
    "Throughput and latency")."""
    n = len(words) + -len(words) % (info.bus_width // 32)
    entry = {_OP["WRITE_WEIGHTS"]: (5, info.weight_entry_words), _OP["WRITE_ACTS"]: (4, info.act_entry_words),
             _OP["WRITE_RESIDUAL"]: (4, info.residual_entry_words)}.get(words[0] & 0xFF)
    if not ok or entry is None or entry[1] < 2 or info.bus_width < 64:
        return n
    hdr = entry[0]
    return hdr + -(-(n - hdr) // 2)


def response_cycles(words, info, out_bytes=None):
    """Cycles the top takes to send a response of ``words`` words (header included): one per
    word, but the result words of a RUN with ``out_bytes``-wide values go two per cycle on a
    bus of two or more words per beat, in each result beat (R values) that holds two or more
    whole words: its words in pairs, an odd last one alone (docs/top.md "Throughput and
    latency")."""
    chunk = info.rows * (out_bytes or 0)
    if out_bytes is None or info.bus_width < 64 or chunk < 8 or chunk % 4:
        return words
    per = chunk // 4
    return 2 + (words - 2) // per * -(-per // 2)


def program_cycles(packets, info):
    """The model's ``cycles`` for ``packets`` when every one is answered OK (a driver's program),
    without executing them: words in (padded to the beat) less those hidden behind a RUN
    (:class:`Overlap`), response words, MAC steps, the add unit's table fills (:class:`AddTable`)."""
    per_beat = info.bus_width // 32
    overlap, table = Overlap(), AddTable()
    total = 0
    for pk in packets:
        words = list(pk) + [0] * (-len(pk) % per_beat)
        steps, out = 0, 2
        if words[0] & 0xFF == _RUN:
            d = P.RunDescriptor.decode(words[2:2 + P.RUN_WORDS])[0]
            total += table.run(words[2:2 + P.RUN_WORDS])
            steps = d.m_count * d.k_steps * d.n_tiles
            outputs = d.m_count // d.pool_taps if d.pool else d.m_count
            out = response_cycles(2 + -(-d.n_tiles * outputs * info.rows * d.out_bytes // 4), info, d.out_bytes)
        elif words[0] & 0xFF == _OP["INFO"]:
            out += P.INFO_WORDS
        elif words[0] & 0xFF == _OP["STATUS"]:
            out += P.STATUS_WORDS
        cycles = input_cycles(words, info)
        total += cycles - overlap.packet(words, True, steps, cycles) + out + steps
    return total
