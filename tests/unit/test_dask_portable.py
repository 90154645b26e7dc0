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


def test_a_submissions_tasks_share_the_functions_bytes_and_a_worker_loads_them_once():
    """The scheduler pickles every task it sends: the function's bytes are made once per
    wrapper object and task group, and unpickled tasks share one function."""
    work, _ = _local_functions()
    wrapper = traced(work)
    group, other_group = object(), object()
    light = dask_tasks.portable(wrapper, group)
    assert dask_tasks.portable(wrapper, group) is light
    assert dask_tasks.portable(wrapper, other_group) is not light  # the next submission's
    assert light.__reduce__()[1][0] is light.__reduce__()[1][0]  # made once
    first, second = pickle.loads(pickle.dumps(light)), pickle.loads(cloudpickle.dumps(light))
    assert type(first) is type(second) is dask_tasks.Portable
    assert first.target is second.target  # loaded once in this process
    assert first.target is not work and first(4) == 8
    assert repr(first).startswith("<traced <function ") and "work" in repr(first)


def test_a_function_carries_the_globals_of_when_its_work_was_submitted():
    namespace: dict = {"LIMIT": 1}
    exec("def over(x):\n    return x > LIMIT\n", namespace)  # by value, as a program's own
    wrapper = traced(namespace["over"])
    before = pickle.dumps(dask_tasks.portable(wrapper, object()))
    namespace["LIMIT"] = 5
    after = pickle.dumps(dask_tasks.portable(wrapper, object()))
    assert pickle.loads(before)(3) is True
    assert pickle.loads(after)(3) is False


def test_with_every_task_traced_a_programs_own_plain_function_travels_the_same_way():
    """Under ``instrument()``/``proctrace run`` (the annotation's "*"), a plain function of the
    program's own goes as a Portable too, with the plain spec; Dask's own do not (their tasks
    are named after their keys), nor does anything when only @traced functions are traced."""
    work, waits = _local_functions()
    light = dask_tasks.portable(work, object(), everything=True)
    assert light is not None and light.target is work and light.spec == TraceSpec()
    assert dask_tasks.portable(work, object()) is None
    assert dask_tasks.portable(waits, object(), everything=True) is None
    from dask.utils import key_split

    assert dask_tasks.portable(key_split, object(), everything=True) is None
