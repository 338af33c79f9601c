"""Planted bugs: subclasses of the ``hw/`` components with one deliberate defect each.

Each mutant calls the real ``elaborate`` and then appends statements to the returned module;
in Amaranth the last assignment to a signal in a module wins, so an appended assignment
overrides the original one without copying any of the unit's code. The proofs must FAIL on
every mutant with a counterexample trace (``python -m formal.run --mutants``).
"""

from amaranth import ResetSignal, Signal

from intdeploy.hw.add import AddUnit
from intdeploy.hw.cdc import AsyncFIFO
from intdeploy.hw.command import CommandProcessor
from intdeploy.hw.mac_array import MacArray
from intdeploy.hw.packer import ResultPacker
from intdeploy.hw.pool import PoolUnit
from intdeploy.hw.requantizer import Requantizer
from intdeploy.hw.threshold import ThresholdUnit

__all__ = ["find", "mutate"]


def find(m, name):
    """The signal called ``name`` assigned anywhere in module ``m`` (not its submodules)."""
    hits = []
    for stmts in m._statements.values():
        for stmt in stmts:
            for sig in stmt._lhs_signals():
                if sig.name == name and not any(sig is h for h in hits):
                    hits.append(sig)
    if len(hits) != 1:
        raise LookupError(f"{name!r}: {len(hits)} signals of that name in the module")
    return hits[0]


def mutate(cls, edit, name=None):
    """A subclass of ``cls`` whose ``elaborate`` applies ``edit(self, m)`` to the module."""
    def elaborate(self, platform):
        m = super(sub, self).elaborate(platform)
        edit(self, m)
        return m
    sub = type(name or f"Mutant{cls.__name__}", (cls,), {"elaborate": elaborate})
    return sub


# --- requantizer ------------------------------------------------------------------------------

def _rq_skid_ignored(self, m):
    # The output shows the pipeline's last stage even while the skid buffer holds a beat.
    m.d.comb += [self.o.valid.eq(find(m, "valid9")), self.o.payload.eq(find(m, "out"))]


def _rq_no_backpressure(self, m):
    m.d.comb += self.i.ready.eq(1)


def _rq_no_even_fix(self, m):
    m.d.sync += find(m, "l0_even7").eq(0)


def _rq_no_nudge(self, m):
    # TFLite without the 2**30 nudge: a plain floor of the high multiply.
    off = find(m, "l0_off1")
    with m.If(self.i.ready & (self.i.payload.params[0].rounding.as_value() == 3)):
        m.d.sync += off.eq(0)


def _rq_half_up_as_floor(self, m):
    # Rounding swapped: half_up takes floor's rounding constant (0).
    mode1 = find(m, "l0_mode1")      # looked up outside m.If: its body hides the module's list
    with m.If(self.i.ready & (self.i.payload.params[0].rounding.as_value() == 1)):
        m.d.sync += mode1.eq(0)


def _rq_half_away_as_half_up(self, m):
    # Ties away from zero lost: half_away takes half_up's rounding constant (ties toward +inf).
    mode1 = find(m, "l0_mode1")
    with m.If(self.i.ready & (self.i.payload.params[0].rounding.as_value() == 4)):
        m.d.sync += mode1.eq(1)


REQUANTIZER = {
    "skid_ignored": mutate(Requantizer, _rq_skid_ignored),
    "no_backpressure": mutate(Requantizer, _rq_no_backpressure),
    "no_even_fix": mutate(Requantizer, _rq_no_even_fix),
    "no_tflite_nudge": mutate(Requantizer, _rq_no_nudge),
    "half_up_as_floor": mutate(Requantizer, _rq_half_up_as_floor),
    "half_away_as_half_up": mutate(Requantizer, _rq_half_away_as_half_up),
}


# --- clock-domain crossing ----------------------------------------------------------------------

def _fifo_no_full(self, m):
    # The write side ignores the full flag: a word overwrites one not yet read.
    m.d.comb += self.w.ready.eq(~ResetSignal(self._w_domain))


def _fifo_unsynchronized_wptr(self, m):
    # The read side compares with the write side's Gray pointer directly (no synchronizer):
    # a word becomes visible before the read port has re-read its address.
    r_gray = find(m, f"cdc_{self._name}_rptr_gray")
    w_gray = find(m, f"cdc_{self._name}_wptr_gray")
    m.d.comb += self.r.valid.eq((r_gray != w_gray) & ~ResetSignal(self._r_domain))


ASYNC_FIFO = {
    "no_full": mutate(AsyncFIFO, _fifo_no_full),
    "unsynchronized_wptr": mutate(AsyncFIFO, _fifo_unsynchronized_wptr),
}


# --- threshold, add, MAC array ------------------------------------------------------------------

def _advance_always(self, m):
    # The pipeline advances whatever o.ready says: a stalled output beat is overwritten
    # (pooling unit, result packer).
    m.d.comb += find(m, "advance").eq(1)


def _add_sum_ignores_stall(self, m):
    # The sum stage takes the branch result even while the output requantizer is full.
    m.d.comb += find(m, "s_en").eq(1)


def _mac_result_overwritten(self, m):
    # A `last` step retires into the result register even if the previous result is untaken.
    m.d.comb += find(m, "advance").eq(1)


def _th_no_credit_check(self, m):
    # Data is accepted whatever the credit count says: under a stall the output FIFO overflows.
    m.d.comb += self.i.ready.eq(~self.load.valid)


THRESHOLD = {"no_credit_check": mutate(ThresholdUnit, _th_no_credit_check)}
def _add_ready_ignores_table(self, m):
    # i.ready no longer waits for the table: a beat offered during a fill is taken but never
    # enters the pipeline (which does wait), so it is lost.
    m.d.comb += self.i.ready.eq(find(m, "en"))


ADD = {"sum_ignores_stall": mutate(AddUnit, _add_sum_ignores_stall),
       "ready_ignores_table": mutate(AddUnit, _add_ready_ignores_table)}
POOL = {"no_stall": mutate(PoolUnit, _advance_always)}
PACKER = {"no_backpressure": mutate(ResultPacker, _advance_always)}
def _cmd_response_retracted(self, m):
    # A response word offered and not taken is withdrawn in the next cycle.
    stalled = Signal(name="mutant_stalled")
    m.d.sync += stalled.eq(self.o.valid & ~self.o.ready)
    with m.If(stalled):
        m.d.comb += self.o.valid.eq(0)


COMMAND = {"response_retracted": mutate(CommandProcessor, _cmd_response_retracted)}
MAC_ARRAY = {"result_overwritten": mutate(MacArray, _mac_result_overwritten)}
