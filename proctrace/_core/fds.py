"""Descriptors proctrace keeps open in a program's processes, kept out of the program's way.

A program may close every descriptor it did not open itself (a daemon does,
``os.closerange(3, ...)``) and then open its own, which take the lowest numbers free. A
descriptor proctrace kept at such a number would then name the program's file or socket:
proctrace's records would go into the program's connection, and its ``close()`` would close
the program's file. So what proctrace keeps open lives at a high number
(``F_DUPFD_CLOEXEC``: the lowest free from ``HIGH`` up), which a program's own reach only
with hundreds open; and one found closed (``EBADF``) or no longer a socket (``ENOTSOCK``)
is let go of without ``close()``, which could close the program's.
"""

from __future__ import annotations

import errno
import fcntl
import os

try:  # the soft limit on descriptors: F_DUPFD fails at or above it
    _LIMIT = os.sysconf("SC_OPEN_MAX")
except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
    _LIMIT = 256
HIGH = max(3, min(512, _LIMIT // 2))
NOT_OURS = frozenset({errno.EBADF, errno.ENOTSOCK})


def moved(fd: int) -> int:
    """``fd`` at ``HIGH`` or above (closed where it was; close-on-exec), or ``fd`` itself
    where there is no free number up there."""
    try:
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, HIGH)
    except OSError:
        return fd
    os.close(fd)
    return new


def not_ours(exc: OSError) -> bool:
    """True when ``exc`` says the descriptor is not the one proctrace opened any more."""
    return exc.errno in NOT_OURS
