"""The package's public names load on first use, and the agent loads only its own part."""

from __future__ import annotations

import json
import subprocess
import sys

import proctrace
from proctrace._api import decorator, functions, propagate
from proctrace._core import config


def test_each_public_name_is_the_one_its_module_defines():
    assert proctrace.traced is decorator.traced
    assert proctrace.instrument is functions.instrument
    assert proctrace.inject is propagate.inject and proctrace.extract is propagate.extract
    assert proctrace.Settings is config.Settings
    assert proctrace.ConfigurationError is config.ConfigurationError
    assert sorted(dir(proctrace)) == sorted(proctrace.__all__)
    for name in proctrace.__all__:
        assert getattr(proctrace, name) is not None


def test_an_unknown_name_is_an_attribute_error():
    try:
        proctrace.no_such_name  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("no AttributeError")


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys, json\n"
         "print(json.dumps(sorted(m for m in sys.modules if m.startswith('proctrace'))))"],
        capture_output=True, text=True, check=True,
    )
    return json.loads(out.stdout)


def test_the_agent_loads_neither_the_child_side_nor_the_hooks_nor_the_api():
    """Its start is CPU on the traced program's cores: it imports its own modules only (20
    of the package's, not the 46 that came with the public API)."""
    loaded = _loaded_after(
        "import proctrace._agent.main, proctrace._agent.collector, proctrace._agent.pipeline"
    )
    assert not [m for m in loaded if m.startswith(("proctrace._child", "proctrace._hooks",
                                                   "proctrace._api", "proctrace._starter"))]
    assert "proctrace._agent.collector" in loaded


def test_star_import_and_the_first_use_load_the_api():
    loaded = _loaded_after("from proctrace import *\nassert callable(traced)")
    assert "proctrace._api.decorator" in loaded and "proctrace._hooks.calls" in loaded


def test_the_engine_hooks_wait_for_every_module_they_patch():
    """``_hooks.install`` loads the joblib and Dask hooks when the program imports a module
    one of them patches: its table names each such module, and only those."""
    from proctrace._hooks import dask as dask_hook
    from proctrace._hooks import install
    from proctrace._hooks import joblib as joblib_hook

    waited = {h: {m for m, e in install.ENGINES.items() if e == h} for h in ("dask", "joblib")}
    assert waited == {"dask": set(dask_hook.PATCHED), "joblib": set(joblib_hook.PATCHED)}
    assert set(install.ENGINES.values()) == {"dask", "joblib"}
