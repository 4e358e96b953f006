"""MOS (model output statistics): the reference a forecast fed with guidance must beat.

Per lead time ``k``, a logistic regression of P(>= 1 strike) at the valid time on, per cell:

- each guidance field valid then (the latest forecast issued by the init, the no-peeking rule of
  :mod:`data_prep.guidance`), ``log1p``-transformed when the field's training values are all
  >= 0 (precipitation, CAPE), standardised on the training split;
- a missing indicator per field: a missing value enters as 0 after standardisation (the
  training mean) with its indicator set, never as a zero read as data;
- the logit of the climatology baseline (the same per-cell, day-of-year frequency, fitted on the
  training split), so MOS starts from what the climatology knows. On the training rows it is the
  climatology fitted without the time block (one of ``FOLDS``) holding the valid step: fitted on
  the very days it is then regressed on, it would look better than it is on new days, and MOS
  would lean on it (tests/test_mos.py, a climatology of noise and noise for guidance: weight 2.0
  on its logit and Brier skill -0.028 in sample; out of fold, weight -0.05 and +0.016);
- position: lat and lon scaled to [-1, 1], their squares and their product.

The coefficients minimise the mean log loss plus ``RIDGE / 2`` times the squared coefficients
(intercept free; scikit-learn's ``LogisticRegression(C=1 / (RIDGE * n))``), found by Newton's
method (IRLS). Training rows are the observed cells of the training split's inits with any
guidance, a seeded sample of at most ``MAX_ROWS`` per lead. A cell with no guidance at all at a
lead gets the climatology's probability.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import xarray as xr

from data_prep.errors import UserError
from data_prep.guidance import Guidance, load_guidance
from data_prep.schema import LAT, LON
from data_prep.sequences import time_step
from forecast.config import EvalConfig
from forecast.evaluation.baselines import (
    Climatology,
    build_baseline,
    fit_climatology,
    observations,
    training_steps,
    valid_steps,
)

MOS = "mos"
RIDGE = 1e-4  # L2 penalty per coefficient on the mean log loss: only keeps the fit well posed
MAX_ROWS = 200_000  # training (init, cell) rows per lead: bounded memory on large grids
CLIM_EPS = 1e-4  # climatology clipped to [eps, 1 - eps] before its logit
BATCH = 32  # training inits read at a time
FOLDS = 5  # time blocks of the training steps for the out-of-fold climatology
N_POSITION = 5  # lat, lon, lat^2, lon^2, lat * lon


@dataclass(frozen=True)
class LeadFit:
    """The regression of one lead: feature transforms and coefficients.

    Columns of the design (:func:`design`): intercept, F standardised fields, F missing
    indicators, the climatology's logit, N_POSITION position terms.
    """

    log: np.ndarray  # (F,) bool: log1p applied to the field
    mean: np.ndarray  # (F,) training mean of the transformed field
    std: np.ndarray  # (F,) training standard deviation (1 where constant)
    coef: np.ndarray  # (1 + 2F + 1 + N_POSITION,) float64


@dataclass
class Mos:
    """Logistic regression on guidance, per lead; ``forecast`` has the baselines' signature."""

    n_out: int
    guidance: Guidance
    climatology: Climatology
    fits: list[LeadFit | None]  # None: no training case had guidance at that lead
    position: np.ndarray  # (N_POSITION, H, W)

    def forecast(self, ds: xr.Dataset, inits: np.ndarray, n_out: int | None = None) -> np.ndarray:
        """Probability (N, n_out, H, W) in [0, 1]; NaN only where the climatology is NaN."""
        inits = np.asarray(inits, np.int64)
        n_out = min(n_out or self.n_out, self.n_out)
        guide = self.guidance.targets(inits)  # (N, L, F, H, W)
        clim = self.climatology.forecast(ds, inits, n_out)  # (N, L, H, W)
        out = clim.copy()  # cells without guidance keep the climatology
        for k in range(n_out):
            g = np.moveaxis(guide[:, k], 1, -1)  # (N, H, W, F)
            some = np.isfinite(g).any(-1)  # (N, H, W)
            if self.fits[k] is None or not some.any():
                continue
            pos = np.broadcast_to(np.moveaxis(self.position, 0, -1), g.shape[:3] + (N_POSITION,))
            x = design(self.fits[k], g[some], clim[:, k][some], pos[some])  # (n, P)
            out[:, k][some] = sigmoid(x @ self.fits[k].coef)
        return out


# --------------------------------------------------------------------------------------------
# features


def position_terms(ds: xr.Dataset) -> np.ndarray:
    """(N_POSITION, H, W) float64: scaled lat, lon in [-1, 1], their squares and product."""
    lat, lon = np.meshgrid(_scaled(ds[LAT].values), _scaled(ds[LON].values), indexing="ij")
    return np.stack([lat, lon, lat**2, lon**2, lat * lon])


