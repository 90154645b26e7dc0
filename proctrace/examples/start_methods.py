"""The same task under each start method, chosen as the lesson explains.

    python -m proctrace.examples.start_methods            # all three, through get_context()
    python -m proctrace.examples.start_methods --method spawn   # one, through set_start_method()

``set_start_method()`` sets the program's default once; ``get_context()``
gives an object with the same API bound to one method, so one program can
use several.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from multiprocessing import current_process

from proctrace import traced
from proctrace.examples._common import METHODS, finish, parse_method


@traced
def process_task(method: str) -> None:
    print(
        f"{current_process().name} started with {method}: pid {os.getpid()}, "
        f"parent pid {os.getppid()}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> None:
    method = parse_method(__doc__.splitlines()[0], argv)
    if method is not None:
        multiprocessing.set_start_method(method)
        p = multiprocessing.Process(target=process_task, name=f"{method}-task", args=(method,))
        p.start()
        p.join()
    else:
        for name in METHODS:
            ctx = multiprocessing.get_context(name)
            p = ctx.Process(target=process_task, name=f"{name}-task", args=(name,))
            p.start()
            p.join()
    finish()


if __name__ == "__main__":
    main()
