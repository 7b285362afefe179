"""End `python -m atb` without the interpreter's teardown once atb's own shutdown is done.

When a run or sweep returns, its nodes are stopped, its database sessions committed and
its logs flushed. What remains is CPython's finalisation: a last garbage collection and
freeing every object of pandas, SQLAlchemy, Hydra and the run one by one: 0.4-0.5 s
measured after a sweep, with nothing left to write.
Here the interpreter's own exit steps that matter run explicitly (waiting for non-daemon
threads, then the atexit handlers: logging shutdown, multiprocessing's child clean-up),
the standard streams are flushed, and the process ends with the status `sys.exit` would
have given. An exception other than SystemExit takes Python's normal path (traceback,
full teardown), as does any embedding that calls `atb.__main__.main` itself.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading
from collections.abc import Callable
from typing import NoReturn


def run_then_exit(main: Callable[[], object]) -> NoReturn:
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = _status(exc.code)
    # What Py_FinalizeEx does first: join non-daemon threads, run atexit handlers.
    threading._shutdown()  # type: ignore[attr-defined]  # CPython's own exit step
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None:  # started with the descriptor closed (`>&-`)
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            code = 120  # CPython's status when the standard streams cannot be flushed
    try:
        os._exit(code)
    except OverflowError:  # SystemExit(2**40): no status that large
        os._exit(1)


def _status(code: object) -> int:
    """sys.exit's rules: None is 0, an int is itself, anything else is printed and is 1."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1
