"""Starting the agent process, and waiting for it at exit.

The agent gets the run's listening socket as an inherited descriptor and its settings on
its standard input (a pipe), never on its command line, which every local user can read
(``ps``, ``/proc/PID/cmdline``): settings hold endpoints with credentials and headers.
It is born with SIGTERM, SIGHUP and SIGINT blocked (``posix_spawn``'s signal mask), so a
signal to the whole process group in its first milliseconds, before its handlers are in
place, waits for them instead of killing it: the agent outlives the program's group stop
and says which signal it was.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time
from collections.abc import Mapping

from .._core import fds as _fds

GROUP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


class AgentProcess:
    """The agent: a child process of the program that started the run."""

    def __init__(self, listener_fd: int, settings: Mapping[str, object], owner_pid: int) -> None:
        env = dict(os.environ)
        here = os.path.abspath(__file__)  # .../proctrace/_starter/agent_process.py
        package_parent = os.path.dirname(os.path.dirname(os.path.dirname(here)))
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (package_parent, env.get("PYTHONPATH", "")) if p
        )
        read_end, write_end = os.pipe()
        # The agent's last lines come back on this pipe when the program ends the run itself
        # (``finish``): the program's stderr may have changed since (a capture that ended).
        relay, relay_end = os.pipe()
        self.relay = _fds.moved(relay)  # kept open for the run: out of the program's way
        os.set_inheritable(listener_fd, True)
        os.set_inheritable(relay_end, True)
        try:
            self.pid = os.posix_spawn(
                sys.executable,
                # -P: the working directory is not on the agent's path. The program's own
                # modules there (a project's queue.py or platform.py) would shadow the
                # standard library's the agent imports, and another user able to write there
                # could plant code in it.
                [sys.executable, "-P", "-m", "proctrace._agent", str(listener_fd),
                 str(owner_pid), str(relay_end)],
                env,
                file_actions=[(os.POSIX_SPAWN_DUP2, read_end, 0)],
                setsigmask=GROUP_SIGNALS,
            )
        finally:
            os.set_inheritable(listener_fd, False)
            os.close(read_end)
            os.close(relay_end)
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(json.dumps(dict(settings)).encode())
        self.returncode: int | None = None

    def wait(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the agent to end; True if it did."""
        deadline = time.monotonic() + timeout
        pidfd = None
        try:
            pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # no pidfd (old kernel): poll instead
            pass
        try:
            while not self._reaped():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                if pidfd is not None:
                    select.select([pidfd], [], [], left)
                else:
                    time.sleep(min(left, 0.002))
            return True
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _reaped(self) -> bool:
        if self.returncode is not None:
            return True
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere (a SIGCHLD handler of the program)
            self.returncode = 0
            return True
        if pid == 0:
            return False
        self.returncode = os.waitstatus_to_exitcode(status)
        return True

    def finish(self, timeout: float) -> None:
        """Wait ``timeout`` seconds at most for the agent to end (then kill it), and write
        the lines it sent back to this process's stderr."""
        if not self.wait(timeout):
            self.kill()
        try:
            os.set_blocking(self.relay, False)
            while data := os.read(self.relay, 65536):
                os.write(2, data)
        except OSError as exc:  # nothing more, or no stderr: the files still say it
            if _fds.not_ours(exc):  # the program closed it (os.closerange): not ours to close
                return
        os.close(self.relay)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.wait(1.0)

