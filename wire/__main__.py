"""``python -m intdeploy.wire FILE...``: regenerate the wire-format tables of each markdown FILE
(docs/protocol.md) in place (:func:`intdeploy.wire.render_docs`)."""

from pathlib import Path
import sys

from intdeploy.wire import render_docs

for path in sys.argv[1:]:
    Path(path).write_text(render_docs(Path(path).read_text()))
