"""The verification plumbing itself: a correct design passes on both simulators, and a wrong
golden value is caught, reported with its inputs, and leaves a waveform."""

import re

from amaranth import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out
import pytest

from intdeploy.sim.runner import SIMULATORS, run_bench, strip_register_init


class Triple(wiring.Component):
    i: In(stream.Signature(signed(8)))
    o: Out(stream.Signature(signed(16)))

    def elaborate(self, platform):
        m = Module()
        with m.If(self.o.ready | ~self.o.valid):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload * 3)]
        m.d.comb += self.i.ready.eq(self.o.ready | ~self.o.valid)
        return m


@pytest.mark.parametrize("sim", SIMULATORS)
def test_passes(sim, tmp_path):
    run_bench("bench_infra", Triple, "triple", sim, {"seed": 1, "n": 300}, test_dir=tmp_path)


@pytest.mark.parametrize("sim", SIMULATORS)
def test_mismatch_is_reported_with_waveform(sim, tmp_path):
    with pytest.raises(AssertionError) as info:
        run_bench("bench_infra", Triple, "triple", sim, {"seed": 1, "n": 50, "bug": True},
                  test_dir=tmp_path)
    text = str(info.value)
    assert "MISMATCH at output #0" in text and "golden" in text and "RTL" in text
    wave = re.search(r"waveform: (\S+)", text).group(1)
    assert wave.endswith((".vcd", ".fst"))
    import os
    assert os.path.getsize(wave) > 0


def test_strip_register_init():
    """Registers lose their initial values (escaped names keep the space before ``;``); memories
    and the Verilog writer's time-zero trigger keep theirs."""
    text = ("  reg a = 1'h1;\n  reg [4:0] b = 5'h00;\n  reg \\c$1  = 1'h0;\n  reg [3:0] mem [7:0];\n"
            "  reg \\$auto$verilog_backend.cc:1:dump_module$1  = 0;\n  wire w = 1;\n")
    assert strip_register_init(text) == ("  reg a ;\n  reg [4:0] b ;\n  reg \\c$1 ;\n  reg [3:0] mem [7:0];\n"
                                         "  reg \\$auto$verilog_backend.cc:1:dump_module$1  = 0;\n  wire w = 1;\n")
