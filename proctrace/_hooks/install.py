"""The hooks' entry point: install every hook, or undo them all, in one call."""

from __future__ import annotations

from . import dask as _dask
from . import environ, pools, process, registry
from . import joblib as _joblib


def install(*, by_decorator: bool = False) -> None:
    """Patch ``BaseProcess`` and the pools once; idempotent."""
    if by_decorator:
        registry.set_decorated(True)
    pools.install()
    process.install()
    _joblib.install()  # patches joblib once the program imports it
    _dask.install()  # patches distributed once the program imports it
    environ.install()


def uninstall() -> None:
    """Restore multiprocessing's originals."""
    pools.uninstall()
    process.uninstall()
    _joblib.uninstall()
    _dask.uninstall()
    environ.uninstall()


def reset() -> None:
    """Every hook undone and every switch off (for tests)."""
    uninstall()
    registry.reset()


registry.set_installer(install)
