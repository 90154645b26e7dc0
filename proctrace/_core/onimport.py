"""Run a function right after a module is first imported, without importing it ourselves.

proctrace sets up structlog and OpenTelemetry only in programs that use them:
importing either costs tens of milliseconds, which every spawn child (and every
fork child, through a larger parent) would otherwise pay.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any


class _Hook:
    """A meta path finder (plain: importlib.abc and importlib.util cost a child ~8 ms)."""

    def __init__(self, name: str, callback: Callable[[ModuleType], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = None
        for finder in sys.meta_path:  # what the import system would have asked next
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        if spec is None or loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_module = loader.exec_module
        callback = self.callback

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            sys.modules.setdefault(fullname, module)
            callback(module)

        loader.exec_module = exec_module
        return spec


def when_imported(name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` now if ``name`` is loaded, else right after its import."""
    module = sys.modules.get(name)
    if module is not None:
        callback(module)
    elif not any(isinstance(f, _Hook) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _Hook(name, callback))
