"""What proctrace changes in the process that uses it, and how that is undone; the command."""

from __future__ import annotations

import importlib.metadata
import multiprocessing.pool
import multiprocessing.process

import proctrace.__main__
from proctrace import traced
from proctrace._hooks import install, registry

PATCHED = (
    (multiprocessing.process.BaseProcess, "start"),
    (multiprocessing.process.BaseProcess, "join"),
    (multiprocessing.pool.Pool, "__init__"),
    (multiprocessing.pool.Pool, "apply_async"),
)


def test_traced_patches_multiprocessing_and_reset_restores_the_very_originals():
    """Applying @traced patches BaseProcess.start/join and Pool.__init__/apply_async; reset()
    puts back the identical original function objects and turns every switch off."""
    originals = {(owner, name): registry.original(owner, name) for owner, name in PATCHED}
    for (owner, name), function in originals.items():  # multiprocessing's own code
        assert function.__code__.co_filename == multiprocessing.pool.__file__ or (
            function.__code__.co_filename == multiprocessing.process.__file__
        ), (owner, name)

    @traced
    def task() -> None:
        pass

    for owner, name in PATCHED:
        assert owner.__dict__[name] is not originals[(owner, name)], (owner, name)
        assert registry.patched(owner, name)
    assert registry.decorated()

    install.reset()
    for owner, name in PATCHED:
        assert owner.__dict__[name] is originals[(owner, name)], (owner, name)
        assert not registry.patched(owner, name)
    assert not registry.decorated() and not registry.instrumenting()


def test_the_proctrace_console_script_is_declared_in_the_installed_metadata():
    """The installed distribution declares the `proctrace` console script as
    proctrace.__main__:main, and that entry point loads the package's main()."""
    found = importlib.metadata.entry_points(group="console_scripts", name="proctrace")
    assert {entry.value for entry in found} == {"proctrace.__main__:main"}
    assert all(entry.load() is proctrace.__main__.main for entry in found)
