"""Hostile inputs for the CLI, one maker per kind, and the tiny trained run they are built from.

Every maker writes one hostile input under a test's ``tmp_path`` and returns the ``Case``: the
argv, the file or key its error line must name, the inputs that must stay byte-identical and the
output path that must not exist afterwards.
"""

from __future__ import annotations

import errno
import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

from data_prep.mock import mock_maps
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


def trained_run(root: Path) -> dict[str, Path]:
    """A tiny model trained under ``root`` on mock maps: the maps, best.pt and root."""
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
