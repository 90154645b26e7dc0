"""How a traced call ended: the exit code recorded is the status the OS reports."""

from __future__ import annotations

import pytest

from proctrace._child.outcome import exit_status


@pytest.mark.parametrize(
    "code, main, fork",
    [
        (None, 0, 0),
        (0, 0, 0),
        (3, 3, 3),
        (True, 1, 1),
        (False, 0, 0),
        (256, 0, 0),
        (-1, 255, 255),
        (2**31 - 1, 255, 255),
        (-(2**31), 0, 0),
        # Beyond a C int: os._exit() raises in a fork child (it ends with 1); the interpreter
        # takes a C long (-1, so 255, when it does not fit). Measured on CPython 3.11-3.13.
        (2**31, 0, 1),
        (2**32 + 3, 3, 1),
        (2**63, 255, 1),
        (-(2**70), 255, 1),
        ("bye", 1, 1),
        (1.5, 1, 1),
    ],
)
def test_the_exit_code_is_what_the_os_reports(code, main, fork):
    """sys.exit(code) as Process.exitcode and the shell see it: an int's low 8 bits, 1 for
    anything but an int or None; never a bool."""
    for method, expected in ((None, main), ("spawn", main), ("fork", fork), ("forkserver", fork)):
        status = exit_status(code, method)
        assert type(status) is int and status == expected, (code, method, status)
