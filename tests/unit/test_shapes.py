"""Units behind target shapes, async targets and the joblib hook: how a target is seen
through, which arguments are recorded, how a pool worker outliving the program ends."""

from __future__ import annotations

import functools
import inspect

from proctrace import traced
from proctrace._agent import fates as _fates
from proctrace._core import names
from proctrace._core.arguments import describe
from proctrace._core.spec import TraceSpec, function_of, resolve, span_name, spec_of


@traced(name="w")
def work(label, x, k=1):
    return label, x, k


def plain(label, x, k=1):
    return label, x, k


class Worker:
    @traced
    def __call__(self, x, token=None):
        return x

    @traced
    def method(self, x):
        return x


class Plain:
    def __call__(self, x):
        return x


def test_the_spec_is_seen_through_partials_bound_methods_and_callable_instances():
    assert spec_of(functools.partial(work, "a")) == TraceSpec(name="w")
    assert spec_of(functools.partial(functools.partial(work, "a"), 1)) == TraceSpec(name="w")
    assert spec_of(Worker()) == TraceSpec()
    assert spec_of(Worker().method) == TraceSpec()
    for untraced in (plain, functools.partial(plain, 1), Plain(), Plain().__call__, print, int):
        assert spec_of(untraced) is None


def test_resolve_reaches_the_function_with_the_arguments_the_call_gives_it():
    """A partial's arguments merged as the call sees them (call keywords win), ``self``
    first for a bound method or a callable instance; calling the result is the call."""
    target, args, kwargs = resolve(functools.partial(plain, "a", k=2), (3,), {"k": 4})
    assert (target, args, kwargs) == (plain, ("a", 3), {"k": 4})
    obj = Plain()
    target, args, kwargs = resolve(obj, (5,))
    assert target is Plain.__call__ and args == (obj, 5) and target(*args) == 5
    target, args, _ = resolve(functools.partial(Worker().method, 7))
    assert target is Worker.method and args[1:] == (7,)
    assert resolve(print, (1,)) == (print, (1,), {})


def test_names_come_from_the_function_a_target_reaches():
    assert span_name(resolve(functools.partial(plain, 1))[0], TraceSpec()) == "plain"
    assert span_name(resolve(Plain())[0], TraceSpec()) == "Plain.__call__"
    assert span_name(resolve(Worker())[0], TraceSpec()) == "Worker.__call__"
    assert function_of(Worker()) is Worker.__call__.__wrapped__
    assert function_of(functools.partial(work, 1)) is work.__wrapped__


def test_a_methods_self_is_not_recorded_and_secrets_keep_their_position():
    """``self`` is not an argument the caller passed; a secret after it is still redacted."""
    shown, _ = describe(Worker.__call__.__wrapped__, (Worker(), 1, "s3cr3t"), {}, limit=50)
    assert shown == ["1", "[REDACTED]"]
    assert describe(plain, ("self", 1), {}, limit=50)[0] == ["'self'", "1"]


def test_a_traced_coroutine_function_stays_one():
    @traced
    async def fetch(x):
        return x

    @traced(name="n")
    async def named(x):
        return x

    assert inspect.iscoroutinefunction(fetch) and inspect.iscoroutinefunction(named)
    assert fetch.__name__ == "fetch" and spec_of(named) == TraceSpec(name="n")
    assert not inspect.iscoroutinefunction(work)


def _expect(fates, span, quiet):
    fates.expect(
        {"k": "expect", "span": span, "trace": "t" * 32, "parent": None, "name": "w",
         "start": 1, "quiet_term": quiet, "attrs": {}}
    )
    fates.started({"span": span, "trace": "t" * 32, "parent": None, "name": "w", "start": 2,
                   "attrs": {}})


def test_a_pool_worker_still_running_at_exit_is_not_a_failure():
    """A pool's worker (loky's reusable executor keeps them) outliving the program ends as
    still running, not ERROR; any other process still running is an error, as before."""
    emitted = []
    fates = _fates.Fates(emitted.append, grace=0.0)
    _expect(fates, "worker", quiet=True)
    _expect(fates, "child", quiet=False)
    for span in ("worker", "child"):
        fates.abandon({"span": span, "trace": "t" * 32, "parent": None, "name": "w",
                       "start": 2, "attrs": {}, "quiet_term": span == "worker"})
    worker, child = emitted
    assert worker["status"] == names.STATUS_UNSET and worker["message"] == ""
    assert worker["attrs"][names.RUNNING_AT_EXIT] is True
    assert names.ABNORMAL_END not in worker["attrs"]
    assert child["status"] == names.STATUS_ERROR and child["message"] == _fates.STILL_RUNNING


def test_the_joblib_hook_patches_joblib_once_imported_and_is_undone():
    import joblib.parallel

    from proctrace._hooks import install, registry

    parallel = joblib.parallel.Parallel
    originals = {name: parallel.__dict__[name] for name in ("__call__", "_dispatch")}
    install.install()  # joblib already imported: patched at once
    assert registry.patched(parallel, "_dispatch") and registry.patched(parallel, "__call__")
    assert all(parallel.__dict__[name] is not fn for name, fn in originals.items())
    install.uninstall()
    assert all(parallel.__dict__[name] is fn for name, fn in originals.items())
