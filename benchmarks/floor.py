"""The floor under fork: the least any Python tracer can add to a fork child, measured.

    python benchmarks/floor.py [--children N] [--rounds R]

Hand-written stand-ins for proctrace's fork path that do only what a truthful span and its
two log lines need, with nothing general, each against bare ``multiprocessing`` (the same
sink process running) and against proctrace itself (``@traced``, exporter ``none``):

- **floor**: proctrace's design. Per child the starter opens a connection to the sink and
  sends a start record, forks, sends the child's pid and closes its copy; the child writes
  a JSON line, runs the target, takes its resource use, sends an end record and writes a
  second line; ``join()`` reports the exit code on the starter's connection.
- **quiet**: the child writes nothing. The starter opens the child's connection as above
  (the child inherits it: its end is still the sign of the child's death), writes the first
  line after the fork, and at ``join()`` sends the end record and writes the second line.
- **starter**: no connection per child either. After the fork the starter sends the start
  record with the pid on its own connection and writes the first line; the sink learns of
  the child's death from a pidfd (``os.pidfd_open``); ``join()`` sends the end record and
  writes the second line. The child runs its target and nothing else.

It prints the wall time per child (median) and the page faults per child, in the child and
in the starter: what the 1.25x target leaves for everything else proctrace does (arguments
described and redacted, the settings, the routes, the program's own spans and logs, the
failure paths). ``quiet`` and ``starter`` give up what only the child knows (the end time
of its target, its own resource use: ``wait4`` in the starter could give the latter) and
write the second line when the program joins, not when the child ends.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

PROGRAM = r'''
import contextvars, multiprocessing, os, resource, socket, statistics, struct, sys, time
import _socket

VARIANT, N, PATH = sys.argv[1], int(sys.argv[2]), sys.argv[3]
current = contextvars.ContextVar("current", default=None)
main = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
main.connect(PATH)
TIMEOUT = struct.pack("ll", 5, 0)


class Prepared:
    __slots__ = ("sock", "pid_record", "end", "started", "finished", "t0", "pid")


def traced(fn):
    def wrapper(*args, **kwargs):
        prep = multiprocessing.current_process()._prepared
        token = current.set(prep)
        pid = os.getpid()
        os.write(2, prep.started % (pid, time.time_ns()))
        t0 = time.time_ns()
        result = fn(*args, **kwargs)
        use = resource.getrusage(resource.RUSAGE_SELF)
        prep.sock.sendall(prep.end % (time.time_ns(), use.ru_utime, use.ru_stime, use.ru_maxrss))
        os.write(2, prep.finished % (pid, time.time_ns() - t0))
        current.reset(token)
        return result
    return wrapper


if VARIANT == "floor":
    base = multiprocessing.process.BaseProcess
    original_start, original_join = base.start, base.join

    def start(self):
        prep = Prepared()
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, TIMEOUT)
        sock.connect(PATH)
        span = os.urandom(8).hex().encode()
        sock.sendall(b'{"k":"start","span":"%s","start":%d,"name":"%s","args":["%s"]}\n' % (
            span, time.time_ns(), self.name.encode(), repr(self._args[0]).encode()))
        prep.sock = sock
        prep.pid_record = b'{"k":"pid","span":"%s","value":%%d}\n' % span
        prep.end = b'{"k":"end","span":"' + span + b'","end":%d,"cu":%r,"cs":%r,"rss":%d}\n'
        prep.started = b'{"event":"process started","pid":%d,"timestamp":%d}\n'
        prep.finished = b'{"event":"process finished","pid":%d,"duration":%d}\n'
        self._prepared = prep
        original_start(self)
        sock.sendall(prep.pid_record % self._popen.pid)
        sock.close()

    def join(self, timeout=None):
        original_join(self, timeout)
        main.sendall(b'{"k":"exited","value":%d}\n' % self.exitcode)

    base.start, base.join = start, join
elif VARIANT in ("quiet", "starter"):
    base = multiprocessing.process.BaseProcess
    original_start, original_join = base.start, base.join
    STARTED = b'{"event":"process started","pid":%d,"timestamp":%d}\n'
    FINISHED = b'{"event":"process finished","pid":%d,"duration":%d,"exit_code":%d}\n'

    def traced(fn):
        def wrapper(*args, **kwargs):
            return fn(*args, **kwargs)  # an exception would take the general way
        return wrapper

    def start(self):
        prep = Prepared()
        span = os.urandom(8).hex().encode()
        prep.t0 = t0 = time.time_ns()
        record = b'{"k":"start","span":"%s","start":%d,"name":"%s","args":["%s"]' % (
            span, t0, self.name.encode(), repr(self._args[0]).encode())
        prep.end = b'{"k":"end","span":"' + span + b'","end":%d,"exit_code":%d}\n'
        if VARIANT == "quiet":
            sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
            sock.setsockopt(_socket.SOL_SOCKET, _socket.SO_SNDTIMEO, TIMEOUT)
            sock.connect(PATH)
            sock.sendall(record + b"}\n")
            prep.sock = sock
        else:
            prep.sock = main
        self._prepared = prep
        original_start(self)
        prep.pid = pid = self._popen.pid
        if VARIANT == "quiet":
            prep.sock.sendall(b'{"k":"pid","span":"%s","value":%d}\n' % (span, pid))
            prep.sock.close()
        else:
            main.sendall(record + b',"pid":%d}\n' % pid)
        os.write(2, STARTED % (pid, t0))

    def join(self, timeout=None):
        original_join(self, timeout)
        prep = self._prepared
        end = time.time_ns()
        main.sendall(prep.end % (end, self.exitcode))
        os.write(2, FINISHED % (prep.pid, end - prep.t0, self.exitcode))

    base.start, base.join = start, join
elif VARIANT == "proctrace":
    from proctrace import traced
else:
    def traced(fn):
        return fn


@traced
def work(i):
    return sum(range(1000))


if __name__ == "__main__":
    ctx = multiprocessing.get_context("fork")
    for i in range(3):
        p = ctx.Process(target=work, args=(i,)); p.start(); p.join()
    c0 = resource.getrusage(resource.RUSAGE_CHILDREN); s0 = resource.getrusage(resource.RUSAGE_SELF)
    walls = []
    for i in range(N):
        p = ctx.Process(target=work, args=(i,))
        t = time.perf_counter(); p.start(); p.join(); walls.append(time.perf_counter() - t)
    c1 = resource.getrusage(resource.RUSAGE_CHILDREN); s1 = resource.getrusage(resource.RUSAGE_SELF)
    print(statistics.median(walls) * 1e3, (c1.ru_minflt - c0.ru_minflt) / N,
          (s1.ru_minflt - s0.ru_minflt) / N)
'''

SINK = r'''
import os, re, selectors, socket, sys
listener = socket.socket(socket.AF_UNIX); listener.bind(sys.argv[1]); listener.listen(128)
selector = selectors.DefaultSelector(); selector.register(listener, selectors.EVENT_READ)
PID = re.compile(rb'"k":"start".*?,"pid":(\d+)}')
while True:
    for key, _ in selector.select():
        if key.fileobj is listener:
            conn, _ = listener.accept(); selector.register(conn, selectors.EVENT_READ, "conn")
        elif key.data == "pidfd":  # a "starter" child ended
            selector.unregister(key.fileobj); os.close(key.fileobj)
        else:
            data = key.fileobj.recv(65536)
            if not data:
                selector.unregister(key.fileobj); key.fileobj.close()
            for pid in PID.findall(data):  # the "starter" stand-in's start record
                try:
                    selector.register(os.pidfd_open(int(pid)), selectors.EVENT_READ, "pidfd")
                except OSError:  # ended and reaped already
                    pass
'''
VARIANTS = ("bare", "floor", "quiet", "starter", "proctrace")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--children", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="proctrace-floor-") as tmp:
        path = os.path.join(tmp, "sink.sock")
        program = os.path.join(tmp, "program.py")
        with open(program, "w") as f:
            f.write(textwrap.dedent(PROGRAM))
        sink = subprocess.Popen([sys.executable, "-c", SINK, path])
        try:
            while not os.path.exists(path):
                pass
            rows: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
            env = dict(os.environ, OTEL_TRACES_EXPORTER="none")  # proctrace: as the sink does
            env["PYTHONPATH"] = os.pathsep.join(
                [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 *filter(None, [os.environ.get("PYTHONPATH")])]
            )
            for _ in range(args.rounds):
                for variant in rows:
                    out = subprocess.run(
                        [sys.executable, program, variant, str(args.children), path],
                        check=True, capture_output=True, text=True,  # stderr: a pipe
                        cwd=tmp, env=env,
                    ).stdout.split()
                    rows[variant].append((float(out[0]), float(out[1]), float(out[2])))
        finally:
            sink.kill()
    med = {v: [statistics.median(r[i] for r in rs) for i in range(3)] for v, rs in rows.items()}
    print(f"{'':8}{'ms per child':>14}{'child faults':>14}{'starter faults':>16}")
    for variant, (ms, child, starter) in med.items():
        print(f"{variant:8}{ms:14.3f}{child:14.0f}{starter:16.0f}")
    print(" ".join(f"{v} / bare: {med[v][0] / med['bare'][0]:.2f}" for v in VARIANTS[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
