"""``instrument()``: trace every child process and pool task without decorating anything."""

from __future__ import annotations

from . import _patch

_enabled = False


def enabled() -> bool:
    return _enabled


def instrument() -> None:
    """Trace every process target and pool task; idempotent.

    Undecorated targets get the same span, attributes and logs as ``@traced``
    ones, named after the target's qualified name.
    """
    global _enabled
    _enabled = True
    _patch.install()
    from . import _runtime

    _runtime.prepare_main()


def uninstrument() -> None:
    """Stop tracing undecorated targets and restore multiprocessing's originals.

    While ``@traced`` functions exist in this process, the ``start()`` and pool
    hooks they need stay in place; they only act for decorated functions.
    """
    global _enabled
    _enabled = False
    if not _patch.decorated():
        from . import _pool

        _pool.uninstall()
        _patch.uninstall()
