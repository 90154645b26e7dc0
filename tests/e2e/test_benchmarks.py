"""The benchmark script runs end to end in its quick mode (not a timed test)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, clean_env

METHODS = ("fork", "forkserver", "spawn")
VARIANTS = ("bare", "proctrace", "recipe")


@pytest.mark.slow
def test_bench_quick_measures_every_method_and_variant_and_delivers_spans(tmp_path: Path) -> None:
    """`benchmarks/bench.py --quick` exits 0 and writes JSON with a positive per-child median for
    bare, proctrace and recipe under fork, forkserver and spawn, positive pool per-task figures,
    and every proctrace and recipe run's spans delivered to the receiver. No timing is asserted.
    """
    out = tmp_path / "results.json"
    proc = subprocess.run(
        [sys.executable, "benchmarks/bench.py", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    assert results["machine"]["nproc"] >= 1
    assert results["parameters"]["quick"] is True
    for method in METHODS:
        entry = results["processes"][method]
        for variant in VARIANTS:
            assert entry[variant]["median_ms"] > 0, (method, variant)
            assert all(ms > 0 for run in entry[variant]["children_ms"] for ms in run)
        assert entry["proctrace"]["spans"] == "ok", (method, entry["proctrace"]["span_runs"])
        assert entry["recipe"]["spans"] == "ok", (method, entry["recipe"]["span_runs"])
        assert entry["ratios"]["proctrace/bare"] > 0
        assert entry["ratios"]["proctrace/recipe"] > 0
    pool = results["pool"]
    assert pool["bare"]["us_per_task"] > 0
    assert pool["proctrace"]["us_per_task"] > 0
    assert pool["proctrace"]["spans"] == "ok", pool["proctrace"]["span_runs"]
    dask = results["dask"]  # distributed is installed here: --quick measures the Dask pair
    assert dask["bare"]["us_per_task"] > 0
    assert dask["proctrace"]["us_per_task"] > 0
    assert dask["proctrace"]["spans"] == "ok", dask["proctrace"]["span_runs"]
    assert "proctrace/bare" in proc.stdout


def test_the_floor_script_measures_bare_and_its_stand_ins(tmp_path: Path) -> None:
    """`benchmarks/floor.py` runs bare fork children, its three stand-ins and proctrace, and
    prints a row for each and their ratios to bare. No timing is asserted."""
    proc = subprocess.run(
        [sys.executable, "benchmarks/floor.py", "--children", "20", "--rounds", "1"],
        cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = {line.split()[0]: line.split()[1:] for line in proc.stdout.splitlines()[1:6]}
    assert set(rows) == {"bare", "floor", "quiet", "starter", "proctrace"}
    assert all(float(value) > 0 for values in rows.values() for value in values)
    # proctrace's children took its own path: more faults in the starter than bare's
    assert float(rows["proctrace"][2]) > float(rows["bare"][2])
    for variant in ("floor", "quiet", "starter", "proctrace"):
        assert f"{variant} / bare:" in proc.stdout
