"""A @traced function as Dask sends it with each task (issue #14): it pickles as the plain
function would, and unpickled it is the traced call."""

from __future__ import annotations

import pickle

import pytest

from proctrace import traced
from proctrace._core.spec import TraceSpec
from proctrace._hooks import dask_portable as dask_tasks

cloudpickle = pytest.importorskip("cloudpickle")


def _local_functions():
    # Defined in a function: cloudpickle pickles them by value, as it does a program's own
    # functions in __main__ (the ones Dask users submit).
    def work(n, token=None):
        return n * 2

    async def waits(n):
        return n

    return work, waits


def test_a_traced_function_travels_as_the_function_it_wraps():
    work, _ = _local_functions()
    wrapper = traced(redact=("token",))(work)
    light = dask_tasks.portable(wrapper)
    assert light is not None
    assert light.target is work and light.spec == wrapper.__proctrace__
    plain = cloudpickle.dumps(work)
    sent = cloudpickle.dumps(light)
    assert len(sent) < len(plain) + 200
    assert len(sent) < 0.6 * len(cloudpickle.dumps(wrapper))  # the wrapper by value
    back = pickle.loads(sent)
    assert type(back) is dask_tasks.Portable
    assert isinstance(back.__proctrace__, TraceSpec) and back.spec.redact == ("token",)
    assert back(21) == 42  # called outside a worker hook: the traced call, as the wrapper


def test_what_is_not_a_traced_plain_function_is_left_as_it_is():
    work, waits = _local_functions()
    assert dask_tasks.portable(work) is None
    assert dask_tasks.portable(traced(waits)) is None  # Dask awaits a coroutine function
    assert dask_tasks.portable(None) is None
    assert dask_tasks.portable(len) is None
