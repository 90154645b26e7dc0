"""What a process used, measured by the process itself when its span ends.

One ``getrusage(RUSAGE_SELF)`` gives the CPU time (user, system) and the context switches
(voluntary, involuntary) of this process alone: a child's counters start at zero at fork,
and exec keeps only the few microseconds spent between fork and exec. The starter loads
``resource`` for its fork and fork-server children; a spawn child on Linux, rather than
import it, takes the CPU times from ``times()`` (clock ticks: 10 ms resolution) and the rest
from the one read of ``/proc/self/status`` its peak needs anyway.

The peak resident memory is the high-water mark of this process's own address space. On
Linux a fork child's starts at the resident size it was forked with (pages still shared
with the starter count, as ``ps`` counts them) and never at the starter's peak, so
``ru_maxrss`` is right for fork and forkserver children. Exec is different: the kernel
carries the replaced address space's peak into ``ru_maxrss``, and a spawn child is
exec'd from a (v)fork of its starter, so it would report the starter's peak. For a
process that was exec'd (spawn children, the main program) the peak is therefore
``VmHWM`` from ``/proc/self/status`` (the current address space only); where that cannot
be read, no peak is recorded rather than a borrowed one.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .._core import names

_LINUX = sys.platform.startswith("linux")
_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, else KiB
_FORKED = ("fork", "forkserver")


def prepare() -> None:
    """Load ``resource`` in the starter: fork children inherit it, the fork server preloads
    it. A spawn child does not import it (about 0.2 ms) unless the program did."""
    global _getrusage
    import resource

    _getrusage = resource.getrusage


def process_use(start_method: str | None) -> dict[str, Any]:
    """This process's CPU times, context switches and peak memory, as span attributes.

    ``start_method`` is how the process was started (None: the main program, which was
    exec'd)."""
    if _LINUX and "resource" not in sys.modules:  # a spawn child: one read of /proc
        return _from_proc()
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    attributes: dict[str, Any] = {
        names.CPU_USER: round(usage.ru_utime, 6),
        names.CPU_SYSTEM: round(usage.ru_stime, 6),
        names.SWITCHES_VOLUNTARY: usage.ru_nvcsw,
        names.SWITCHES_INVOLUNTARY: usage.ru_nivcsw,
    }
    if start_method in _FORKED:
        peak: int | None = usage.ru_maxrss * _MAXRSS_UNIT
    else:
        peak = _status().get(b"VmHWM") if _LINUX else None
    if peak:
        attributes[names.MEMORY_PEAK] = peak
    return attributes


def forked_use() -> dict[bytes, bytes] | None:
    """``process_use("fork")`` as the text of its values, by the holes of a fork child's end
    record (``forkstart``): ``cu``, ``cs`` (CPU user, system), ``vcs``, ``ics`` (switches
    voluntary, involuntary), ``rss`` (peak); None without a peak (``process_use`` then
    leaves the attribute out)."""
    usage = (_getrusage or _load())(_RUSAGE_SELF)
    if not usage.ru_maxrss:
        return None
    return {
        # round(x, 6) as JSON writes it: "%.6f" is the same number, without the float.
        b"cu": b"%.6f" % usage.ru_utime,
        b"cs": b"%.6f" % usage.ru_stime,
        b"vcs": b"%d" % usage.ru_nvcsw,
        b"ics": b"%d" % usage.ru_nivcsw,
        b"rss": b"%d" % (usage.ru_maxrss * _MAXRSS_UNIT),
    }


_RUSAGE_SELF = 0  # resource.RUSAGE_SELF on every platform that has it
_getrusage: Any = None  # resource.getrusage, once prepare() loaded it


def _load() -> Any:
    import resource

    return resource.getrusage


def _from_proc() -> dict[str, Any]:
    """Without ``resource``: CPU from ``times()`` (in clock ticks, 10 ms here), the rest from
    ``/proc/self/status``."""
    times = os.times()
    attributes: dict[str, Any] = {
        names.CPU_USER: round(times.user, 6),
        names.CPU_SYSTEM: round(times.system, 6),
    }
    status = _status()
    for key, name in _STATUS_KEYS:
        if key in status:
            attributes[name] = status[key]
    return attributes


_STATUS_KEYS = (
    (b"VmHWM", names.MEMORY_PEAK),
    (b"voluntary_ctxt_switches", names.SWITCHES_VOLUNTARY),
    (b"nonvoluntary_ctxt_switches", names.SWITCHES_INVOLUNTARY),
)


def _status() -> dict[bytes, int]:
    """The figures of ``/proc/self/status`` this module reads (kB as bytes); {} if unreadable."""
    try:
        fd = os.open("/proc/self/status", os.O_RDONLY)
        try:
            data = os.read(fd, 16384)
        finally:
            os.close(fd)
    except OSError:
        return {}
    out: dict[bytes, int] = {}
    for key, _ in _STATUS_KEYS:
        at = data.find(b"\n" + key + b":")
        if at < 0:
            continue
        value = data[at + len(key) + 2 : data.find(b"\n", at + 1)].split()
        if value and value[0].isdigit():
            out[key] = int(value[0]) * (1024 if value[1:] == [b"kB"] else 1)
    return out
