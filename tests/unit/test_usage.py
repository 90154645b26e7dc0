"""A process's own resource figures, read in the test process (no child)."""

from __future__ import annotations

import sys

import pytest

from proctrace._child import usage
from proctrace._core import names

KEYS = {
    names.CPU_USER, names.CPU_SYSTEM, names.MEMORY_PEAK,
    names.SWITCHES_VOLUNTARY, names.SWITCHES_INVOLUNTARY,
}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("method", [None, "fork", "spawn"])
def test_every_figure_with_its_type(method: str | None) -> None:
    usage.prepare()
    attrs = usage.process_use(method)
    assert set(attrs) == KEYS
    assert all(isinstance(attrs[k], float) for k in (names.CPU_USER, names.CPU_SYSTEM))
    assert all(type(attrs[k]) is int and attrs[k] >= 0 for k in KEYS - {
        names.CPU_USER, names.CPU_SYSTEM})
    assert attrs[names.MEMORY_PEAK] > 1 << 20


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_without_resource_proc_gives_the_same_figures() -> None:
    """A spawn child that never imported ``resource``: times() and /proc/self/status."""
    attrs = usage._from_proc()
    assert set(attrs) == KEYS
    assert attrs[names.MEMORY_PEAK] == usage._status()[b"VmHWM"]
