"""proctrace's own frames, left out of the tracebacks of the program's exceptions.

An exception raised by a traced target passes through proctrace's frames on its way out
(the process's span opened, the call in it, its end written). multiprocessing prints the
traceback of a child's exception as it got it, and a pool sends it to the caller as text:
both showed those frames among the program's. The outermost of proctrace's frames, which
stands where multiprocessing's own ``run()`` or the decorated function would be, cuts the
ones under it (``drop_own``) before the exception goes on.
"""

from __future__ import annotations

import os

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep


def drop_own(exc: BaseException) -> None:
    """Leave proctrace's frames right under the frame that caught ``exc`` out of its
    traceback; one raised by proctrace itself (no frame of the program's) is left whole."""
    tb = exc.__traceback__
    if tb is None:
        return
    first = tb.tb_next
    while first is not None and first.tb_frame.f_code.co_filename.startswith(_PACKAGE):
        first = first.tb_next
    if first is not None:
        tb.tb_next = first
