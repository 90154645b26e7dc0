"""The hooks' entry point: install every hook, or undo them all, in one call."""

from __future__ import annotations

import functools
import importlib
import sys
from types import ModuleType

from .._core import onimport
from . import environ, pools, process, registry

# The hooks of third-party engines, by the modules each patches (its ``PATCHED``): a hook's
# own module is loaded only once the program imports one of them, so a process that never
# uses joblib or Dask (a spawn child running its target, say) loads none of their code.
ENGINES = {
    "joblib.parallel": "joblib",
    "joblib.externals.loky.process_executor": "joblib",
    "distributed.client": "dask",
    "distributed.worker": "dask",
    "distributed.process": "dask",
    "distributed.scheduler": "dask",
}
_engines = False  # installed: an engine imported now is patched


def install(*, by_decorator: bool = False) -> None:
    """Patch ``BaseProcess`` and the pools once; idempotent."""
    global _engines
    if by_decorator:
        registry.set_decorated(True)
    pools.install()
    process.install()
    _engines = True
    for name, hook in ENGINES.items():  # patched once the program imports them
        onimport.when_imported(name, functools.partial(_engine_imported, hook))
    environ.install()


def _engine_imported(hook: str, module: ModuleType) -> None:
    if _engines:
        importlib.import_module(f"{__package__}.{hook}").patch_imported(module)


def uninstall() -> None:
    """Restore multiprocessing's originals."""
    global _engines
    _engines = False
    pools.uninstall()
    process.uninstall()
    for hook in dict.fromkeys(ENGINES.values()):
        loaded = sys.modules.get(f"{__package__}.{hook}")
        if loaded is not None:
            loaded.uninstall()
    environ.uninstall()


def reset() -> None:
    """Every hook undone and every switch off (for tests)."""
    uninstall()
    registry.reset()


registry.set_installer(install)
