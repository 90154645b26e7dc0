"""Children that start grandchildren: the trace is the process tree.

    python -m proctrace.examples.nested [--method fork|spawn|forkserver]
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence

from proctrace import traced
from proctrace.examples._common import finish, parse_method


@traced
def leaf(team: str, member: int) -> None:
    print(f"  {team}/{member}: pid {os.getpid()}, parent {os.getppid()}", flush=True)


@traced
def lead(team: str, method: str) -> None:
    print(f"{team}: pid {os.getpid()}, parent {os.getppid()}", flush=True)
    ctx = multiprocessing.get_context(method)
    members = [ctx.Process(target=leaf, args=(team, i), name=f"{team}-{i}") for i in range(2)]
    for p in members:
        p.start()
    for p in members:
        p.join()


def main(argv: Sequence[str] | None = None) -> None:
    method = parse_method(__doc__.splitlines()[0], argv, default="fork")
    assert method is not None
    ctx = multiprocessing.get_context(method)
    leads = [ctx.Process(target=lead, args=(team, method), name=team) for team in ("red", "blue")]
    for p in leads:
        p.start()
    for p in leads:
        p.join()
    finish()


if __name__ == "__main__":
    main()
