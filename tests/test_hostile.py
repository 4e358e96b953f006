"""Hostile input: every class ends in exit 2 and one stderr line naming the file or key.

Each case builds one hostile input in ``tmp_path`` and runs the CLI in-process. It must exit 2
with exactly one line on stderr naming the file or config key, print no traceback, leave every
input byte-identical, leave nothing at the output path and no temporary file behind.
Ctrl-C and SIGTERM during training are the exception: they exit 130 / 143 with last.pt saved.
"""

from __future__ import annotations

import errno
import gzip
import hashlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from data_prep.mock import mock_maps
from data_prep.progress import PLAIN_LINE
from forecast.cli import main
from forecast.config import load_experiment
from forecast.training import train

TINY = [
    "model.encoder_channels=[4]",
    "model.hidden_channels=[4]",
    "model.norm_groups=2",
    "data.n_in=5",
    "data.n_out=2",
    "data.block_steps=14",
    "train.batch_size=16",
    "train.epochs=1",
    "train.progress=false",
    "train.device=cpu",
    "train.threads=1",
]
GRID = "30,34,-104,-98,0.5"  # the mock maps' 8 x 12 grid
HUGE = 10**20  # a strike count no int64 holds


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained model and the maps it was trained on."""
    root = tmp_path_factory.mktemp("hostile")
    maps = root / "maps.nc"
    mock_maps(n_steps=120, shape=(8, 12), seed=5).to_netcdf(maps)
    train(load_experiment(None, [*TINY, f"train.maps={maps}", f"train.out={root / 'run'}"]))
    return {"maps": maps, "ckpt": root / "run" / "best.pt", "root": root}


@dataclass
class Case:
    argv: list[str]
    names: str  # the file or key the error line must name
    inputs: list[Path] = field(default_factory=list)  # must stay byte-identical
    out: Path | None = None  # must not exist afterwards


# --------------------------------------------------------------------------------------------
# input makers


def _maps(run, tmp: Path, edit) -> Path:
    """A copy of the run's maps, changed by ``edit(ds) -> ds``, written to tmp/bad.nc."""
    with xr.open_dataset(run["maps"]) as ds:
        bad = edit(ds.load())
    path = tmp / "bad.nc"
    bad.to_netcdf(path)
    return path


def _with_count(value):
    def edit(ds):
        c = ds["strike_count"].astype(np.float64)
        c[3, 2, 2] = value
        return ds.assign(strike_count=c)

    return edit


def _with_coverage(ds):
    cov = ds["coverage"].copy()
    cov[4, 1, 1] = 2
    return ds.assign(coverage=cov)


def _with_times(kind: str):
    def edit(ds):
        t = ds["time"].values.copy()
        if kind == "repeated":
            t[10] = t[9]
        else:
            t[[10, 11]] = t[[11, 10]]
        return ds.assign_coords(time=t)

    return edit


def _predict_on(run, tmp, edit) -> Case:
    bad = _maps(run, tmp, edit)
    out = tmp / "f.nc"
    return Case(
        ["predict", "--checkpoint", str(run["ckpt"]), "--maps", str(bad), "--out", str(out)],
        "bad.nc",
        [bad, run["ckpt"]],
        out,
    )


def _gridded(tmp: Path, values=None, times=None, coverage=None) -> Path:
    lat, lon = np.arange(30.25, 32, 0.5), np.arange(-103.75, -101, 0.5)
    v = np.ones((3, lat.size, lon.size)) if values is None else values
    times = pd.date_range("2021-06-01", periods=3) if times is None else times
    data = {"flash_count": (("time", "lat", "lon"), v)}
    if coverage is not None:
        data["coverage"] = (("time", "lat", "lon"), coverage)
    path = tmp / "g.nc"
    xr.Dataset(data, coords={"time": times, "lat": lat, "lon": lon}).to_netcdf(path)
    return path


def _gridded_value(value):
    def make(tmp):
        v = np.ones((3, 4, 6))
        v[1, 2, 3] = value
        return _gridded(tmp, values=v)

    return make


def _prep(tmp: Path, src: Path, *extra: str, fmt: str = "auto") -> Case:
    out = tmp / "out.nc"
    argv = ["prep", str(src), "--grid", GRID, "--format", fmt, "--out", str(out), *extra]
    return Case(argv, src.name, [src], out)


def _nldn(tmp: Path, rows) -> Path:
    text = "#NLDN tiles\n#ZDAY,CENTERLON,CENTERLAT,TOTAL_COUNT\n"
    text += "".join(",".join(map(str, r)) + "\n" for r in rows)
    path = tmp / "nldn-tiles-202106.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    return path


def _points(tmp: Path, lat, lon=-102.0, time="2021-06-01T12:00:00Z", count=None) -> Path:
    lat = np.atleast_1d(lat)
    df = pd.DataFrame({"time": [time] * lat.size, "lat": lat, "lon": lon})
    if count is not None:
        df["count"] = count
    path = tmp / "points.csv"
    df.to_csv(path, index=False)
    return path


