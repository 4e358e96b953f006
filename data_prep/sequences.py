"""Maps -> input/target windows and time-blocked splits, computed once and saved beside the maps.

A window starting at step ``s`` uses steps ``s .. s + n_in - 1`` as inputs and the next ``n_out``
steps as targets (lead times 1 .. n_out); its *init* step is ``s + n_in - 1``, the last observed.
A window exists only where all its steps are usable (at least ``min_coverage`` of the cells were
observed) and consecutive in time (a maps file with a hole in its time axis gives no window across
the hole).

Splits are time-blocked (see :mod:`data_prep.splits`): a window joins a split only when all of
its steps, inputs and targets, lie in that split's blocks, so no step of a training window is
ever seen by a validation or test window, and an embargo of ``n_in`` steps keeps windows of
different splits apart.

Index file ``<maps stem>.windows.nc`` (small netCDF, written atomically)::

    train(train) int64, val(val) int64, test(test) int64   window start steps of each split
    attrs: n_in, n_out, n_steps, config (JSON of the SequenceConfig), fingerprint

``fingerprint`` is a SHA-256 of ``INDEX_VERSION``, the maps' time axis and the number of observed
cells of every step; :func:`load_or_build_index` rebuilds the index when the maps, the config or
the way windows are made changed.
Only window starts are stored, so the index stays small whatever the number of windows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from data_prep.config import SequenceConfig, to_dict
from data_prep.errors import UserError
from data_prep.io import file_identity, write_netcdf_atomic
from data_prep.schema import COVERAGE, TIME, parse_time_step
from data_prep.splits import (
    SPLITS,
    block_pattern,
    check_split_config,
    split_of_each_step,
    split_windows,
    steps_in_windows,
)

N_IN_RANGE = (5, 10)
INDEX_VERSION = 3  # part of the fingerprint: bump when windows or splits are made differently
_DAYS_PER_YEAR = 365.25
_CHUNK_STEPS = 256  # steps read at a time when counting observed cells


# --------------------------------------------------------------------------------------------
# usable steps and windows


def observed_cells(ds: xr.Dataset) -> np.ndarray:
    """Number of observed cells of each step, int64 (T,); read in chunks of steps."""
    if COVERAGE not in ds:
        raise UserError(f"maps: variable {COVERAGE!r} missing; re-run `prep` to write it")
    cov = ds[COVERAGE]
    n = cov.sizes[TIME]
    out = np.empty(n, dtype=np.int64)
    for a in range(0, n, _CHUNK_STEPS):
        block = np.asarray(cov.isel({TIME: slice(a, a + _CHUNK_STEPS)}).values)  # (t, H, W)
        out[a : a + block.shape[0]] = (block > 0).reshape(block.shape[0], -1).sum(axis=1)
    return out


def usable_steps(ds: xr.Dataset, min_coverage: float) -> np.ndarray:
    """Steps where at least ``min_coverage`` of the cells were observed.

    Parameters
    ----------
    ds : maps Dataset with ``coverage (time, lat, lon)``.
    min_coverage : share of observed cells, in [0, 1].

    Returns
    -------
    np.ndarray bool (T,)
    """
    return _usable(observed_cells(ds), ds, min_coverage)


def _usable(observed: np.ndarray, ds: xr.Dataset, min_coverage: float) -> np.ndarray:
    """Bool (T,): observed cells (T,) / cells per map >= min_coverage."""
    if not 0.0 <= float(min_coverage) <= 1.0:
        raise UserError(f"config data.min_coverage {min_coverage} must lie in [0, 1]; e.g. 0.95")
    n_cells = max(int(np.prod(ds[COVERAGE].shape[1:])), 1)
    return observed / n_cells >= float(min_coverage) - 1e-12  # tolerance: 0.95 * 20 cells = 19


def time_step(ds: xr.Dataset) -> pd.Timedelta:
    """The maps' step: the ``time_step`` attribute, else the most common spacing of the time axis.

    Raises :class:`UserError` for a single step without the attribute (no spacing to read).
    """
    if ds.attrs.get("time_step"):
        return parse_time_step(str(ds.attrs["time_step"]))
    d = np.diff(ds[TIME].values.astype("datetime64[ns]"))
    if d.size == 0:
        raise UserError(
            "maps: a single time step and no time_step attribute; cannot label lead times"
        )
    values, counts = np.unique(d, return_counts=True)
    return pd.Timedelta(values[np.argmax(counts)])


def time_breaks(times: np.ndarray, time_step: str | pd.Timedelta | None = None) -> np.ndarray:
    """Steps that do not directly follow the previous one (a hole in the time axis).

    Parameters
    ----------
    times : datetime64 (T,), strictly increasing.
    time_step : the maps' step (``"1D"``); None = the most common spacing of ``times``.

    Returns
    -------
    np.ndarray bool (T,); element 0 is False.
    """
    t = np.asarray(times, dtype="datetime64[ns]").astype(np.int64)
    d = np.diff(t)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0)) + 1
        raise UserError(f"maps: time axis not strictly increasing at step {i}; re-run `prep`")
    if time_step is None:
        step = int(pd.Series(d).mode().iloc[0]) if d.size else 0
    else:
        step = parse_time_step(time_step).value if isinstance(time_step, str) else time_step.value
    return np.concatenate([[False], d != step])


def window_starts(
    usable: np.ndarray, *, n_in: int, n_out: int, breaks: np.ndarray | None = None
) -> np.ndarray:
    """Start step ``s`` of every window whose steps ``s .. s+n_in+n_out-1`` are all usable.

    Parameters
    ----------
    usable : bool (T,), from :func:`usable_steps`.
    n_in, n_out : input steps and lead times (``n_out = 0`` gives forecast-only windows).
    breaks : bool (T,), True where a step does not follow its predecessor in time
        (:func:`time_breaks`); a window never spans a break.

    Returns
    -------
    np.ndarray int64 (N,), ascending.
    """
    usable = np.asarray(usable, dtype=bool)
    length = int(n_in) + int(n_out)
    n = usable.size - length + 1
    if n_in < 1 or n_out < 0 or n <= 0:
        return np.zeros(0, dtype=np.int64)
    bad = np.concatenate([[0], np.cumsum(~usable)])  # (T+1,) unusable steps before index
    ok = bad[length : length + n] - bad[:n] == 0
    if breaks is not None:
        brk = np.concatenate([[0], np.cumsum(np.asarray(breaks, dtype=bool))])
        # breaks at steps s+1 .. s+length-1 cut the window; a break at s itself does not
        ok &= brk[length : length + n] - brk[1 : n + 1] == 0
    return np.flatnonzero(ok).astype(np.int64)


def forecast_inits(ds: xr.Dataset, *, n_in: int, min_coverage: float) -> np.ndarray:
    """Init steps (ascending) with ``n_in`` usable, consecutive input steps up to and including
    them (no targets needed), int64 (N,).

    These are the steps a forecast can be made from; the last step of the maps is among them
    when its inputs are complete.
    """
    usable = usable_steps(ds, min_coverage)
    breaks = time_breaks(ds[TIME].values, ds.attrs.get("time_step"))
    return window_starts(usable, n_in=n_in, n_out=0, breaks=breaks) + n_in - 1


def check_config(cfg: SequenceConfig) -> None:
    """Reject a SequenceConfig that cannot give windows, naming the ``data.*`` key."""
    lo, hi = N_IN_RANGE
    if not lo <= cfg.n_in <= hi:
        raise UserError(f"config data.n_in {cfg.n_in} must be between {lo} and {hi}; e.g. 7")
    if cfg.n_out < 1:
        raise UserError(f"config data.n_out {cfg.n_out} must be at least 1; e.g. 3")
    check_split_config(cfg)


# --------------------------------------------------------------------------------------------
# the index


@dataclass
class WindowIndex:
    """Window starts of each split; the init step of a window starting at s is s + n_in - 1."""

    n_in: int
    n_out: int
    starts: dict[str, np.ndarray]
    n_steps: int = 0
    config: dict = field(default_factory=dict)  # the SequenceConfig as a plain dict
    fingerprint: str = ""
    maps_identity: str = ""  # size:mtime_ns:inode of the maps file the fingerprint was taken of

    def inits(self, split: str) -> np.ndarray:
        """Init step (last input step) of every window of ``split``, int64 (N,)."""
        return self._get(split) + self.n_in - 1

    def steps(self, split: str, n_steps: int | None = None) -> np.ndarray:
        """Bool (T,): steps used as input or target by the windows of ``split``.

        ``T`` is ``n_steps``, else the index's ``n_steps``, else just past the last window.
        """
        starts, length = self._get(split), self.n_in + self.n_out
        n = (
            n_steps
            or self.n_steps
            or int(max((s.max() + length for s in self.starts.values() if len(s)), default=0))
        )
        return steps_in_windows(starts, n, length)

    def _get(self, split: str) -> np.ndarray:
        if split not in self.starts:
            raise UserError(f"split {split!r} unknown; use one of {', '.join(self.starts)}")
        return self.starts[split]

    def summary(self) -> str:
        """One line: windows per split."""
        parts = ", ".join(f"{k} {len(v)}" for k, v in self.starts.items())
        return f"windows (n_in {self.n_in}, n_out {self.n_out}, {self.n_steps} steps): {parts}"

    def save(self, path: str | Path) -> Path:
        """Write the index as a small netCDF file, atomically."""
        data = {
            k: ((k,), np.asarray(v, dtype=np.int64), {"long_name": f"first step of {k} windows"})
            for k, v in self.starts.items()
        }
        ds = xr.Dataset(data)
        ds.attrs.update(
            title="strikecast window index: start step of every input/target window per split",
            n_in=int(self.n_in),
            n_out=int(self.n_out),
            n_steps=int(self.n_steps),
            config=json.dumps(self.config, sort_keys=True),
            fingerprint=self.fingerprint,
            maps_identity=self.maps_identity,
            init_step="start + n_in - 1",
        )
        return write_netcdf_atomic(ds, Path(path))

    @classmethod
    def load(cls, path: str | Path) -> WindowIndex:
        """Read an index written by :meth:`save`."""
        path = Path(path)
        try:
            with xr.open_dataset(path) as ds:
                ds.load()
        except (OSError, ValueError) as e:
            raise UserError(
                f"{path}: not a readable window index ({e}); delete it to rebuild"
            ) from None
        a = ds.attrs
        missing = [k for k in ("n_in", "n_out", "n_steps", "config", "fingerprint") if k not in a]
        if missing:
            raise UserError(
                f"{path}: window index lacks attributes {missing}; delete it to rebuild"
            )
        starts = {
            k: ds[k].values.astype(np.int64) if k in ds else np.zeros(0, np.int64) for k in SPLITS
        }
        return cls(
            int(a["n_in"]),
            int(a["n_out"]),
            starts,
            int(a["n_steps"]),
            json.loads(a["config"]),
            str(a["fingerprint"]),
            str(a.get("maps_identity", "")),
        )

    @staticmethod
    def index_path(maps_path: str | Path) -> Path:
        """``<maps stem>.windows.nc`` beside the maps file."""
        return index_path(maps_path)


def index_path(maps_path: str | Path) -> Path:
    """``<maps stem>.windows.nc`` beside the maps file."""
    p = Path(maps_path)
    return p.with_name(p.stem + ".windows.nc")


def fingerprint(ds: xr.Dataset, observed: np.ndarray | None = None) -> str:
    """SHA-256 of the time axis, the grid shape and the observed cells of each step."""
    h = hashlib.sha256(f"strikecast-windows-{INDEX_VERSION}".encode())
    h.update(np.asarray(ds[TIME].values, dtype="datetime64[ns]").astype(np.int64).tobytes())
    h.update(str(tuple(ds[COVERAGE].shape)).encode())
    h.update(np.asarray(observed_cells(ds) if observed is None else observed, np.int64).tobytes())
    return h.hexdigest()


def steps_per_year(ds: xr.Dataset) -> float:
    """Steps in a year for the maps' step length (365.25 for daily maps)."""
    step = ds.attrs.get("time_step")
    td = parse_time_step(step) if step else pd.Timedelta(days=1)
    return pd.Timedelta(days=_DAYS_PER_YEAR) / td


