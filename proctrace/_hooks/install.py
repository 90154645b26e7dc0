"""The hooks' entry point: install every hook, or undo them all, in one call."""

from __future__ import annotations

from . import pools, process, registry


def install(*, by_decorator: bool = False) -> None:
    """Patch ``BaseProcess`` and the pools once; idempotent."""
    if by_decorator:
        registry.set_decorated(True)
    pools.install()
    process.install()


def uninstall() -> None:
    """Restore multiprocessing's originals."""
    pools.uninstall()
    process.uninstall()


def reset() -> None:
    """Every hook undone and every switch off (for tests)."""
    uninstall()
    registry.reset()


registry.set_installer(install)
