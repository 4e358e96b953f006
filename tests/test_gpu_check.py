"""benchmarks/gpu_check.py in its tiny mode: every row present, a finite training loss, the
CPU-vs-CPU forecast identical, and nothing imported beyond torch, numpy, PyYAML and the model."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# a GPU machine may lack these: the check must run without them
ABSENT = ("xarray", "netCDF4", "dask", "pandas", "scipy", "h5py", "numba")
RUN = (
    "import sys; sys.modules.update(dict.fromkeys({absent!r})); "
    "sys.argv[1:] = ['--tiny', '--out', {out!r}]; "
    "import runpy; runpy.run_path({script!r}, run_name='__main__')"
)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu") / "gpu.json"
    code = RUN.format(absent=ABSENT, out=str(out), script=str(ROOT / "benchmarks/gpu_check.py"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return json.loads(out.read_text()), done.stdout


def test_tiny_gpu_check_has_every_row_and_prints_one_table(report):
    table, printed = report
    names = [(r["check"], r["variant"]) for r in table["rows"]]
    steps = [
        f"{grid} {variant}"
        for variant in ("eager", "eager-cl", "compile-cl", "compile")
        for grid in ("conus-0.25", "conus-0.1")
    ]
    assert [n[0] for n in names] == ["matmul", "train", "agree"] + ["step"] * 8
    assert [n[1] for n in names[3:]] == steps
    assert table["meta"]["tiny"] is True
    assert all(f"{c:<7}{v:<24}" in printed for c, v in names)


def test_tiny_gpu_check_trains_to_a_finite_loss_and_agrees_with_itself(report):
    rows = {r["check"]: r for r in report[0]["rows"] if r["check"] != "step"}
    train = rows["train"]
    assert train["ok"] and train["finite"]
    assert 0 < train["loss_first"] < 10 and 0 < train["loss_last"] < 10
    assert rows["agree"]["ok"] and rows["agree"]["max_abs_diff"] == 0.0  # CPU with itself
    assert rows["matmul"]["tflop_s"] > 0


def test_tiny_gpu_check_times_the_eager_steps_and_skips_compiling(report):
    for row in (r for r in report[0]["rows"] if r["check"] == "step"):
        if "compile" in row["variant"]:
            assert row["skipped"] == "tiny mode: no compile"
        else:
            assert row["ok"] and row["samples_s"] > 0 and row["tflop_step"] > 0
            assert row["of_peak"] > 0 and row["grid"] == [16, 24]


def test_gpu_check_builds_the_model_with_the_training_input_channels():
    from forecast.training.features import N_CHANNELS

    text = (ROOT / "benchmarks/gpu_check.py").read_text()
    assert re.search(r"^IN_CHANNELS = (\d+) ", text, re.M).group(1) == str(N_CHANNELS)
