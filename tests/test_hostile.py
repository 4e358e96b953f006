"""Hostile input: every class ends in exit 2 and one stderr line naming the file or key.

Each case builds one hostile input in ``tmp_path`` and runs the CLI in-process. It must exit 2
with exactly one line on stderr naming the file or config key, print no traceback, leave every
input byte-identical, leave nothing at the output path and no temporary file behind.
The makers of the inputs are in hostile_inputs.py; signals during training in test_train_signals.py.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from hostile_inputs import (
    GRID,
    HUGE,
    TINY,
    Case,
    _archive,
    _checkpoint,
    _forecast,
    _full_disk,
    _full_disk_checkpoint,
    _full_disk_prep,
    _gridded,
    _gridded_value,
    _long_key,
    _maps,
    _mismatched,
    _naming,
    _nldn,
    _points,
    _predict_on,
    _prep,
    _stats_without,
    _train,
    _with_count,
    _with_coverage,
    _with_times,
    _wkt_polygon,
    trained_run,
)

from data_prep.progress import PLAIN_LINE
from forecast.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained model and the maps it was trained on."""
    return trained_run(tmp_path_factory.mktemp("hostile"))


# --------------------------------------------------------------------------------------------
# the cases: id -> (tmp_path, run, monkeypatch) -> Case

