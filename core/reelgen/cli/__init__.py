"""The ``reelgen`` command line: parse, call the library, print.

Errors end in one line on stderr and a non-zero exit (the ``EXIT_*`` codes in
:mod:`.boundary`); ``--debug`` shows tracebacks and HTTP traffic (with Authorization redacted).
Heavy modules are imported inside the commands so ``reelgen --help`` starts fast.

app.py        the group, plugin commands, main()
boundary.py   the error boundary: exit codes, one-line errors, interrupts, each command's engine
options.py    shared option bundles and the request they build
callbacks.py  --callback-url / --listen and the receiver they start
render.py     payloads, estimates, plans, progress lines
generate.py   generate, estimate
jobs.py       status, wait, download, jobs, resume, forget
batch.py      batch
admin.py      providers, plugins, config, keys
"""

from __future__ import annotations

from .app import cli, main, register_plugin_commands
from .callbacks import check_signatures

__all__ = ["check_signatures", "cli", "main", "register_plugin_commands"]
