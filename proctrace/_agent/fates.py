"""How each process ended, pieced together from what its starter and the process itself said.

A starter announces a child's span once ``start()`` worked (``expect``),
reports the signal it is about to send (``terminate()``/``kill()``) and the
exit code ``join()`` saw (``exited``). The child opens and ends the span over
its own connection. These arrive over different connections in any order, so
each announced span has a fate here until it is ended:

- announced, never started: ended when the exit is reported (after a short
  grace, in case the child's own records are still on their way), or at the end
  of the run;
- started, then its connection ended with the span open: ended at once if the
  starter signalled it, else after a short grace that lets the exit code
  arrive. The end time is when the connection ended;
- ended by the child: held until the starter reports the exit code (or
  HELD_GRACE runs out), because a process can still die after its target
  returned, and the span should carry the exit code the process really had.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from .._core import names
from .._core.records import ExpectRecord, SpanData
from . import cutoff as _cutoff
from . import processes as _processes

ABNORMAL = "process ended before its span did (killed, crashed or os._exit)"
STILL_RUNNING = "process was still running when the traced program exited"
NEVER_RAN = "process ended before its target started"
SIGNALS = {
    15: "terminated by SIGTERM (Process.terminate())",
    9: "killed by SIGKILL (Process.kill())",
}
GRACE = 0.25  # seconds one connection's news may lag behind another's
# How long a span its child ended waits for the starter's join() to report the exit
# code; a starter that joins later (or never: multiprocessing reaps at exit) gets the
# span out with the code the child expected.
HELD_GRACE = 2.0
# How often a process that exec'd is looked for while no join() has reported it: it may be
# reaped by active_children() or os.wait(), which say nothing.
EXEC_CHECK = 0.1
_STATUS_UNSET, _STATUS_ERROR = names.STATUS_UNSET, names.STATUS_ERROR


class _Fate:
    __slots__ = (
        "code", "deadline", "detached", "ended_ns", "execed", "gone", "pid", "reaped_ns",
        "record", "signal", "state",
    )

    def __init__(self, state: str, record: SpanData | None) -> None:
        self.state = state  # announced | open | dying | held
        self.record = record
        self.signal: int | None = None
        self.code: int | None = None
        self.deadline: float | None = None
        self.ended_ns: int | None = None
        self.pid: int | None = None  # as its starter reported it
        # When the starter's join() reaped it: the process had ended by then, however late
        # the agent noticed (an agent still starting up notices nothing for ~0.2 s).
        self.reaped_ns: int | None = None
        self.execed = False  # it replaced its program (os.exec*): it lives on after its EOF
        self.gone = False  # an exec'd process found reaped with no report: its code unknown
        # Its connection ended while the process ran on (the program closed proctrace's
        # descriptor): its end may still come, on the connection the process makes next.
        self.detached = False


class Fates:
    """Tracks announced process spans; calls ``emit`` with each span it has to end itself."""

    def __init__(self, emit: Callable[[SpanData], None], grace: float = GRACE) -> None:
        self._emit = emit
        self._grace = grace
        self._fates: dict[str, _Fate] = {}
        # Spans ended here for a process that never started them: its records, should they
        # still come (a collector running late), must not make a second span.
        self._ended_unstarted: dict[str, None] = {}
        # What a starter reported of a span not heard of yet: a fork child's span is opened
        # on the child's connection, which the collector may read after the starter's own.
        self._early: dict[str, _Fate] = {}
        self.abnormal = 0
        # Pool tasks a process ran when its connection ended, by its span id (``cutoff``).
        self._tasks: dict[str, list[SpanData]] = {}
        # A signal the agent itself received with the rest of the process group (SIGTERM from
        # docker stop or systemd, SIGHUP from a closed terminal, SIGINT from Ctrl-C).
        self.group_signal: int | None = None

    def expect(self, announced: ExpectRecord) -> None:
        record: SpanData = {
            "trace": announced["trace"],
            "span": announced["span"],
            "parent": announced["parent"] or None,
            "name": announced["name"],
            "start": announced["start"],
            "attrs": announced["attrs"],
            "process": True,
            "quiet_term": bool(announced["quiet_term"]),
        }
        fate = self._fates.get(record["span"])
        if fate is None:
            self._fates[record["span"]] = _Fate("announced", record)
        elif fate.record is not None:
            _merge(fate.record, record)  # the child was quicker than its starter's note

    def started(self, record: SpanData) -> bool:
        """The child opened its span: fold in the announcement, if one came first. False if
        the span was already ended as never started (the record came too late)."""
        if record["span"] in self._ended_unstarted:
            return False
        fate = self._fates.get(record["span"])
        if fate is not None and fate.state == "announced" and fate.record is not None:
            _merge(record, fate.record)
            fate.state, fate.record, fate.deadline = "open", record, None
        elif fate is None:
            fate = self._fates[record["span"]] = _Fate("open", record)
            early = self._early.pop(record["span"], None)
            if early is not None:
                fate.signal, fate.code = early.signal, early.code
                fate.reaped_ns = early.reaped_ns
                _note_pid(fate, early.pid)
        return True

    def ended(self, record: SpanData) -> bool:
        """The child ended its span; True if it is held here until the exit is known."""
        fate = self._fates.get(record["span"])
        if fate is None or fate.state != "open":
            return False
        fate.state, fate.record = "held", record
        if fate.code is not None:
            self._release(record["span"], fate)
        else:
            fate.deadline = time.monotonic() + HELD_GRACE
        return True

    def _release(self, span_id: str, fate: _Fate) -> None:
        """Emit a span its child ended, with the exit code the starter saw."""
        del self._fates[span_id]
        record = fate.record
        assert record is not None
        _note_pid(fate, None)
        attrs = record["attrs"]
        if fate.code is not None and fate.code != attrs.get(names.EXIT_CODE):
            attrs[names.EXIT_CODE] = fate.code
            if fate.signal is not None:
                attrs[names.TERMINATED] = True
            if fate.code != 0 and record.get("status") != _STATUS_ERROR:
                how = SIGNALS.get(fate.signal or 0, f"exited with code {fate.code}")
                if not (fate.signal and record.get("quiet_term")):
                    record["status"] = _STATUS_ERROR
                    record["message"] = f"{how} after its target ended"
        self._out(record)

    def forked(self, span_id: str, pid: int) -> None:
        """The starter forked the child of a span it opened before the fork: its pid, which
        the span keeps even if the child dies before ending it."""
        fate = self._fates.get(span_id)
        if fate is None:
            self._note_early(span_id, pid)
        else:
            _note_pid(fate, pid)

    def execed(self, span_id: str, replacing: bool = True, pid: int | None = None) -> None:
        """The process is about to replace its program (``os.exec*``): its connection ends
        there, the process does not. Its span waits for the exit code ``join()`` sees.
        ``replacing=False``: the exec failed, and the program runs on as before."""
        fate = self._fates.get(span_id)
        if fate is not None and fate.state == "open":
            fate.execed = replacing
            _note_pid(fate, pid)

    def signalled(self, span_id: str, signum: int, pid: int | None = None) -> None:
        fate = self._fates.get(span_id)
        if fate is None:
            self._note_early(span_id, pid).signal = signum
            return
        fate.signal = signum
        _note_pid(fate, pid)

    def exited(
        self, span_id: str, code: int, pid: int | None = None, at: int | None = None
    ) -> None:
        fate = self._fates.get(span_id)
        if fate is None:
            early = self._note_early(span_id, pid)
            early.code, early.reaped_ns = code, at
            return
        fate.code, fate.reaped_ns = code, at
        _note_pid(fate, pid)
        if fate.state == "held":
            self._release(span_id, fate)
        elif fate.state == "dying":
            self._end(span_id, fate, ABNORMAL)
        elif fate.state == "announced":
            fate.deadline = time.monotonic() + self._grace
        elif fate.state == "open":
            # Reaped, yet its connection is still open: another process holds it too (a
            # child forked meanwhile by another thread of the starter). Its own end record,
            # if it sent one, comes within the grace; else it ended abnormally.
            fate.deadline = time.monotonic() + HELD_GRACE

    def _note_early(self, span_id: str, pid: int | None) -> _Fate:
        """A report on a span not known yet (its start record is still on its way, or it
        was ended already): kept, a bounded number, until the span shows up."""
        early = self._early.get(span_id)
        if early is None:
            if span_id in self._ended_unstarted:
                return _Fate("early", None)  # nothing will come: noted nowhere
            early = self._early[span_id] = _Fate("early", None)
            if len(self._early) > 4096:
                del self._early[next(iter(self._early))]
        if pid is not None:
            early.pid = pid
        return early

    def lost(self, record: SpanData, lives_on: int | None = None) -> None:
        """The connection of the process that opened ``record`` ended with it open;
        ``lives_on``: the pid of that process, found running on (not dead, not a zombie)."""
        span_id = record["span"]
        fate = self._fates.get(span_id)
        if fate is None:
            fate = self._fates[span_id] = _Fate("open", record)
        fate.record = record
        fate.ended_ns = time.time_ns()
        if lives_on is not None and fate.code is None and not fate.execed:
            fate.pid = fate.pid or lives_on  # looked for until it is gone (tick)
            fate.state, fate.detached = "dying", True
            fate.deadline = time.monotonic() + EXEC_CHECK
        elif fate.code is not None:
            self._end(span_id, fate, ABNORMAL)
        elif fate.execed:  # the exec'd program runs on: its end is join()'s (or the run's)
            fate.state, fate.deadline = "dying", time.monotonic() + EXEC_CHECK
        else:
            # Wait for the starter's join() to say what the exit code was, and when it
            # reaped the process: briefly after a signal it sent (join() follows it).
            signalled = fate.signal is not None and fate.signal in SIGNALS
            fate.state = "dying"
            fate.deadline = time.monotonic() + (self._grace if signalled else HELD_GRACE)

    def cut_off(self, task: SpanData, process: str | None, lives_on: int | None) -> None:
        """The connection of a process running ``task`` ended (``lives_on`` -1: the run did):
        the task ends when ``process``'s span does (``cutoff``), or as a span of its own."""
        if process is not None and process in self._fates:
            self._tasks.setdefault(process, []).append(task)
        elif lives_on == -1:
            self.abandon(task)
        else:
            self.lost(task, lives_on)

    def abandon(self, record: SpanData) -> None:
        """The run is over while the process that opened ``record`` still runs."""
        fate = self._fates.pop(record["span"], None) or _Fate("open", record)
        fate.record = record
        self._fates[record["span"]] = fate
        self._end(record["span"], fate, STILL_RUNNING)

    def tick(self, now: float) -> None:
        """End the spans whose grace has run out."""
        due = [s for s, f in self._fates.items() if f.deadline is not None and f.deadline <= now]
        for span_id in due:
            fate = self._fates[span_id]
            if fate.detached:
                if _processes.running(fate.pid):
                    fate.deadline = now + EXEC_CHECK
                    continue
                # Gone without its end: ended when it was found gone, as a lost span is.
                fate.detached, fate.ended_ns = False, time.time_ns()
                fate.deadline = now + HELD_GRACE  # for the exit code join() will report
                continue
            if fate.execed and fate.state == "dying" and fate.code is None:
                if _processes.exists(fate.pid):  # running, or a zombie join() will report
                    fate.deadline = now + EXEC_CHECK
                    continue
                fate.gone = True  # reaped without a word (active_children(), os.wait())
            if fate.state == "held":
                self._release(span_id, fate)
            else:
                self._end(span_id, fate, NEVER_RAN if fate.state == "announced" else ABNORMAL)

    def pid_of(self, span_id: str) -> int | None:
        """The pid its starter reported of a span's process, if any."""
        fate = self._fates.get(span_id)
        return None if fate is None else fate.pid

    def reclaim(self, span_id: str) -> SpanData | None:
        """The start of a span whose end came on another connection than its start did:
        a process whose first connection the program closed, ending it on its next."""
        fate = self._fates.get(span_id)
        if fate is None or not fate.detached:
            return None
        fate.state, fate.detached, fate.deadline, fate.ended_ns = "open", False, None, None
        self._tasks.pop(span_id, None)  # it ran on: what it was running ended there
        return fate.record

    def waiting(self) -> bool:
        return any(f.deadline is not None for f in self._fates.values())

    def finish_all(self) -> None:
        """The run is over: end whatever is still undecided."""
        for span_id, fate in list(self._fates.items()):
            if fate.state == "held":
                self._release(span_id, fate)
            elif fate.state == "announced":
                self._end(span_id, fate, NEVER_RAN if fate.code is not None else STILL_RUNNING)
            elif fate.state == "dying":
                self._end(span_id, fate, ABNORMAL)
        self._fates.clear()

    def _end(self, span_id: str, fate: _Fate, why: str) -> None:
        record = fate.record
        del self._fates[span_id]
        if fate.state == "announced":
            self._ended_unstarted[span_id] = None
            if len(self._ended_unstarted) > 4096:
                del self._ended_unstarted[next(iter(self._ended_unstarted))]
        if record is None:
            return
        _note_pid(fate, None)
        attrs = record["attrs"]
        status, code = _STATUS_ERROR, fate.code
        if fate.execed and fate.signal is None and self.group_signal is None:
            self._end_execed(record, fate)
            return
        if self.group_signal is not None and fate.signal is None:
            stop = _processes.signal_name(self.group_signal)
            attrs[names.STOPPED_BY] = stop
            if why == STILL_RUNNING:
                why = f"process was still running when the program was stopped by {stop}"
            elif why == NEVER_RAN:
                why = f"process ended by {stop} sent to the process group before its target ran"
            else:
                why = f"process ended by {stop} sent to the process group"
        if fate.signal is not None and code in (None, -fate.signal):
            why = SIGNALS.get(fate.signal, f"ended by signal {fate.signal}")
            attrs[names.TERMINATED] = True
            code = -fate.signal
            if record.get("quiet_term"):  # a pool stopping its worker: not a failure
                status, why = _STATUS_UNSET, ""
        elif why == STILL_RUNNING and record.get("quiet_term"):
            # A pool's worker outliving the program (its pool shuts it down on its own
            # schedule, as loky's reusable executor does): no failure happened.
            status, why = _STATUS_UNSET, ""
            attrs[names.RUNNING_AT_EXIT] = True
        else:
            self.abnormal += 1
            attrs[names.ABNORMAL_END] = True
        if code is not None:
            attrs[names.EXIT_CODE] = code
        end = fate.ended_ns or time.time_ns()
        if fate.reaped_ns is not None and fate.reaped_ns < end:  # noticed late: it was over
            end = max(fate.reaped_ns, record["start"])
        record["end"], record["status"], record["message"] = end, status, why
        self._out(record)

    def _out(self, record: SpanData) -> None:
        """Emit a process span, and the tasks its end cut off."""
        self._emit(record)
        tasks = self._tasks.pop(record["span"], None)
        if tasks:
            for task in _cutoff.ended_with(record, tasks, ABNORMAL):
                self._emit(task)

    def _end_execed(self, record: SpanData, fate: _Fate) -> None:
        """A process that replaced its program: ended when ``join()`` reaped it, its status
        the exit code's (the program it became has no span of proctrace's to end)."""
        attrs = record["attrs"]
        attrs[names.EXEC] = True
        code = fate.code
        record["status"], record["message"] = _STATUS_UNSET, ""
        if code is None and not fate.gone:  # the traced program ended first
            attrs[names.RUNNING_AT_EXIT] = True
        else:
            attrs[names.EXIT_CODE] = code
            if code != 0:
                record["status"] = _STATUS_ERROR
                record["message"] = f"the program it exec'd exited with code {code}"
        record["end"] = fate.reaped_ns or time.time_ns()
        self._out(record)


def _note_pid(fate: _Fate, pid: int | None) -> None:
    """The starter knows the child's pid: a span its starter opened before the fork has none
    until the child ends it, and a child killed first never does."""
    if pid is not None:
        fate.pid = pid
    if fate.pid is not None and fate.record is not None:
        fate.record["attrs"].setdefault(names.PID, fate.pid)


def _merge(started: SpanData, announced: SpanData) -> None:
    """Fold the starter's announcement into the child's start record."""
    started["start"] = min(started["start"], announced["start"])
    started["attrs"] = {**announced["attrs"], **started["attrs"]}
    started["quiet_term"] = announced.get("quiet_term", False)
    started["process"] = True


