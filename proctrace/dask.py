"""proctrace on Dask workers started elsewhere than by the traced program.

``dask worker SCHEDULER --preload proctrace.dask`` (Dask's preload: ``dask_setup(worker)``), or,
for workers already running, ``client.register_plugin(proctrace.dask.WorkerPlugin())``. Each
worker process then runs its own proctrace agent, exporting to the ``OTEL_EXPORTER_OTLP_*``
endpoint set for that worker, with a ``dask worker`` process span and a span per task under the
span that submitted it (see ``proctrace/_hooks/dask.py``). Workers a traced program starts
itself (``LocalCluster(processes=True)`` under ``proctrace run`` or ``instrument()``) need
neither: they are traced as its children. Importing this module imports ``distributed``.
"""

from __future__ import annotations

from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin

from ._hooks import dask as _hook

__all__ = ["ATTEMPT", "KEY", "RETRIES", "WORKER", "WorkerPlugin", "dask_setup", "dask_teardown"]

KEY = _hook.KEY
WORKER = _hook.WORKER
ATTEMPT = _hook.ATTEMPT
RETRIES = _hook.RETRIES


def dask_setup(worker: Any) -> None:
    """Dask's preload entry point: trace this worker's tasks (on a scheduler, also preloaded
    with ``dask scheduler --preload proctrace.dask``: count each task's runs across workers)."""
    _hook.setup_worker(worker)


def dask_teardown(worker: Any) -> None:
    """Dask's preload exit point: end the worker's process span."""
    _hook.teardown_worker(worker)


class WorkerPlugin(_WorkerPlugin):
    """``client.register_plugin(proctrace.dask.WorkerPlugin())``: ``dask_setup`` on every
    worker, present and future, without restarting them."""

    name = "proctrace"

    def setup(self, worker: Any) -> None:
        _hook.setup_worker(worker)

    def teardown(self, worker: Any) -> None:
        _hook.teardown_worker(worker)