CASES = {
    # maps files given to predict / evaluate / train
    "maps-nan-count": lambda tmp, run, mp: _predict_on(run, tmp, _with_count(np.nan)),
    "maps-negative-count": lambda tmp, run, mp: _predict_on(run, tmp, _with_count(-3)),
    "maps-fractional-count": lambda tmp, run, mp: _predict_on(run, tmp, _with_count(2.5)),
    "maps-coverage-2": lambda tmp, run, mp: _predict_on(run, tmp, _with_coverage),
    "maps-repeated-time": lambda tmp, run, mp: _predict_on(run, tmp, _with_times("repeated")),
    "maps-unsorted-time": lambda tmp, run, mp: _predict_on(run, tmp, _with_times("unsorted")),
    "maps-nan-count-train": lambda tmp, run, mp: Case(
        [
            "train",
            *TINY,
            f"train.maps={_maps(run, tmp, _with_count(np.nan))}",
            f"train.out={tmp / 'run'}",
        ],
        "bad.nc",
        [tmp / "bad.nc"],
        tmp / "run" / "best.pt",
    ),
    "maps-coverage-2-evaluate": lambda tmp, run, mp: Case(
        [
            "evaluate",
            "--checkpoint",
            str(run["ckpt"]),
            "--maps",
            str(_maps(run, tmp, _with_coverage)),
            "--out",
            str(tmp / "s.nc"),
            *TINY[3:6],
        ],
        "bad.nc",
        [tmp / "bad.nc"],
        tmp / "s.nc",
    ),
    # gridded inputs to prep
    "gridded-negative-count": lambda tmp, run, mp: _prep(tmp, _gridded_value(-999)(tmp)),
    "gridded-fractional-count": lambda tmp, run, mp: _prep(tmp, _gridded_value(0.4)(tmp)),
    "gridded-coverage-2": lambda tmp, run, mp: _prep(
        tmp, _gridded(tmp, coverage=np.full((3, 4, 6), 2, np.int8))
    ),
    "gridded-repeated-time": lambda tmp, run, mp: _prep(
        tmp, _gridded(tmp, times=pd.DatetimeIndex(["2021-06-01", "2021-06-02", "2021-06-02"]))
    ),
    "gridded-unsorted-time": lambda tmp, run, mp: _prep(
        tmp, _gridded(tmp, times=pd.DatetimeIndex(["2021-06-01", "2021-06-03", "2021-06-02"]))
    ),
    # every record outside the domain or the time range
    "points-all-outside-domain": lambda tmp, run, mp: _prep(tmp, _points(tmp, [60.0, 61.0])),
    "points-all-outside-time-range": lambda tmp, run, mp: _prep(
        tmp, _points(tmp, [31.0, 32.0]), "--start", "2022-01-01", "--end", "2022-01-05"
    ),
    # NLDN day fields beyond the datetime range are unparseable rows: here every row
    "nldn-day-beyond-datetime": lambda tmp, run, mp: _prep(
        tmp, _nldn(tmp, [(99991231, -102.05, 31.05, 3), (30000101, -102.05, 31.05, 3)])
    ),
    # point feeds as they come: a non-point geometry, times that are neither ISO nor epoch
    # numbers, epoch milliseconds read as seconds, a time zone that does not exist
    "points-wkt-polygon": lambda tmp, run, mp: _naming(
        _prep(tmp, _wkt_polygon(tmp)), "shapes.csv: geometry column 'geometry' holds POLYGON"
    ),
    "points-epoch-column-of-strings": lambda tmp, run, mp: _prep(
        tmp, _points(tmp, [31.0, 32.0], time="yesterday")
    ),
    "points-epoch-implausible-magnitude": lambda tmp, run, mp: _naming(
        _prep(tmp, _points(tmp, [31.0, 32.0], time=1622548800000)),
        "points.csv: time column 'time' holds epoch numbers",
    ),
    "points-unknown-timezone": lambda tmp, run, mp: Case(
        _prep(tmp, _points(tmp, [31.0]), "--timezone", "Asia/Tokio").argv,
        "--timezone 'Asia/Tokio'",
        [tmp / "points.csv"],
        tmp / "out.nc",
    ),
    # counts no int64 holds
    "points-count-overflow": lambda tmp, run, mp: _prep(tmp, _points(tmp, [31.0], count=[HUGE])),
    "nldn-count-overflow": lambda tmp, run, mp: _prep(
        tmp, _nldn(tmp, [(20210601, -102.05, 31.05, HUGE)])
    ),
    "gridded-count-overflow": lambda tmp, run, mp: _prep(tmp, _gridded_value(1e30)(tmp)),
    # forecast files given to evaluate
    "forecast-nan-probability": lambda tmp, run, mp: _forecast(run, tmp, np.nan),
    "forecast-probability-above-1": lambda tmp, run, mp: _forecast(run, tmp, 1.5),
    # files given as checkpoints
    "checkpoint-text": lambda tmp, run, mp: _checkpoint(
        run, tmp, lambda p, ck: p.write_text("not a checkpoint\n")
    ),
    "checkpoint-random-bytes": lambda tmp, run, mp: _checkpoint(
        run, tmp, lambda p, ck: p.write_bytes(np.random.default_rng(0).bytes(4096))
    ),
    "checkpoint-state-dict-mismatch": lambda tmp, run, mp: _checkpoint(run, tmp, _mismatched),
    "checkpoint-no-statistics": lambda tmp, run, mp: _checkpoint(
        run, tmp, lambda p, ck: torch.save({k: v for k, v in ck.items() if k != "stats"}, p)
    ),
    "checkpoint-statistics-lack-climatology": lambda tmp, run, mp: _checkpoint(
        run, tmp, _stats_without("climatology")
    ),
    "checkpoint-plain-tensor": lambda tmp, run, mp: _checkpoint(
        run, tmp, lambda p, ck: torch.save(torch.zeros(3), p)
    ),
    # a full disk while writing
    "full-disk-predict": lambda tmp, run, mp: (
        _full_disk(mp),
        Case(
            [
                "predict",
                "--checkpoint",
                str(run["ckpt"]),
                "--maps",
                str(run["maps"]),
                "--out",
                str(tmp / "f.nc"),
            ],
            "f.nc",
            [run["maps"], run["ckpt"]],
            tmp / "f.nc",
        ),
    )[1],
    "full-disk-prep": lambda tmp, run, mp: _full_disk_prep(tmp, mp),
    "full-disk-checkpoint": lambda tmp, run, mp: _full_disk_checkpoint(run, tmp, mp),
    # malformed provenance of an archive appended to
    "archive-inputs-garbage-json": lambda tmp, run, mp: _archive(run, tmp, {"inputs": "{not json"}),
    "archive-inputs-wrong-types": lambda tmp, run, mp: _archive(run, tmp, {"inputs": "[1, 2]"}),
    "archive-time-step-not-a-number": lambda tmp, run, mp: _archive(
        run, tmp, {"time_step_seconds": "daily"}
    ),
    "archive-tally-not-a-number": lambda tmp, run, mp: _archive(run, tmp, {"records_read": "many"}),
    # config values out of range
    "config-lr-zero": lambda tmp, run, mp: _train(run, tmp, "train.lr=0"),
    "config-lr-nan": lambda tmp, run, mp: _train(run, tmp, "train.lr=.nan"),
    "config-batch-size-zero": lambda tmp, run, mp: _train(run, tmp, "train.batch_size=0"),
    "config-epochs-negative": lambda tmp, run, mp: _train(run, tmp, "train.epochs=-1"),
    "config-max-steps-negative": lambda tmp, run, mp: _train(run, tmp, "train.max_steps=-5"),
    "config-warmup-negative": lambda tmp, run, mp: _train(run, tmp, "train.warmup_steps=-1"),
    "config-checkpoint-every-negative": lambda tmp, run, mp: _train(
        run, tmp, "train.checkpoint_every=-1"
    ),
    "config-threads-negative": lambda tmp, run, mp: _train(run, tmp, "train.threads=-2"),
    "config-dropout-above-1": lambda tmp, run, mp: _train(run, tmp, "model.dropout=1.5"),
    "config-min-coverage-above-1": lambda tmp, run, mp: _train(run, tmp, "data.min_coverage=2"),
    "config-prep-chunk-records-zero": lambda tmp, run, mp: Case(
        [
            "prep",
            str(_points(tmp, [31.0])),
            "--grid",
            GRID,
            "--out",
            str(tmp / "o.nc"),
            "prep.chunk_records=0",
        ],
        "prep.chunk_records",
        [tmp / "points.csv"],
        tmp / "o.nc",
    ),
    # a very long offending value still gives one short line
    "long-value-one-line": lambda tmp, run, mp: _train(run, tmp, "train.lr=" + "x" * 5000),
    "long-key-one-line": lambda tmp, run, mp: _long_key(run, tmp),
    "long-column-name-one-line": lambda tmp, run, mp: _prep(
        tmp, _points(tmp, [31.0]), "--columns", "time=" + "t" * 5000
    ),
}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("case_id", list(CASES))
def test_hostile_input_exits_2_with_one_line_and_touches_nothing(
    case_id, tmp_path, run, capsys, monkeypatch
):
    case = CASES[case_id](tmp_path, run, monkeypatch)
    capsys.readouterr()
    before = {p: _digest(p) for p in case.inputs}
    code = main(case.argv)
    err = capsys.readouterr().err
    assert code == 2, err
    err = "".join(ln for ln in err.splitlines(True) if not PLAIN_LINE.match(ln))  # progress
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert case.names in err, err
    assert len(err) < 600, err  # a long offending value is truncated
    assert {p: _digest(p) for p in case.inputs} == before
    if case.out is not None:
        assert not case.out.exists()
    leftovers = [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


def test_nldn_day_beyond_the_datetime_range_is_one_unparseable_row(tmp_path, capsys):
    from data_prep.records import Tally

    src = _nldn(tmp_path, [(99991231, -102.05, 31.05, 3), (20210601, -102.05, 31.05, 4)])
    assert main(["prep", str(src), "--grid", GRID, "--out", str(tmp_path / "m.nc")]) == 0
    with xr.open_dataset(tmp_path / "m.nc") as ds:
        tally = Tally.from_attrs(ds.attrs)
        assert int(ds["strike_count"].sum()) == 4
    assert tally.rejected_records["unparseable"] == 1 and tally.balanced()
