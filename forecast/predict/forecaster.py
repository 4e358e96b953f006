"""The trained forecaster: checkpoint -> model, feature statistics and calibration on a device.

:func:`load_forecaster` rebuilds the trained model from ``best.pt`` (model args, weights, feature
statistics and calibration travel in the checkpoint). ``Forecaster.forecast(ds, inits)`` gives
P(count >= 1) for windows ending at the init steps, the signature the baselines share.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import xarray as xr

from data_prep.config import from_dict
from data_prep.errors import UserError
from data_prep.progress import bar
from data_prep.schema import LAT, LON
from forecast.config import ModelConfig
from forecast.model.network import build_model
from forecast.predict.inits import inits_within
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

FORWARD_BYTES = 1 << 28  # float32 inputs of one forward pass (inits x n_in x channels x cells)


def forward_batch(n_in: int, channels: int, h: int, w: int, limit: int | None = None) -> int:
    """Inits per forward pass: as many as keep its float32 inputs (``n_in`` steps of ``channels``
    maps of ``h`` x ``w`` each) within ``limit`` bytes (default ``FORWARD_BYTES``), at least
    one. A batch of 32 hourly conus-0.1 inits (8 steps, 12 channels) would take 1.9 GB of
    inputs alone."""
    return inits_within(4 * n_in * channels * h * w, FORWARD_BYTES if limit is None else limit)


class Forecaster:
    """A trained lightning forecaster: model, feature statistics and calibration, on a device.

    ``batch_size`` inits are forecast in one forward pass, fewer where their inputs would take
    more than ``FORWARD_BYTES`` (:func:`forward_batch`).

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
        self.device, self.path = device, Path(path)
        grid = len(self.stats.lat), len(self.stats.lon)
        self.batch_size = min(batch_size, forward_batch(self.n_in, args["in_channels"], *grid))
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


def _describe(lat: np.ndarray, lon: np.ndarray) -> str:
    if lat.size == 0 or lon.size == 0:
        return f"{lat.size}x{lon.size}"
    return f"{lat.size}x{lon.size} (lat {lat[0]:g}..{lat[-1]:g}, lon {lon[0]:g}..{lon[-1]:g})"
