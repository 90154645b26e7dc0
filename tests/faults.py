"""Fault injection: a traced program whose children are killed at random points of their life.

Each child sleeps a random time in each phase (before its target's work, during it,
after it); the starter picks, per child, a random moment and a way to end it:
SIGKILL from outside, ``Process.terminate()``, ``Process.kill()``, ``os._exit()`` inside
the task, an exception, or nothing. The seed makes a run reproducible.
"""

from __future__ import annotations

PROGRAM = r'''
import multiprocessing, os, random, signal, sys, time
from proctrace import traced

@traced
def victim(i, fate, delay):
    time.sleep(delay)
    if fate == "os._exit":
        os._exit(7)
    if fate == "raise":
        raise RuntimeError(f"victim {i}")
    time.sleep(delay)

if __name__ == "__main__":
    method, seed, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    ctx = multiprocessing.get_context(method)
    plan = []
    for i in range(count):
        fate = rng.choice(["SIGKILL", "terminate", "kill", "os._exit", "raise", "none"])
        delay = rng.choice([0.0, 0.02, 0.1])
        p = ctx.Process(target=victim, args=(i, fate, delay), name=f"victim-{i}")
        p.start()
        plan.append((p, fate, rng.choice([0.0, 0.01, 0.05, 0.15])))
    for p, fate, wait in plan:
        time.sleep(wait)
        if fate == "SIGKILL":
            try:
                os.kill(p.pid, signal.SIGKILL)
            except ProcessLookupError:  # already ended and reaped
                pass
        elif fate == "terminate":
            p.terminate()
        elif fate == "kill":
            p.kill()
    for p, fate, wait in plan:
        p.join()
        print(p.name, fate, p.exitcode, flush=True)
'''
