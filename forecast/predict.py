"""Checkpoint + recent observed maps -> calibrated lightning probability forecasts (no truth).

:func:`load_forecaster` rebuilds the trained model from ``best.pt`` (model args, weights, feature
statistics and calibration travel in the checkpoint). ``Forecaster.forecast(ds, inits)`` gives
P(count >= 1) for windows ending at the init steps, the signature the baselines share.
:func:`predict_to_file` writes the forecast netCDF (layout in :mod:`data_prep.schema`)::

    probability(init_time, lead_time, lat, lon)   float32 in [0, 1]
        (with a ``strikes`` dimension after lead_time when trained for several thresholds:
        P(count >= strikes))
    init_time: time of the last observed step; lead_time: time ahead (CF forecast_period, a
    timedelta in xarray); lead_step(lead_time): map steps ahead (1 = next step)
    valid_time(init_time, lead_time): start of the forecast step

A checkpoint trained with guidance (:mod:`forecast.training.guided`) needs a guidance file with
its fields (``guidance=``, the CLI's ``--guidance``) and refuses to run without it; one trained
without guidance refuses one (``evaluate`` ignores it for the model with a warning, since the
file also feeds the ``mos`` baseline). The forecast file records the guidance file used.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import xarray as xr

import forecast
from data_prep.config import from_dict
from data_prep.errors import UserError
from data_prep.io import open_maps, write_netcdf_atomic
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
    lead_coords,
)
from data_prep.sequences import forecast_inits, time_step
from forecast.config import ModelConfig
from forecast.model.network import build_model
from forecast.training.calibration import Calibrator, identity
from forecast.training.checkpoint import load_checkpoint
from forecast.training.distributed import inference_precision, resolve_device
from forecast.training.features import FeatureStats, check_input_channels, init_features, lead_prior
from forecast.training.guided import (
    GuidanceStats,
    check_guidance_given,
    check_targets_covered,
    open_guidance,
    window_channels,
)


class Forecaster:
    """A trained lightning forecaster: model, feature statistics and calibration, on a device.

    Attributes ``n_in``, ``n_out``, ``thresholds``, ``min_coverage`` and ``source`` describe it.
    """

    def __init__(
        self,
        ckpt: dict,
        path: Path,
        device: torch.device,
        batch_size: int = 32,
        guidance: str = "",
        unused_guidance: str = "refuse",
    ):
        args = ckpt["model_args"]
        guide = int(args.get("guide_channels", 0))
        self.stats = FeatureStats.from_state(ckpt["stats"])
        check_input_channels(args["in_channels"] - guide, path, self.stats)
        self.guidance_stats = GuidanceStats.from_state(ckpt.get("guidance"))
        check_guidance_given(path, self.guidance_stats, str(guidance or ""), unused=unused_guidance)
        self.guidance_path = str(guidance or "") if self.guidance_stats else ""
        self._guidance = None  # (maps, Guidance) opened on first use
        mcfg = from_dict(ModelConfig, args["model"], "model.")
        self.model = build_model(mcfg, args["in_channels"], args["n_out"], guide)
        self.model = self.model.to(device).eval()
        self.model.load_state_dict(ckpt["model"])
        self.thresholds = tuple(int(t) for t in mcfg.thresholds)
        self.n_out, self.cell = int(args["n_out"]), mcfg.cell
        self.data_config = dict(ckpt["config"]["data"])  # windows and splits it was trained on
        self.train_maps = str(ckpt["config"].get("train", {}).get("maps") or "")
        self.trained = dict(ckpt.get("trained") or {})  # step, epoch, val_loss of the weights
        self.model_args = dict(args)  # model config, in_channels, n_out: rebuilds the network
        self.n_in = int(self.data_config["n_in"])
        self.min_coverage = float(self.data_config["min_coverage"])
        self.calibrator = Calibrator.from_state(
            ckpt.get("calibration"), self.n_out, len(self.thresholds)
        )
        self.device, self.batch_size, self.path = device, batch_size, Path(path)
        self.source = f"strikecast {mcfg.cell} model, checkpoint {self.path}"

    def check_grid(self, ds: xr.Dataset, maps: Path | str = "maps") -> None:
        """Raise a UserError when the maps' grid is not the grid the model was trained on."""
        lat, lon = ds[LAT].values, ds[LON].values
        want_lat, want_lon = np.asarray(self.stats.lat), np.asarray(self.stats.lon)
        same = lat.shape == want_lat.shape and lon.shape == want_lon.shape
        if same and np.allclose(lat, want_lat, atol=1e-6) and np.allclose(lon, want_lon, atol=1e-6):
            return
        raise UserError(
            f"{maps}: grid {_describe(lat, lon)} differs from the grid of checkpoint {self.path} "
            f"{_describe(want_lat, want_lon)}; prep the maps on the training grid (prep.grid)"
        )

    @torch.inference_mode()
    def forecast_all(self, ds: xr.Dataset, inits: np.ndarray, progress: bool = False) -> np.ndarray:
        """Calibrated P(count >= t) for every threshold t, float32 (N, n_out, n_thr, H, W).

        ``inits`` (N,) are the step indices of the last observed map of each forecast;
        ``progress`` shows a bar (or plain lines) over them.
        """
        self.check_grid(ds)
        inits = np.atleast_1d(np.asarray(inits, dtype=np.int64))
        h, w = ds.sizes[LAT], ds.sizes[LON]
        out = np.empty((len(inits), self.n_out, len(self.thresholds), h, w), dtype=np.float32)
        with bar(total=len(inits), desc="predict", unit="init", enabled=progress) as done:
            for a in range(0, len(inits), self.batch_size):
                logits = self.logits(ds, inits[a : a + self.batch_size])  # (B, n_out, n_thr, H, W)
                out[a : a + len(logits)] = self.calibrator.probability(logits).cpu().numpy()
                done.update(len(logits))
        return out

    @torch.inference_mode()
    def logits(self, ds: xr.Dataset, inits: np.ndarray) -> torch.Tensor:
        """Raw logits (N, n_out, n_thr, H, W), float32 on the device, for windows ending at
        ``inits``, in the precision validation and the calibration fit use."""
        inits = np.asarray(inits, dtype=np.int64)
        x = init_features(ds, inits, self.n_in, self.stats)
        inputs = {"x": x, **lead_prior(self.stats, ds, inits, self.n_out)}  # clim if sub-daily
        if self.guidance_stats is not None:
            past, guide = window_channels(self.guidance(ds), self.guidance_stats, inits)
            inputs["x"] = torch.cat([x, torch.from_numpy(past)], dim=2)
            inputs["guide"] = torch.from_numpy(guide)
        with inference_precision(self.device):
            return self.model(**{k: t.to(self.device) for k, t in inputs.items()}).float()

    def guidance(self, ds: xr.Dataset):
        """The guidance file opened for the maps ``ds`` (once per maps Dataset)."""
        if self._guidance is None or self._guidance[0] is not ds:
            g = open_guidance(
                self.guidance_path, ds, n_in=self.n_in, n_out=self.n_out, stats=self.guidance_stats
            )
            self._guidance = (ds, g)
        return self._guidance[1]

    def check_guidance_covers(self, ds: xr.Dataset, inits: np.ndarray) -> None:
        """Refuse guidance without a forecast, issued by the init, for some target of ``inits``."""
        if self.guidance_stats is not None:
            check_targets_covered(self.guidance(ds), self.guidance_stats, inits, ds)

    def forecast(self, ds: xr.Dataset, inits: np.ndarray, n_out: int | None = None) -> np.ndarray:
        """Calibrated P(count >= 1), float32 (N, n_out, H, W), for windows ending at ``inits``.

        ``n_out`` (optional, at most the trained number of lead times) keeps the first leads.
        """
        if 1 not in self.thresholds:
            raise UserError(
                f"checkpoint {self.path} forecasts P(count >= t) for t in {list(self.thresholds)}"
                ", not P(count >= 1); retrain with 1 in model.thresholds to score or plot it"
            )
        k = self.thresholds.index(1)
        n = self.n_out if n_out is None else int(n_out)
        if n > self.n_out:
            raise UserError(
                f"checkpoint {self.path} forecasts {self.n_out} lead times; asked for {n}"
            )
        return self.forecast_all(ds, inits)[:, :n, k]