def build_index(ds: xr.Dataset, cfg: SequenceConfig) -> WindowIndex:
    """All gap-free windows of ``ds``, dealt to time-blocked splits.

    Raises UserError when the maps give no training window.
    """
    check_config(cfg)
    obs = observed_cells(ds)
    usable = _usable(obs, ds, cfg.min_coverage)
    breaks = time_breaks(ds[TIME].values, ds.attrs.get("time_step"))
    starts = window_starts(usable, n_in=cfg.n_in, n_out=cfg.n_out, breaks=breaks)
    n_steps = int(ds.sizes[TIME])
    splits = split_windows(starts, n_steps, cfg, steps_per_year=steps_per_year(ds))
    index = WindowIndex(
        cfg.n_in, cfg.n_out, splits, n_steps, _config_dict(cfg), fingerprint(ds, obs)
    )
    if len(splits["train"]) == 0:
        raise UserError(
            f"maps: no training window ({int(usable.sum())} of {n_steps} steps usable, "
            f"{len(starts)} gap-free windows of {cfg.n_in + cfg.n_out} steps); "
            "use a longer record, a smaller data.block_steps or a lower data.min_coverage"
        )
    empty = [k for k in SPLITS if len(splits[k]) == 0]
    if empty:
        warnings.warn(f"{index.summary()}; splits {empty} are empty", stacklevel=2)
    return index


