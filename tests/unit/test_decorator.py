"""The decorator itself: forms, picklability, signature, direct calls."""

from __future__ import annotations

import inspect
import pickle

import pytest

from proctrace import traced


@traced
def bare(x: int, y: int = 2) -> int:
    """Adds."""
    return x + y


@traced(name="named", record_args=False, redact=("pin",))
def with_options(pin: str) -> str:
    return pin


def test_decorated_functions_pickle_by_reference():
    """spawn and forkserver pickle the target: it must resolve to the same object."""
    assert pickle.loads(pickle.dumps(bare)) is bare
    assert pickle.loads(pickle.dumps(with_options)) is with_options


def test_signature_name_and_docstring_are_kept():
    """Type checkers and introspection see the original function."""
    assert inspect.signature(bare) == inspect.signature(bare.__wrapped__)  # type: ignore[attr-defined]
    assert list(inspect.signature(bare).parameters) == ["x", "y"]
    assert bare.__name__ == "bare" and bare.__doc__ == "Adds."
    assert bare.__wrapped__.__qualname__ == "bare"  # type: ignore[attr-defined]


def test_called_outside_a_traced_run_it_still_returns_its_result(monkeypatch):
    """Called directly with tracing disabled, the function just runs."""
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    assert bare(1) == 3
    assert with_options("1234") == "1234"


def test_bad_options_are_rejected_at_decoration():
    """redact must be a sequence of names; the target must be callable."""
    with pytest.raises(TypeError, match="sequence of names"):
        traced(redact="pin")
    with pytest.raises(TypeError, match="needs a function"):
        traced()(42)  # type: ignore[arg-type]
