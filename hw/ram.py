"""The buffers' and units' memories, written inline or as named wrapper modules.

A :class:`Ram` is used like :class:`amaranth.lib.memory.Memory` (one write port, any number of
read ports, all read ports in one domain, synchronous or asynchronous). Elaborated as usual it
*is* that Memory (the same Verilog: a ``reg`` array in the unit's module). Elaborated for
:class:`RamPlatform` (``intdeploy verilog --memories wrapped|blackbox``) it becomes an instance of a
module named after its shape, ``<top>_ram_<words>x<bits>_<n>r<s|a>``, one module per shape,
whose behavioural Verilog :func:`module_text` writes (or its ports only, as a black box), so that
an ASIC or FPGA user can put an SRAM macro or a vendor RAM behind the same ports.

Ports of a wrapper module (``A = ceil(log2(words))`` address bits, ``W`` data bits):

==========  =====  ========================================================================
port        width  meaning
==========  =====  ========================================================================
``wclk``    1      write clock
``we``      1      write enable: ``mem[waddr] <= wdata`` at the rising edge of ``wclk``
``waddr``   A      write address
``wdata``   W      write data
``rclk``    1      read clock (synchronous-read modules, suffix ``s``, only)
``re<k>``   1      read enable of port k (``s`` only): ``rdata<k> <= mem[raddr<k>]`` at the
                   rising edge of ``rclk``; the read data holds while ``re<k>`` is low
``raddr<k>`` A     read address of port k
``rdata<k>`` W     read data of port k: registered (``s``, one cycle after the address; a
                   read of the address being written returns the *old* word) or
                   asynchronous (``a``, the word at ``raddr<k>`` now)
==========  =====  ========================================================================

Contents: the behavioural modules start at 0 (an ``initial`` loop), which the protocol relies on
only for the buffers' "read 0 until written" (docs/protocol.md); an SRAM macro has no defined
power-up contents, so a program on an ASIC writes every entry it reads (the driver does).
The read data registers have no initial value. Memories of one word and read-only tables stay
inline, as do the FIFOs' storage (the clock-crossing FIFOs' constraints name their registers).
"""

from amaranth import ClockSignal, Instance, Module, Shape, Value
from amaranth.lib.memory import Memory
from amaranth.utils import ceil_log2

__all__ = ["Ram", "RamPlatform", "MEMORY_MODES", "module_text"]

#: ``intdeploy verilog --memories``: inline ``reg`` arrays, wrapper modules with behavioural
#: bodies, or wrapper modules as port-only black boxes.
MEMORY_MODES = ("inline", "wrapped", "blackbox")


class RamPlatform:
    """The platform object :func:`intdeploy.hw.generate.generate` elaborates with to get wrapper
    modules: every :class:`Ram` records its module here (``rams``: name -> (words, bits, reads,
    sync)) and instantiates it. ``prefix`` starts every module name (the top's name)."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.rams = {}

    def modules(self, blackbox=False):
        """The Verilog of every module recorded (:func:`module_text`), in name order."""
        return "\n".join(module_text(n, *shape, blackbox=blackbox) for n, shape in sorted(self.rams.items()))


class Ram(Memory):
    """An :class:`amaranth.lib.memory.Memory` of ``depth`` words of ``shape``, contents 0, that
    can be elaborated as a wrapper module instance (module docstring). Ports as Memory's
    (``write_port()`` once, ``read_port(domain=...)`` any number of times, one read domain;
    no transparency, no write granularity)."""

    def __init__(self, *, shape, depth):
        super().__init__(shape=shape, depth=depth, init=[])
        self._writes, self._reads = [], []

    def write_port(self, *, domain="sync"):
        if self._writes:
            raise ValueError("write_port: a Ram has one write port")
        self._writes.append(super().write_port(domain=domain, src_loc_at=1))
        return self._writes[-1]

    def read_port(self, *, domain="sync"):
        if self._reads and self._reads[0].domain != domain:
            raise ValueError(f"read_port: domain {domain!r}; every read port of a Ram is in "
                             f"{self._reads[0].domain!r}")
        self._reads.append(super().read_port(domain=domain, src_loc_at=1))
        return self._reads[-1]

    def elaborate(self, platform):
        if not isinstance(platform, RamPlatform) or self.depth < 2 or len(self._writes) != 1 or not self._reads:
            return super().elaborate(platform)
        bits = Shape.cast(self.shape).width
        sync = self._reads[0].domain != "comb"
        name = f"{platform.prefix}_ram_{self.depth}x{bits}_{len(self._reads)}r{'s' if sync else 'a'}"
        platform.rams[name] = (self.depth, bits, len(self._reads), sync)
        wp = self._writes[0]
        ports = {"i_wclk": ClockSignal(wp.domain), "i_we": wp.en, "i_waddr": wp.addr,
                 "i_wdata": Value.cast(wp.data)}
        if sync:
            ports["i_rclk"] = ClockSignal(self._reads[0].domain)
        for k, rp in enumerate(self._reads):
            if sync:
                ports[f"i_re{k}"] = rp.en
            ports[f"i_raddr{k}"] = rp.addr
            ports[f"o_rdata{k}"] = Value.cast(rp.data)
        m = Module()
        m.submodules.ram = Instance(name, **ports)
        return m


def module_text(name, words, bits, reads, sync, blackbox=False):
    """The Verilog-2005 module ``name``: ``words`` x ``bits``, one write port, ``reads`` read ports,
    synchronous (``sync``) or asynchronous reads; behavioural (contents 0 at time zero), or with
    ``blackbox`` its ports only, marked ``(* blackbox *)``."""
    a = max(1, ceil_log2(words))
    kind = "registered, old word on a same-address write" if sync else "asynchronous"
    ports = ["wclk", "we", "waddr", "wdata"] + (["rclk"] if sync else [])
    decl = ["  input wire wclk;", "  input wire we;", f"  input wire [{a - 1}:0] waddr;",
            f"  input wire [{bits - 1}:0] wdata;"] + (["  input wire rclk;"] if sync else [])
    for k in range(reads):
        ports += ([f"re{k}"] if sync else []) + [f"raddr{k}", f"rdata{k}"]
        decl += ([f"  input wire re{k};"] if sync else []) + [f"  input wire [{a - 1}:0] raddr{k};"]
        decl.append(f"  output {'reg' if sync and not blackbox else 'wire'} [{bits - 1}:0] rdata{k};")
    lines = [f"// {name}: {words} words x {bits} bits, one write port, {reads} read port(s), read {kind}",
             "// (hw/ram.py; docs/flow.md, Memories)."]
    lines += ["(* blackbox *)"] if blackbox else []
    lines += [f"module {name} ({', '.join(ports)});"] + decl
    if not blackbox:
        lines += [f"  reg [{bits - 1}:0] mem [0:{words - 1}];", "  integer i;",
                  f"  initial for (i = 0; i < {words}; i = i + 1) mem[i] = {bits}'d0;",
                  "  always @(posedge wclk) if (we) mem[waddr] <= wdata;"]
        for k in range(reads):
            lines.append(f"  always @(posedge rclk) if (re{k}) rdata{k} <= mem[raddr{k}];" if sync
                         else f"  assign rdata{k} = mem[raddr{k}];")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"