def load_forecaster(
    checkpoint: Path,
    device: str = "auto",
    calibrated: bool = True,
    guidance: str = "",
    unused_guidance: str = "refuse",
) -> Forecaster:
    """The forecaster stored in ``checkpoint`` (``best.pt``), ready on ``device``.

    ``calibrated=False`` skips the stored calibration (raw model probabilities), so evaluation
    can show reliability before and after calibration. ``guidance``: the guidance file of a
    model trained with guidance ("" for one trained without; any other pairing is refused,
    except guidance given to a model trained without it when ``unused_guidance="warn"``).
    """
    dev = resolve_device(device)
    ckpt = load_checkpoint(Path(checkpoint), map_location=dev)
    fc = Forecaster(ckpt, Path(checkpoint), dev, guidance=guidance, unused_guidance=unused_guidance)
    if not calibrated:
        fc.calibrator = identity(fc.n_out, len(fc.thresholds))
        fc.source += " (uncalibrated)"
    return fc


def predict_to_file(
    checkpoint: Path,
    maps: Path,
    init: str | None,
    out: Path,
    device: str = "auto",
    guidance: str | Path = "",
) -> Path:
    """Forecast from the latest (``init=None``), one (``TIME``) or a range (``START/END``) of inits.

    Returns the written forecast netCDF ``out``. Raises :class:`UserError` when an init's window
    has missing or uncovered steps or lies outside the maps (the message gives the valid range),
    or when the grid of the maps is not the checkpoint's; for a model trained with guidance,
    when ``guidance`` is not given or lacks its fields or the target steps of an init.
    """
    fc = load_forecaster(checkpoint, device, guidance=str(guidance or ""))
    ds = open_maps(Path(maps))
    fc.check_grid(ds, maps)
    inits = select_inits(ds, init, n_in=fc.n_in, min_coverage=fc.min_coverage, maps=maps)
    fc.check_guidance_covers(ds, inits)
    prob = fc.forecast_all(ds, inits, progress=True)
    return write_netcdf_atomic(forecast_dataset(ds, inits, prob, fc, maps), Path(out))


