"""Whether a person runs this notebook: can the kernel ask its front end for input?

Why: a notebook executed headless (`jupyter nbconvert --execute`, papermill, CI) has nobody to answer
`input()` or to talk into the meeting page; it should still run a real call, with the scripted participant.
Jupyter says so itself: every execute request carries `allow_stdin`, true from JupyterLab or Notebook,
false from nbclient (which nbconvert and papermill run on). Outside a kernel (plain python) a terminal
with a tty counts as attended.
"""

from __future__ import annotations

import sys


def attended() -> bool:
    """True when the code runs for a person who can answer `input()`."""
    try:
        from IPython import get_ipython
    except ImportError:
        return sys.stdin is not None and sys.stdin.isatty()
    shell = get_ipython()
    kernel = shell.kernel if shell is not None and "kernel" in shell.trait_names() else None
    if kernel is None:  # IPython in a terminal, or no IPython at all
        return sys.stdin is not None and sys.stdin.isatty()
    return bool(kernel.get_parent().get("content", {}).get("allow_stdin", False))


def resolve(value: bool | None, default: bool) -> bool:
    """A notebook parameter left at None takes `default` (e.g. the scripted participant when unattended)."""
    return default if value is None else bool(value)
