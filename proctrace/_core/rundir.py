"""Removing a run's private directory: by the program at exit, by the agent after a stop."""

from __future__ import annotations

import os

from .names import RUN_LOCK, RUN_PREFIX, RUN_SOCKET


def remove(directory: str) -> None:
    """Remove the run's directory, its socket and its lock file; only those two names, and
    the directory only once it is empty (never a tree: it is in a shared temporary place)."""
    if not os.path.basename(directory).startswith(RUN_PREFIX):
        return
    for name in (RUN_SOCKET, RUN_LOCK):
        try:
            os.unlink(os.path.join(directory, name))
        except OSError:
            pass
    try:
        os.rmdir(directory)
    except OSError:
        pass