# --------------------------------------------------------------------------------------------
# init times


def select_inits(
    ds: xr.Dataset, init: str | None, *, n_in: int, min_coverage: float, maps: Path | str = "maps"
) -> np.ndarray:
    """The init steps asked for by ``init``: None (latest step), ``TIME`` or ``START/END``."""
    times = pd.DatetimeIndex(ds[TIME].values)
    ok = forecast_inits(ds, n_in=n_in, min_coverage=min_coverage)
    span = _span(times, ok, n_in)
    if init is None or str(init).strip() in ("", "latest"):
        if ok.size and ok[-1] == len(times) - 1:
            return ok[-1:]
        raise UserError(f"{maps}: the latest window (ending {day_label(times[-1])}) {_WHY}; {span}")
    start, end = _parse_init(str(init))
    if end is None:
        i = times.get_indexer([start])[0]
        if i < 0:
            raise UserError(f"--init {day_label(start)} is not a time step of {maps}; {span}")
        if i < n_in - 1:
            raise UserError(
                f"--init {day_label(start)} needs {n_in} steps up to it, but {maps} starts "
                f"{day_label(times[0])}; {span}"
            )
        if i not in set(ok.tolist()):
            raise UserError(f"--init {day_label(start)}: its window of {n_in} steps {_WHY}; {span}")
        return np.array([i], dtype=np.int64)
    inside = np.flatnonzero((times >= start) & (times <= end))
    chosen = np.intersect1d(inside, ok)
    if chosen.size == 0:
        raise UserError(
            f"--init {day_label(start)}/{day_label(end)} holds no usable window in {maps}; {span}"
        )
    if chosen.size < inside.size:
        warnings.warn(
            f"--init {day_label(start)}/{day_label(end)}: skipped {inside.size - chosen.size} of "
            f"{inside.size} "
            f"inits whose window {_WHY}",
            stacklevel=2,
        )
    return chosen