def _scaled(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    half = (x.max() - x.min()) / 2
    return (x - (x.max() + x.min()) / 2) / half if half > 0 else np.zeros_like(x)


def transforms(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log, mean, std), each (F,), from training values ``raw`` (n, F) with NaN = missing."""
    seen = np.isfinite(raw)
    low = np.where(seen, raw, np.inf).min(axis=0, initial=np.inf)  # inf: never seen
    log = np.isfinite(low) & (low >= 0)
    t = np.where(seen, _transform(raw, log), 0.0)
    n = np.maximum(seen.sum(axis=0), 1)
    mean = t.sum(axis=0) / n
    std = np.sqrt(np.where(seen, (t - mean) ** 2, 0.0).sum(axis=0) / n)
    return log, mean, np.where(std > 0, std, 1.0)


def _transform(raw: np.ndarray, log: np.ndarray) -> np.ndarray:
    raw = np.asarray(raw, np.float64)
    with np.errstate(invalid="ignore"):
        return np.where(log, np.log1p(np.where(log, raw, 0.0)), raw)


def design(fit: LeadFit, raw: np.ndarray, clim: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Design matrix (..., P) float64 from guidance ``raw`` (..., F) (NaN = missing),
    climatology ``clim`` (...) and position terms ``pos`` (..., N_POSITION)."""
    missing = ~np.isfinite(raw)
    z = (_transform(raw, fit.log) - fit.mean) / fit.std
    z = np.where(missing, 0.0, z)  # the training mean, flagged by the indicator
    c = np.clip(np.asarray(clim, np.float64), CLIM_EPS, 1 - CLIM_EPS)
    ones = np.ones(raw.shape[:-1] + (1,))
    return np.concatenate(
        [ones, z, missing.astype(np.float64), np.log(c / (1 - c))[..., None], pos], axis=-1
    )


# --------------------------------------------------------------------------------------------
# fitting


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow for large |z|


def fit_logistic(
    x: np.ndarray, y: np.ndarray, ridge: float = RIDGE, max_iter: int = 100
) -> np.ndarray:
    """Coefficients (P,) minimising mean log loss + ridge / 2 * |w[1:]|^2 by Newton's method
    with step halving; ``x`` (n, P) float64 with the intercept column first, ``y`` (n,) 0/1."""
    n, p = x.shape
    pen = np.full(p, float(ridge))
    pen[0] = 0.0

    def loss(w: np.ndarray) -> float:
        z = x @ w
        return float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * np.sum(pen * w * w))

    w = np.zeros(p)
    rate = np.clip(y.mean(), 1e-6, 1 - 1e-6)
    w[0] = np.log(rate / (1 - rate))
    for _ in range(max_iter):
        prob = sigmoid(x @ w)
        grad = x.T @ (prob - y) / n + pen * w
        hess = (x * (prob * (1 - prob))[:, None]).T @ x / n + np.diag(pen)
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        t, now = 1.0, loss(w)
        while loss(w - t * step) > now and t > 1e-6:  # Newton may overshoot far from the optimum
            t /= 2
        w = w - t * step
        if np.abs(t * step).max() < 1e-11:
            break
    return w


@dataclass(frozen=True)
class OutOfFold:
    """Per valid step, the climatology fitted on the training steps outside its time block."""

    fold: np.ndarray  # (T,) int64: block of each training step, -1 elsewhere
    clims: list[Climatology]

    def forecast(self, ds: xr.Dataset, inits: np.ndarray, n_out: int) -> np.ndarray:
        """(N, n_out, H, W) float32; NaN where the valid step is not a training step."""
        steps = valid_steps(ds, inits, n_out)  # (N, L)
        fold = np.where(steps >= 0, self.fold[np.maximum(steps, 0)], -1)
        each = np.stack([c.forecast(ds, inits, n_out) for c in self.clims])  # (K, N, L, H, W)
        out = np.take_along_axis(each, np.maximum(fold, 0)[None, :, :, None, None], 0)[0]
        out[fold < 0] = np.nan
        return out


def out_of_fold(ds: xr.Dataset, use: np.ndarray, n_out: int, folds: int = FOLDS) -> OutOfFold:
    """Climatologies fitted on the steps ``use`` (bool (T,)) less one of ``folds`` time blocks."""
    fold = np.full(use.size, -1, np.int64)
    for f, block in enumerate(np.array_split(np.flatnonzero(use), folds)):
        fold[block] = f
    return OutOfFold(fold, [fit_climatology(ds, use & (fold != f), n_out) for f in range(folds)])


