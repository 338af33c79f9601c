"""The ``intdeploy`` command line: a dispatcher over the sub-command modules.

``intdeploy <command> [options]``; ``intdeploy --help`` lists the commands. A user error (a bad
model file, a bad argument, a value refused by validation) prints one line
``intdeploy: error: ...`` on stderr and exits with status 2; a traceback means a bug in
intdeploy (set ``INTDEPLOY_TRACEBACK=1`` to get one for user errors too).

Adding a command: a module with ``add_parser(sub)`` that calls ``sub.add_parser(...)``, declares
the arguments and sets ``func`` (a function of the parsed arguments returning the exit status,
raising :class:`intdeploy.tools.UsageError` for a user mistake), named in :data:`COMMANDS`.
"""

import argparse
import importlib
import os
import sys

from intdeploy.tools import UsageError

__all__ = ["main", "COMMANDS"]

#: The sub-command modules, in --help order; each has ``add_parser(sub)``. They are imported when
#: the parser is built (by name: the campaigns of sim/ and the tools sit in other modules).
COMMANDS = ["intdeploy.tools.demo", "intdeploy.tools.bench", "intdeploy.tools.verilog", "intdeploy.tools.synth",
            "intdeploy.sim.soak", "intdeploy.tools.run", "intdeploy.sim.crosscheck", "intdeploy.tools.import_model",
            "intdeploy.tools.perf"]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``intdeploy: error: <message>``, status 2."""

    def error(self, message):
        raise UsageError(f"{message} (see '{self.prog} --help')")


def _fail(message):
    print(f"intdeploy: error: {message}", file=sys.stderr)
    return 2


def _parser():
    parser = _Parser(prog="intdeploy", description="intdeploy: int8 neural-network accelerator and its "
                                                   "golden model of integer-only inference.")
    sub = parser.add_subparsers(dest="command", metavar="command", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status (0 ok, 1 a check failed, 2 user error)."""
    try:
        args = _parser().parse_args(argv)
        return args.func(args)
    except UsageError as e:
        return _fail(str(e))
    except BrokenPipeError:
        # The reader went away (`intdeploy demo | head`): not an error of ours or the user's.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, OSError) as e:
        # ValueError: validation refused something the user gave (ModelFormatError included);
        # OSError: a file the user named could not be read or written.
        if os.environ.get("INTDEPLOY_TRACEBACK"):
            raise
        lines = str(e).splitlines()
        return _fail(lines[0] if lines else type(e).__name__)


if __name__ == "__main__":
    sys.exit(main())