_WHY = "has missing, uncovered or non-consecutive steps"


def _parse_init(text: str) -> tuple[pd.Timestamp, pd.Timestamp | None]:
    """``TIME`` -> (time, None); an ISO 8601 interval -> (start, end), both included.

    Intervals: ``START/END``, ``START/DURATION`` or ``DURATION/END`` (``2024-02-01T06/P2DT12H``);
    the older ``START:END`` still works (the END begins with its year). Times may carry hours.
    """
    text = text.strip()
    parts = text.split("/") if "/" in text else re.split(r"\s*:\s*(?=\d{4}-)", text)
    try:
        ends = [_init_part(p) for p in parts]
    except (ValueError, TypeError):
        ends = []
    if len(ends) not in (1, 2) or all(isinstance(e, pd.Timedelta) for e in ends):
        raise UserError(
            f"--init {text!r} is not a time or an interval; use YYYY-MM-DD, YYYY-MM-DDTHH "
            "or START/END (e.g. 2024-02-01T06/2024-02-03T18, 2024-02-01/P3D)"
        )
    if len(ends) == 1:
        return ends[0], None
    start, end = ends
    start = end - start if isinstance(start, pd.Timedelta) else start
    end = start + end if isinstance(end, pd.Timedelta) else end
    if start > end:
        raise UserError(f"--init {text}: the start is after the end; use START/END")
    return start, end


def _init_part(text: str) -> pd.Timestamp | pd.Timedelta:
    """One end of an init interval: a time (UTC, naive) or an ISO 8601 duration ``P...``."""
    text = text.strip()
    if text.upper().startswith("P"):
        return pd.Timedelta(text)
    t = _naive(pd.Timestamp(text))
    if pd.isna(t):
        raise ValueError(text)
    return t


def _naive(t: pd.Timestamp) -> pd.Timestamp:
    """UTC and without a time zone, like the maps' time axis."""
    return t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t


def day_label(t) -> str:
    """``2024-06-01``, or ``2024-06-01T06:00`` for a time that is not midnight."""
    t = pd.Timestamp(t)
    return t.strftime("%Y-%m-%d") if t == t.normalize() else t.strftime("%Y-%m-%dT%H:%M")


def _span(times: pd.DatetimeIndex, ok: np.ndarray, n_in: int) -> str:
    if ok.size == 0:
        first, last = day_label(times[0]), day_label(times[-1])
        return f"no window of {n_in} usable consecutive steps in the file ({first}..{last})"
    gaps = "" if ok.size == ok[-1] - ok[0] + 1 else ", with gaps"
    return f"valid inits: {day_label(times[ok[0]])}..{day_label(times[ok[-1]])}{gaps}"


def _describe(lat: np.ndarray, lon: np.ndarray) -> str:
    if lat.size == 0 or lon.size == 0:
        return f"{lat.size}x{lon.size}"
    return f"{lat.size}x{lon.size} (lat {lat[0]:g}..{lat[-1]:g}, lon {lon[0]:g}..{lon[-1]:g})"


# --------------------------------------------------------------------------------------------
# output


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
        "valid_time": ((INIT_TIME, LEAD_TIME), valid, FORECAST_COORD_ATTRS["valid_time"]),
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
    out.attrs = {
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
    return out
