"""What the agent can tell of a process from outside it: whether it is there, whether it
runs, and the names of the signals that end processes."""

from __future__ import annotations

import os


def exists(pid: int | None) -> bool:
    """Whether process ``pid`` is still there (running, or a zombie not yet reaped)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # there, but not ours to signal
        return True
    return True


def running(pid: int | None) -> bool:
    """Whether process ``pid`` runs (not ended, not a zombie); False where that cannot be
    told (no ``/proc``)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            state = stat.read().rsplit(b")", 1)[1][1:2]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X", b"x")


def signal_name(signum: int) -> str:
    """``SIGTERM`` for 15, and so on."""
    import signal

    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
