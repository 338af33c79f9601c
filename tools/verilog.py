"""``intdeploy verilog``: the accelerator top as one Verilog file, with its SDC and XDC
(:mod:`intdeploy.hw.generate`)."""

from intdeploy.hw import generate

__all__ = ["add_parser"]


def _verilog(args):
    return generate.main(args)


def add_parser(sub):
    p = sub.add_parser("verilog", help="Verilog and clock-crossing constraints of the accelerator top",
                       description="Elaborates the accelerator top (hw/top.py) for the given array and "
                                   "buffer sizes into one Verilog file OUT.v, writes the constraints of its "
                                   "clock-domain crossings as OUT.sdc, OUT.quartus.sdc, OUT.xdc (scoped) and OUT.ooc.xdc, and prints the ports and "
                                   "parameters (docs/top.md).")
    generate.add_arguments(p)
    p.set_defaults(func=_verilog)