@dataclass(frozen=True)
class Rows:
    """Training rows of one lead: guidance (n, F), climatology (n,), position (n, 5), y (n,)."""

    raw: np.ndarray
    clim: np.ndarray
    pos: np.ndarray
    y: np.ndarray


def training_rows(
    ds, inits, guidance: Guidance, clim: OutOfFold, n_out: int, seed: int
) -> list[Rows]:
    """Per lead, a seeded sample of the observed cells of ``inits`` with any guidance; each
    row's climatology from ``clim``."""
    inits = np.asarray(inits, np.int64)
    h, w = ds.sizes[LAT], ds.sizes[LON]
    share = min(1.0, MAX_ROWS / max(inits.size * h * w, 1))
    rng = np.random.default_rng(seed)
    pos = np.moveaxis(position_terms(ds), 0, -1)  # (H, W, 5)
    parts: list[list[tuple]] = [[] for _ in range(n_out)]
    for lo in range(0, inits.size, BATCH):  # one batch of inits at a time: bounded memory
        batch = inits[lo : lo + BATCH]
        events, observed = observations(ds, batch, n_out)  # (B, L, H, W)
        guide = np.moveaxis(guidance.targets(batch), 2, -1)  # (B, L, H, W, F)
        c = clim.forecast(ds, batch, n_out)
        keep = observed & np.isfinite(guide).any(-1) & np.isfinite(c)
        keep &= rng.random(keep.shape) < share
        for k in range(n_out):
            b, i, j = np.nonzero(keep[:, k])
            parts[k].append((guide[b, k, i, j], c[b, k, i, j], pos[i, j], events[b, k, i, j]))
    return [Rows(*(np.concatenate(col) for col in zip(*p, strict=True))) for p in parts]


def fit_lead(rows: Rows, ridge: float = RIDGE) -> LeadFit:
    """The regression of one lead on its training rows."""
    log, mean, std = transforms(rows.raw)
    bare = LeadFit(log, mean, std, np.zeros(0))
    x = design(bare, rows.raw, rows.clim, rows.pos)
    return LeadFit(log, mean, std, fit_logistic(x, rows.y.astype(np.float64), ridge))


# --------------------------------------------------------------------------------------------
# building


def mos_training_inits(index) -> np.ndarray:
    """Init steps MOS is fitted on: the training split's, else (no split) every init, noted."""
    train = index.inits("train") if len(index.starts.get("train", ())) else np.zeros(0, np.int64)
    if train.size:
        return train
    warnings.warn(
        "mos: no training split; fitted on every init of the maps (in-sample)", stacklevel=3
    )
    return np.concatenate([index.inits(s) for s in index.starts if len(index.starts[s])])


def build_mos(ds: xr.Dataset, index, cfg: EvalConfig, path: str) -> Mos:
    """MOS on the guidance file ``path``, fitted on the training split of ``index``."""
    guidance = load_guidance(path, ds, time_step(ds), n_in=index.n_in, n_out=index.n_out)
    inits = mos_training_inits(index)
    guidance.check_targets(inits)
    clim = build_baseline("climatology", ds, index, cfg)
    folds = out_of_fold(ds, training_steps(ds, index), index.n_out)
    fits = []
    for k, rows in enumerate(training_rows(ds, inits, guidance, folds, index.n_out, cfg.seed)):
        if rows.y.size == 0:  # no forecast reaches this lead: the climatology stands
            fits.append(None)
            continue
        if not rows.y.any() or rows.y.all():
            raise UserError(
                f"{path}: mos has no training case with{'out' if rows.y.any() else ''} a strike "
                f"at lead {k + 1} where guidance exists; give guidance covering the training split"
            )
        fits.append(fit_lead(rows))
    return Mos(index.n_out, guidance, clim, fits, position_terms(ds))


def guided_baselines(cfg) -> list[str]:
    """The baselines of ``cfg.eval.baselines`` to build: ``mos`` needs ``data.guidance``.

    Without guidance, ``mos`` in the default list is left out (:func:`mos_left_out` says so);
    asked for explicitly, it is refused in one line.
    """
    names = list(cfg.eval.baselines)
    if MOS not in names or cfg.data.guidance:
        return names
    if tuple(names) != EvalConfig().baselines:
        raise UserError(
            "eval.baselines: 'mos' needs guidance; set data.guidance=GUIDANCE.nc (or "
            "--guidance), or leave mos out of eval.baselines"
        )
    return [n for n in names if n != MOS]


def mos_left_out(cfg) -> str:
    """A one-line note when the default ``mos`` is left out for want of guidance, else ""."""
    if MOS in cfg.eval.baselines and not cfg.data.guidance:
        return "mos: not scored, no guidance (set data.guidance=GUIDANCE.nc)"
    return ""
