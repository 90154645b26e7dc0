"""The one registry of proctrace's patches, and the switches that say what they act on.

Every patch goes through ``patch()``, which keeps the original, so ``restore()``
undoes all of them at once (``uninstrument()``, and tests between cases).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_originals: dict[tuple[Any, str], Any] = {}
# True once a @traced function exists in this process.
_decorated = False
# True under instrument() / proctrace run: undecorated targets and tasks are traced too.
_instrumenting = False


def decorated() -> bool:
    return _decorated


def instrumenting() -> bool:
    return _instrumenting


def set_decorated(value: bool) -> None:
    global _decorated
    _decorated = value


def set_instrumenting(value: bool) -> None:
    global _instrumenting
    _instrumenting = value


# Installs every hook; set by the hooks' entry point (``install.py``), which imports the
# modules this registry's users are imported by.
_installer: Callable[[], None] | None = None


def set_installer(installer: Callable[[], None]) -> None:
    global _installer
    _installer = installer


def enable_instrument() -> None:
    """Trace undecorated targets and tasks too, with every hook installed."""
    set_instrumenting(True)
    if _installer is not None:
        _installer()


def patch(owner: Any, name: str, replacement: Any) -> Any:
    """Set ``owner.name`` to ``replacement``, keeping the original; returns the original."""
    key = (owner, name)
    if key not in _originals:
        _originals[key] = owner.__dict__[name] if name in owner.__dict__ else getattr(owner, name)
    setattr(owner, name, replacement)
    return _originals[key]


def original(owner: Any, name: str) -> Any:
    """What ``owner.name`` was before proctrace patched it (the current value if unpatched)."""
    return _originals.get((owner, name), getattr(owner, name))


def patched(owner: Any, name: str) -> bool:
    return (owner, name) in _originals


def restore(owners: tuple[Any, ...] | None = None) -> None:
    """Put the originals back (of ``owners`` only, when given)."""
    for key, value in list(_originals.items()):
        if owners is None or key[0] in owners:
            setattr(key[0], key[1], value)
            del _originals[key]


def reset() -> None:
    """Every patch undone and every switch off, as if proctrace had never been used here."""
    global _decorated, _instrumenting
    restore()
    _decorated = _instrumenting = False
