"""Guidance (NWP or reanalysis fields, :mod:`data_prep.guidance`) as model inputs.

With ``data.guidance`` set, every field F of the file gives two channels per map step, in field
order::

    2f      the field normalised: log1p first when its training values are all >= 0 (cape, tp),
            then (value - mean) / std over the finite training values; 0 where there is no data
    2f + 1  has-data: 1 where the file gives a value the forecast may see, 0 where not

Missing guidance is never a zero field: the has-data channel tells the model which cells are
empty. The channels of the ``n_in`` past steps join the input channels (after the
:mod:`forecast.training.dataset` ones, whose numbers keep their meaning); those of the ``n_out``
target steps go to the decoder for their lead (``guide``, (n_out, 2F, H, W)). The normalisation
(:class:`GuidanceStats`) is fitted on the training windows only and travels in the checkpoint
beside the feature statistics, with the field names and units.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch.utils.data import Dataset

from data_prep.errors import UserError
from data_prep.guidance import Guidance, load_guidance
from data_prep.schema import LAT, LON, TIME
from data_prep.sequences import WindowIndex, time_step

_CHUNK_INITS = 64  # windows read at a time when fitting the normalisation


@dataclass(frozen=True)
class GuidanceStats:
    """How each guidance field is normalised; fitted on the training windows.

    ``log[f]``: log1p before standardising; ``mean``/``std`` of the (transformed) finite values.
    """

    fields: tuple[str, ...]
    units: tuple[str, ...]
    log: tuple[bool, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    path: str = ""  # the file it was fitted on (provenance)

    @property
    def channels(self) -> int:
        """Channels per step: a value and a has-data channel per field."""
        return 2 * len(self.fields)

    def to_state(self) -> dict:
        """Lists, strings and floats: safe for ``torch.load(weights_only=True)``."""
        return {
            "fields": list(self.fields),
            "units": list(self.units),
            "log": [bool(v) for v in self.log],
            "mean": [float(v) for v in self.mean],
            "std": [float(v) for v in self.std],
            "path": self.path,
        }

    @classmethod
    def from_state(cls, state: dict | None) -> GuidanceStats | None:
        """Inverse of :meth:`to_state`; None for a checkpoint trained without guidance."""
        if not state:
            return None
        names = tuple(str(f) for f in state["fields"])
        stats = cls(
            names,
            tuple(str(u) for u in state["units"]),
            tuple(bool(v) for v in state["log"]),
            tuple(float(v) for v in state["mean"]),
            tuple(float(v) for v in state["std"]),
            str(state.get("path", "")),
        )
        sizes = {len(names), len(stats.units), len(stats.log), len(stats.mean), len(stats.std)}
        if len(sizes) != 1 or not names:
            raise ValueError(f"guidance statistics of {len(names)} fields are incomplete")
        return stats

    def describe(self) -> str:
        """``cape (J kg-1), tp (mm)``."""
        return ", ".join(
            f"{f} ({u})" if u else f for f, u in zip(self.fields, self.units, strict=True)
        )


def fit_guidance_stats(guidance: Guidance, inits: np.ndarray) -> GuidanceStats:
    """Normalisation of every field from the values the windows ending at ``inits`` (the
    training windows' init steps) see, past and target steps alike."""
    inits = np.asarray(inits, np.int64)
    n_f = len(guidance.fields)
    lo = np.full(n_f, np.inf)
    sums = np.zeros((2, 3, n_f))  # (raw, log1p) x (count, sum, sum of squares)
    for a in range(0, inits.size, _CHUNK_INITS):
        v = guidance.window(inits[a : a + _CHUNK_INITS]).astype(np.float64)  # (N, P, F, H, W)
        v = np.moveaxis(v, 2, 0).reshape(n_f, -1)  # (F, values)
        ok = np.isfinite(v)
        lo = np.minimum(lo, np.where(ok, v, np.inf).min(1, initial=np.inf))
        logged = np.log1p(np.where(ok & (v > -1), v, 0.0))
        for k, t in enumerate((np.where(ok, v, 0.0), logged)):
            sums[k] += [ok.sum(1), t.sum(1), (t * t).sum(1)]
    empty = [f for f, n in zip(guidance.fields, sums[0, 0], strict=True) if n == 0]
    if empty:
        raise UserError(
            f"{guidance.path}: guidance field {', '.join(empty)} has no value in the training "
            "windows; give guidance covering the training period, or drop the field"
        )
    log = lo >= 0
    n, s, ss = (np.where(log, sums[1, i], sums[0, i]) for i in range(3))
    mean = s / n
    std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
    std = np.where(std > 1e-12, std, 1.0)  # a constant field becomes zeros, not NaN
    return GuidanceStats(
        guidance.fields,
        guidance.units,
        tuple(bool(v) for v in log),
        tuple(float(v) for v in mean),
        tuple(float(v) for v in std),
        guidance.path,
    )


def guidance_channels(values: np.ndarray, stats: GuidanceStats) -> np.ndarray:
    """Fields (..., F, H, W), NaN where missing -> channels (..., 2F, H, W) float32 (see the
    module docstring)."""
    v = np.asarray(values, np.float32)
    ok = np.isfinite(v)
    out = np.empty((*v.shape[:-3], 2 * v.shape[-3], *v.shape[-2:]), np.float32)
    for f in range(v.shape[-3]):
        x = v[..., f, :, :]
        if stats.log[f]:
            x = np.log1p(np.maximum(np.where(ok[..., f, :, :], x, 0.0), 0.0))
        z = (x - np.float32(stats.mean[f])) / np.float32(stats.std[f])
        out[..., 2 * f, :, :] = np.where(ok[..., f, :, :], z, 0.0)
        out[..., 2 * f + 1, :, :] = ok[..., f, :, :]
    return out


def window_channels(
    guidance: Guidance, stats: GuidanceStats, inits: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(past (N, n_in, 2F, H, W), target (N, n_out, 2F, H, W)) channels of windows at ``inits``."""
    ch = guidance_channels(guidance.window(np.atleast_1d(inits)), stats)
    return ch[:, : guidance.n_in], ch[:, guidance.n_in :]


class GuidedWindows(Dataset):
    """A window dataset whose items also carry guidance: the past steps' channels appended to
    ``x`` (n_in, C + 2F, H, W), the target steps' as ``guide`` (n_out, 2F, H, W)."""

    def __init__(self, windows: Dataset, guidance: Guidance, stats: GuidanceStats):
        self.windows, self.guidance, self.stats = windows, guidance, stats

    def __len__(self) -> int:
        return len(self.windows)

    def item_bytes(self) -> int:
        """Bytes of one item: the window's, and its guidance planes, float32."""
        w = self.windows
        planes = (w.n_in + w.n_out) * self.stats.channels
        return w.item_bytes() + 4 * planes * len(w.lat) * len(w.lon)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        item = self.windows[i]
        past, target = window_channels(self.guidance, self.stats, [int(item["init"])])
        item["x"] = torch.cat([item["x"], torch.from_numpy(past[0])], dim=1)
        item["guide"] = torch.from_numpy(target[0])
        return item


def open_guidance(
    path: str, ds: xr.Dataset, *, n_in: int, n_out: int, stats: GuidanceStats | None = None
) -> Guidance:
    """Guidance ``path`` for maps ``ds`` (and the ``n_out`` steps after them); with ``stats`` (a
    trained model's), the fields it was trained on, in that order, with the same units (else
    refused in one line)."""
    fields = stats.fields if stats is not None else None
    step = time_step(ds)
    # the axis runs n_out steps past the maps: the targets of the latest init lie beyond them
    after = ds[TIME].values[-1] + np.arange(1, n_out + 1) * step.to_timedelta64()
    axis = xr.Dataset(
        coords={TIME: np.concatenate([ds[TIME].values, after]), LAT: ds[LAT], LON: ds[LON]}
    )
    g = load_guidance(path, axis, step, n_in=n_in, n_out=n_out, fields=fields)
    if stats is not None:
        bad = [
            f"{f} in {u!r}"
            for f, u, w in zip(g.fields, g.units, stats.units, strict=True)
            if u != w
        ]
        if bad:
            raise UserError(
                f"{path}: guidance {', '.join(bad)}, the model was trained on "
                f"{stats.describe()}; give the fields in the training units"
            )
    return g


def guidance_for_training(
    path: str, ds: xr.Dataset, index: WindowIndex
) -> tuple[Guidance, GuidanceStats]:
    """Open ``data.guidance`` for training on ``ds``; refuse it if it feeds no target step of
    the training windows; fit its normalisation on the training windows only."""
    g = open_guidance(path, ds, n_in=index.n_in, n_out=index.n_out)
    inits = np.asarray(index.starts["train"], np.int64) + index.n_in - 1
    g.check_targets(inits)
    return g, fit_guidance_stats(g, inits)


def check_guidance_given(
    checkpoint, stats: GuidanceStats | None, path: str, *, unused: str = "refuse"
) -> None:
    """Refuse, in one line, a run of ``checkpoint`` without the guidance it was trained with;
    and with guidance it was trained without, unless ``unused="warn"`` (evaluate, where the
    file also feeds other methods): then a one-line warning says the model ignores it."""
    if stats is not None and not path:
        raise UserError(
            f"checkpoint {checkpoint} was trained with guidance {stats.describe()} (from "
            f"{stats.path or 'a guidance file'}); pass --guidance FILE holding those fields"
        )
    if stats is None and path and unused == "warn":
        warnings.warn(
            f"checkpoint {checkpoint} was trained without guidance: the model ignores {path} "
            "(other methods may use it)",
            stacklevel=3,
        )
    elif stats is None and path:
        raise UserError(
            f"checkpoint {checkpoint} was trained without guidance; drop --guidance {path} "
            "(data.guidance), or train a model with it"
        )


def check_targets_covered(
    guidance: Guidance, stats: GuidanceStats, inits: np.ndarray, ds: xr.Dataset
) -> None:
    """Refuse, in one line naming the first steps missing, guidance without a forecast issued by
    the init for some target step of the windows ending at init steps ``inits`` of maps ``ds``."""
    inits = np.atleast_1d(np.asarray(inits, np.int64))
    missing = ~guidance.picks.seen(inits)[:, guidance.n_in :]  # (N, n_out)
    if not missing.any():
        return
    rows, leads = np.nonzero(missing)
    steps = np.unique(inits[rows] + leads + 1)
    last, step = pd.Timestamp(ds[TIME].values[-1]), time_step(ds)
    days = [f"{last + (i - ds.sizes[TIME] + 1) * step:%Y-%m-%dT%H:%M}" for i in steps]
    more = f" and {len(days) - 3} more" if len(days) > 3 else ""
    raise UserError(
        f"{guidance.path}: no guidance ({', '.join(stats.fields)}) issued by the init for the "
        f"steps starting {', '.join(days[:3])}{more}; give forecasts issued by each init whose "
        f"leads reach data.n_out={missing.shape[1]} steps ahead"
    )