def _config_dict(cfg: SequenceConfig) -> dict:
    return to_dict(dataclasses.replace(cfg, fractions=tuple(float(f) for f in cfg.fractions)))


def load_or_build_index(maps_path: str | Path, ds: xr.Dataset, cfg: SequenceConfig) -> WindowIndex:
    """The saved index beside ``maps_path`` when it matches ``ds`` and ``cfg``; else build and save.

    A stale index (other config, or maps whose time axis or coverage changed) is rebuilt. The
    fingerprint reads the coverage of every step, so it is taken again only when the maps file's
    identity (size, modification time, inode) differs from the one saved with the index. When
    the folder is read-only the new index is returned without being saved.
    """
    path, identity = index_path(maps_path), file_identity(maps_path)  # before reading ds
    old = _load_quietly(path)
    if old is not None and old.config == _config_dict(cfg):
        if identity and old.maps_identity == identity:
            return old
        if old.fingerprint == fingerprint(ds):  # e.g. touched: the same maps
            old.maps_identity = identity
            _save(old, path)
            return old
    index = build_index(ds, cfg)
    index.maps_identity = identity
    _save(index, path)
    return index


def _load_quietly(path: Path) -> WindowIndex | None:
    """The saved index at ``path``; None when there is none or it cannot be read (rebuilt)."""
    try:
        return WindowIndex.load(path) if path.is_file() else None
    except UserError:
        return None


def _save(index: WindowIndex, path: Path) -> None:
    try:
        index.save(path)
    except OSError as e:
        warnings.warn(
            f"{path}: window index not saved ({e}); it is rebuilt on every run", stacklevel=3
        )


__all__ = [
    "SPLITS",
    "WindowIndex",
    "block_pattern",
    "build_index",
    "check_config",
    "fingerprint",
    "forecast_inits",
    "index_path",
    "load_or_build_index",
    "observed_cells",
    "steps_in_windows",
    "split_windows",
    "split_of_each_step",
    "steps_per_year",
    "time_breaks",
    "usable_steps",
    "window_starts",
]