def _wkt_polygon(tmp: Path) -> Path:
    path = tmp / "shapes.csv"
    path.write_text(
        "time,geometry\n"
        '2021-06-01T12:00:00Z,"POINT (-102 31)"\n'
        '2021-06-01T13:00:00Z,"POLYGON ((-102 31, -101 31, -101 32, -102 31))"\n'
    )
    return path


def _forecast(run, tmp: Path, value) -> Case:
    with xr.open_dataset(run["maps"]) as m:
        lat, lon, t = m["lat"].values, m["lon"].values, m["time"].values
    p = np.full((t.size, 2, lat.size, lon.size), 0.3, np.float32)
    p[-5, 0, 1, 1] = value
    ds = xr.Dataset(
        {"probability": (("init_time", "lead_time", "lat", "lon"), p)},
        coords={"init_time": t, "lead_time": [1, 2], "lat": lat, "lon": lon},
    )
    path, out = tmp / "nwp.nc", tmp / "scores.nc"
    ds.to_netcdf(path)
    argv = [
        "evaluate",
        "--forecast",
        f"nwp={path}",
        "--maps",
        str(run["maps"]),
        "--out",
        str(out),
        "eval.split=all",
        "eval.bootstrap=0",
        "data.n_in=5",
        "data.n_out=2",
        "data.block_steps=14",
    ]
    return Case(argv, "nwp.nc", [path, run["maps"]], out)


def _checkpoint(run, tmp: Path, make) -> Case:
    path, out = tmp / "model.pt", tmp / "f.nc"
    make(path, torch.load(run["ckpt"], weights_only=True))
    argv = ["predict", "--checkpoint", str(path), "--maps", str(run["maps"]), "--out", str(out)]
    return Case(argv, "model.pt", [path, run["maps"]], out)


def _mismatched(path, ck):
    ck["model_args"]["model"]["hidden_channels"] = [6]
    torch.save(ck, path)


def _stats_without(key):
    def make(path, ck):
        del ck["stats"][key]
        torch.save(ck, path)

    return make


def _train(run, tmp, *overrides) -> Case:
    out = tmp / "run"
    argv = ["train", *TINY, f"train.maps={run['maps']}", f"train.out={out}", *overrides]
    return Case(argv, overrides[0].split("=")[0], [run["maps"]], out / "best.pt")


def _archive(run, tmp, attrs: dict) -> Case:
    """An existing archive with broken provenance attributes, appended to by prep."""
    src = _points(tmp, [31.0, 32.0])
    archive = tmp / "archive.nc"
    assert main(["prep", str(src), "--grid", GRID, "--out", str(archive)]) == 0
    with xr.open_dataset(archive) as ds:
        ds = ds.load()
    ds.attrs.update(attrs)
    os.remove(archive)
    ds.to_netcdf(archive)
    new = _points(tmp, [31.5], time="2021-06-03T12:00:00Z")
    new = new.rename(tmp / "more.csv")
    argv = ["prep", str(new), "--grid", GRID, "--out", str(archive)]
    return Case(argv, "archive.nc", [archive, new], None)


def _full_disk(monkeypatch):
    def no_space(self, path=None, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", no_space)


def _full_disk_torch(monkeypatch):
    def no_space(obj, path, *args, **kwargs):
        Path(path).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", no_space)


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


def _naming(case: Case, names: str) -> Case:
    """``case`` whose error line must name ``names`` (the file and the column, say)."""
    case.names = names
    return case


def _long_key(run, tmp) -> Case:
    case = _train(run, tmp, "train." + "k" * 5000 + "=1")
    case.names = "train.kkkk"
    return case


def _full_disk_prep(tmp, mp) -> Case:
    case = _prep(tmp, _points(tmp, [31.0, 32.0]))
    _full_disk(mp)
    case.names = "out.nc"
    return case


def _full_disk_checkpoint(run, tmp, mp) -> Case:
    case = _train(run, tmp, "train.epochs=1")
    _full_disk_torch(mp)
    case.names = "best.pt"
    return case


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


@pytest.mark.parametrize(
    "sig, workers, group",
    [
        (signal.SIGTERM, 0, False),
        pytest.param(signal.SIGINT, 0, False, marks=pytest.mark.slow),
        # a batch scheduler or Ctrl-C signals the whole process group, loader workers included
        (signal.SIGTERM, 2, True),
        pytest.param(signal.SIGINT, 2, True, marks=pytest.mark.slow),
    ],
    ids=["SIGTERM", "SIGINT", "SIGTERM-group-with-workers", "SIGINT-group-with-workers"],
)
def test_signal_during_training_exits_128_plus_signal_with_last_pt_saved(
    run, tmp_path, sig, workers, group
):
    out = tmp_path / "run"
    argv = [
        *TINY,
        f"train.maps={run['maps']}",
        f"train.out={out}",
        "train.epochs=1000",
        "train.log_every=1",
        "train.checkpoint_every=0",
        f"train.num_workers={workers}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forecast", "train", *argv],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )
    log = out / "log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) > 1:
            break
        time.sleep(0.2)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err  # 143, 130: not 2, the input was fine
    assert (out / "last.pt").is_file() and "Traceback" not in err
    assert err.count("\n") == 1 and "--resume" in err
