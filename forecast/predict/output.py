"""Forecasts -> the forecast netCDF, written batch by batch (layout in :mod:`data_prep.schema`)::

    probability(init_time, lead_time, lat, lon)   float32 in [0, 1]
        (with a ``strikes`` dimension after lead_time when trained for several thresholds:
        P(count >= strikes))
    init_time: time of the last observed step; lead_time: time ahead (CF forecast_period, a
    timedelta in xarray); lead_step(lead_time): map steps ahead (1 = next step)
    valid_time(init_time, lead_time): start of the forecast step

:func:`write_forecasts` writes the batches of inits one after another along an unlimited
``init_time`` dimension of a temporary file beside the output, renamed into place once the last
batch is written (:mod:`data_prep.atomic`): memory holds one batch, whatever the number of inits.
The first batch goes through xarray, so names, attributes and CF encoding are those of a file
written whole; later batches add rows at the end of ``init_time``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

import forecast
from data_prep.atomic import atomic_output
from data_prep.errors import UserError
from data_prep.io import open_maps
from data_prep.progress import bar
from data_prep.schema import (
    CF_CONVENTIONS,
    COORD_ATTRS,
    FORECAST_COORD_ATTRS,
    INIT_TIME,
    LAT,
    LEAD_TIME,
    LON,
    PROBABILITY,
    STRIKES,
    TIME,
    cf_encoding,
    lead_coords,
    with_cf_globals,
)
from data_prep.sequences import time_step
from forecast.predict.forecaster import Forecaster, load_forecaster
from forecast.predict.inits import select_inits

WRITE_BYTES = 1 << 26  # probabilities forecast and written at a time (a batch of inits)
VALID_TIME = "valid_time"
INIT_CHUNK = 4096  # init times per chunk of the init_time and valid_time labels
EPOCH = np.datetime64("1970-01-01T00:00:00", "ns")  # the time units' origin (TIME_ENCODING)


def predict_to_file(
    checkpoint: Path,
    maps: Path,
    init: str | None,
    out: Path,
    device: str = "auto",
    guidance: str | Path = "",
    batch_inits: int = 0,
) -> Path:
    """Forecast from the latest (``init=None``), one (``TIME``) or a range (``START/END``) of inits.

    Returns the written forecast netCDF ``out``. Raises :class:`UserError` when an init's window
    has missing or uncovered steps or lies outside the maps (the message gives the valid range),
    or when the grid of the maps is not the checkpoint's; for a model trained with guidance,
    when ``guidance`` is not given or lacks its fields or the target steps of an init.

    The maps are read from disk step by step and the inits forecast and written ``batch_inits``
    at a time (0: about ``WRITE_BYTES`` of probabilities, a whole number of the model's
    batches), so memory does not grow with the number of inits or the length of the maps. An
    interrupted run writes nothing to ``out``: a rerun starts again from the first init.
    """
    fc = load_forecaster(checkpoint, device, guidance=str(guidance or ""))
    ds = open_maps(Path(maps), lazy=True)
    try:
        fc.check_grid(ds, maps)
        inits = select_inits(ds, init, n_in=fc.n_in, min_coverage=fc.min_coverage, maps=maps)
        fc.check_guidance_covers(ds, inits)
        per = int(batch_inits) or write_batch(fc, ds)
        fc.batch_size = min(fc.batch_size, per)
        with bar(total=len(inits), desc="predict", unit="init") as done:
            parts = (
                _batch(fc, ds, inits[a : a + per], maps, done) for a in range(0, len(inits), per)
            )
            return write_forecasts(parts, Path(out))
    finally:
        ds.close()


def write_batch(fc: Forecaster, ds: xr.Dataset) -> int:
    """Inits per written batch: about ``WRITE_BYTES`` of probabilities, a whole number of the
    forecaster's batches (so the model sees the batches a single pass would give it)."""
    per_init = 4 * fc.n_out * len(fc.thresholds) * ds.sizes[LAT] * ds.sizes[LON]
    return max(1, WRITE_BYTES // (per_init * fc.batch_size)) * fc.batch_size


def _batch(fc: Forecaster, ds: xr.Dataset, inits: np.ndarray, maps, done) -> xr.Dataset:
    """The forecast Dataset of ``inits`` (one batch); ticks the progress bar ``done``."""
    part = forecast_dataset(ds, inits, fc.forecast_all(ds, inits), fc, maps)
    done.update(len(inits))
    return part


def write_forecasts(batches: Iterable[xr.Dataset], out: Path) -> Path:
    """Write the forecast Datasets ``batches`` (each from :func:`forecast_dataset`, inits in
    order, the same leads and grid) as one file ``out``, one batch in memory at a time.

    Nothing reaches ``out`` before the last batch is written: an interrupted run leaves the
    previous ``out`` (if any) as it was, and its temporary file is removed (by the next run,
    when the process was killed).
    """
    batches = iter(batches)
    with atomic_output(out) as tmp:
        row = _create(tmp, next(batches, None), out)
        with netCDF4.Dataset(tmp, "a") as nc:
            for part in batches:
                row += _append(nc, part, row)
                del part  # released before the next batch is made: one batch in memory
    return Path(out)


def _create(tmp: Path, part: xr.Dataset | None, out: Path) -> int:
    """Write the first batch with xarray to ``tmp``; returns its number of inits."""
    if part is None:
        raise UserError(f"output {out}: no forecast to write")
    part = with_cf_globals(part)
    part.to_netcdf(tmp, engine="netcdf4", encoding=_encoding(part), unlimited_dims=[INIT_TIME])
    return part.sizes[INIT_TIME]


def _encoding(part: xr.Dataset) -> dict:
    """CF encoding of :func:`data_prep.schema.cf_encoding`, with chunks along the unlimited
    ``init_time``: one init's forecast per chunk of probabilities, long chunks of labels."""
    prob = part[PROBABILITY]
    chunks = {
        PROBABILITY: {"chunksizes": (1, *prob.shape[1:])},
        INIT_TIME: {"chunksizes": (INIT_CHUNK,)},
        VALID_TIME: {"chunksizes": (INIT_CHUNK, part.sizes[LEAD_TIME])},
    }
    return cf_encoding(part, chunks)


def _append(nc: netCDF4.Dataset, part: xr.Dataset, row: int) -> int:
    """Rows ``row ..`` of ``init_time`` in the open file ``nc`` from ``part``; returns how many.
    Times go in as xarray encodes them: float64 seconds since 1970."""
    n = part.sizes[INIT_TIME]
    nc[PROBABILITY][row : row + n] = part[PROBABILITY].values
    nc[INIT_TIME][row : row + n] = _seconds(part[INIT_TIME].values)
    nc[VALID_TIME][row : row + n] = _seconds(part[VALID_TIME].values)
    return n


def _seconds(times: np.ndarray) -> np.ndarray:
    return (times.astype("datetime64[ns]") - EPOCH) / np.timedelta64(1, "s")


def forecast_dataset(
    ds: xr.Dataset, inits: np.ndarray, prob: np.ndarray, fc: Forecaster, maps
) -> xr.Dataset:
    """The forecast file's Dataset for ``prob`` (N, n_out, n_thr, H, W) made at ``inits`` (N,)."""
    times = ds[TIME].values[inits].astype("datetime64[ns]")
    step = time_step(ds).to_timedelta64()
    leads = np.arange(1, fc.n_out + 1, dtype=np.int32)
    valid = times[:, None] + leads[None, :] * step  # (N, n_out)
    dims = (INIT_TIME, LEAD_TIME, STRIKES, LAT, LON)
    if len(fc.thresholds) == 1:
        prob, dims = prob[:, :, 0], (INIT_TIME, LEAD_TIME, LAT, LON)
    coords = {
        INIT_TIME: (INIT_TIME, times, FORECAST_COORD_ATTRS[INIT_TIME]),
        **lead_coords(fc.n_out, step),
        VALID_TIME: ((INIT_TIME, LEAD_TIME), valid, FORECAST_COORD_ATTRS[VALID_TIME]),
        LAT: (LAT, ds[LAT].values, COORD_ATTRS[LAT]),
        LON: (LON, ds[LON].values, COORD_ATTRS[LON]),
    }
    if len(fc.thresholds) > 1:
        coords[STRIKES] = (
            STRIKES,
            np.array(fc.thresholds, dtype=np.int32),
            FORECAST_COORD_ATTRS[STRIKES],
        )
    attrs = {
        "long_name": "probability of at least `strikes` (default 1) lightning strikes in the "
        "cell during the step",
        "units": "1",
        "valid_min": np.float32(0.0),
        "valid_max": np.float32(1.0),
    }
    out = xr.Dataset({PROBABILITY: (dims, prob.astype(np.float32), attrs)}, coords=coords)
    out.attrs = file_attrs(ds, fc, maps, step)
    return out


def file_attrs(ds: xr.Dataset, fc: Forecaster, maps, step: np.timedelta64) -> dict:
    """Global attributes of the forecast file: the model, its training and the maps."""
    return {
        "Conventions": CF_CONVENTIONS,
        "title": "strikecast lightning probability forecast",
        "source": fc.source,
        "model_cell": fc.cell,
        "checkpoint": str(fc.path),
        "calibration": fc.calibrator.method,
        "maps": str(maps),
        "maps_grid": str(ds.attrs.get("grid", "")),
        "time_step": str(ds.attrs.get("time_step", pd.Timedelta(step).isoformat())),
        "time_step_seconds": int(step / np.timedelta64(1, "s")),
        "n_in": fc.n_in,
        "guidance": fc.guidance_path or "none",
        "guidance_fields": fc.guidance_stats.describe() if fc.guidance_stats else "",
        "training_maps": fc.train_maps,
        "training_step": int(fc.trained.get("step", -1)),  # -1: a checkpoint without the record
        "model_config": json.dumps(fc.model_args, sort_keys=True),
        # the windows and splits it was trained on: evaluate scores the file on the same split
        "data_config": json.dumps(fc.data_config, sort_keys=True),
        "strikecast_version": forecast.__version__,
        "history": f"{pd.Timestamp.now('UTC'):%Y-%m-%dT%H:%M:%SZ} strikecast predict",
    }
