"""``python -m intdeploy.wire FILE...``: regenerate the wire-format tables of each markdown FILE
(docs/protocol.md) in place (:func:`intdeploy.wire.render_docs`).
``python -m intdeploy.wire --c-header FILE``: write the C header of the wire format
(:func:`intdeploy.wire.c_header.render`)."""

from pathlib import Path
import sys

from intdeploy.wire import c_header, render_docs

args = sys.argv[1:]
if args[:1] == ["--c-header"]:
    if len(args) != 2:
        sys.exit("usage: python -m intdeploy.wire --c-header FILE")
    Path(args[1]).write_text(c_header.render())
else:
    for path in args:
        Path(path).write_text(render_docs(Path(path).read_text()))
