"""Fitting the post-hoc calibration of the forecast probabilities on the validation split.

Validation forecasts stream into a :class:`LogitHistogram`: per lead time and threshold, the
number of observed cells with and without lightning in each narrow bin of the raw logit. The
histogram is small, merges across processes by summing, and is all the fits need:

- ``temperature`` (default): one temperature per lead and threshold, ``p = sigmoid(z / T)``,
  minimising the log loss (Guo et al. 2017). T > 1 softens an over-confident model. With no
  offset to take on the validation days' base rate, it suffers least when they are quieter or
  more active than the days the model will forecast (short records, few validation blocks).
- ``platt``: a slope and an offset per lead and threshold, ``p = sigmoid(a z + b)`` (Platt 1999).
  A model over-confident only where it forecasts high probabilities (often so at the longer
  leads of rare events) needs ``a < 1`` with ``b < 0``, which one temperature cannot do without
  raising every low probability; the offset also takes on the validation days' base rate, so it
  needs validation days as active as the rest (a long record in short blocks).
- ``isotonic``: pooled-adjacent-violators on the binned validation probabilities gives a monotone
  map, stored as its values on the logit-bin grid and applied by linear interpolation.
- ``none``: ``p = sigmoid(z)``.

The fitted :class:`forecast.model.calibrator.Calibrator` travels in the checkpoint and is applied by
prediction. :func:`reliability` bins the validation forecasts by probability before and after calibration
(observed frequency vs mean forecast probability) for ``calibration.nc`` and the reliability plots.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import xarray as xr
from scipy.optimize import isotonic_regression

from data_prep.schema import FORECAST_COORD_ATTRS, LEAD_TIME, STRIKES, lead_coords
from forecast.model.calibrator import (
    LOGIT_SPAN,
    N_LOGIT_BINS,
    Calibrator,
    check_method,
    identity,
)

_P_EPS = 1e-5  # isotonic probabilities stay inside [eps, 1 - eps] so log losses stay finite


class LogitHistogram:
    """Counts of observed cells by (lead, threshold, raw-logit bin, outcome), float64.

    ``counts`` has shape ``(n_out, n_thr, n_bins, 2)``; the last axis is (no strike, strike).
    """

    def __init__(
        self, n_out: int, n_thr: int, n_bins: int = N_LOGIT_BINS, span: float = LOGIT_SPAN
    ):
        self.n_bins, self.span = n_bins, span
        self.counts = torch.zeros(n_out, n_thr, n_bins, 2, dtype=torch.float64)

    @property
    def centres(self) -> np.ndarray:
        """Logit at the centre of each bin, (n_bins,)."""
        return np.linspace(-self.span, self.span, self.n_bins)

    def add(self, logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """Add logits/target (B, n_out, n_thr, H, W) where mask (B, n_out, H, W) is 1."""
        n_out, n_thr = self.counts.shape[:2]
        z = logits.detach().float().cpu()
        step = 2 * self.span / (self.n_bins - 1)
        b = ((z + self.span) / step).round().clamp(0, self.n_bins - 1).long()
        lead = torch.arange(n_out).view(1, n_out, 1, 1, 1)
        thr = torch.arange(n_thr).view(1, 1, n_thr, 1, 1)
        flat = ((lead * n_thr + thr) * self.n_bins + b) * 2 + (target.cpu() > 0.5).long()
        w = mask.detach().float().cpu().unsqueeze(2).expand_as(z)
        size = self.counts.numel()
        self.counts += torch.bincount(
            flat.reshape(-1), w.reshape(-1).double(), minlength=size
        ).view_as(self.counts)


def fit_calibration(hist: LogitHistogram, method: str = "temperature") -> Calibrator:
    """Fit ``method`` (one of :data:`METHODS`) per lead and threshold on a validation histogram."""
    check_method(method)
    n_out, n_thr = hist.counts.shape[:2]
    z, c = hist.centres, hist.counts.numpy()

    def each(fit) -> np.ndarray:
        """``fit(pos, neg)`` on every (lead, threshold) histogram, stacked (n_out, n_thr, ...)."""
        return np.array(
            [[fit(c[i, k, :, 1], c[i, k, :, 0]) for k in range(n_thr)] for i in range(n_out)]
        )

    if method == "platt":
        ab = each(lambda pos, neg: fit_platt(z, pos, neg))  # (n_out, n_thr, 2)
        return Calibrator(
            "platt",
            torch.tensor(1.0 / ab[..., 0], dtype=torch.float32),
            span=hist.span,
            offset=torch.tensor(ab[..., 1], dtype=torch.float32),
        )
    if method == "temperature":
        t = each(lambda pos, neg: fit_temperature(z, pos, neg))
        return Calibrator("temperature", torch.tensor(t, dtype=torch.float32), span=hist.span)
    if method == "isotonic":
        table = torch.tensor(each(_isotonic_table))
        return Calibrator("isotonic", torch.ones(n_out, n_thr), table, hist.span)
    return identity(n_out, n_thr)


def _sigmoid(u: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large |u|."""
    return 0.5 * (1.0 + np.tanh(0.5 * u))


def _fit_logistic(
    x: np.ndarray,
    pos: np.ndarray,
    neg: np.ndarray,
    theta: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    offset: np.ndarray | float = 0.0,
    iters: int = 100,
) -> np.ndarray:
    """Coefficients minimising the weighted log loss of ``sigmoid(x @ theta + offset)``.

    ``x`` (n, k) predictors, ``pos``/``neg`` (n,) weights of outcomes 1/0, ``theta`` (k,) the
    start, kept within [lo, hi]. The loss is convex: Newton steps, halved until the loss falls.
    """
    w = pos + neg

    def loss(t: np.ndarray) -> float:
        u = x @ t + offset
        return float(np.sum(w * np.logaddexp(0.0, u) - pos * u))

    f = loss(theta)
    for _ in range(iters):
        p = _sigmoid(x @ theta + offset)
        grad = x.T @ (w * p - pos)
        hess = (x * (w * p * (1 - p))[:, None]).T @ x + 1e-9 * np.eye(x.shape[1])
        step, scale = np.linalg.solve(hess, grad), 1.0
        while scale > 1e-6:
            new = np.clip(theta - scale * step, lo, hi)
            f_new = loss(new)
            if f_new <= f:
                break
            scale /= 2
        else:
            break
        done = np.max(np.abs(new - theta)) < 1e-9
        theta, f = new, f_new
        if done:
            break
    return theta


def _one_outcome(pos: np.ndarray, neg: np.ndarray) -> bool:
    """No data, or only strikes, or only cells without: nothing to fit."""
    return pos.sum() <= 0 or neg.sum() <= 0


_SLOPE = (0.01, 100.0)  # bounds of the slope 1 / T


def fit_temperature(z: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> float:
    """Temperature T minimising the log loss of ``sigmoid(z / T)`` over weighted logits.

    ``z`` (n,) logits, ``pos``/``neg`` (n,) weights of outcomes 1/0. Fitted as the slope
    ``a = 1 / T`` (the loss is convex in it), kept within [0.01, 100]. No data gives T = 1.
    """
    if _one_outcome(pos, neg):
        return 1.0
    a = _fit_logistic(z[:, None], pos, neg, np.array([1.0]), _SLOPE[0], _SLOPE[1])[0]
    return 1.0 / float(a)


def fit_platt(z: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> tuple[float, float]:
    """Slope a and offset b minimising the log loss of ``sigmoid(a z + b)`` over weighted logits.

    ``z`` (n,) logits, ``pos``/``neg`` (n,) weights of outcomes 1/0; a is kept within
    [0.01, 100] (at a bound, b is refitted alone). No data, or only one outcome, gives (1, 0).
    """
    if _one_outcome(pos, neg):
        return 1.0, 0.0
    x = np.stack([z, np.ones_like(z)], -1)  # (n, 2)
    lo, hi = np.array([_SLOPE[0], -np.inf]), np.array([_SLOPE[1], np.inf])
    a, b = _fit_logistic(x, pos, neg, np.array([1.0, 0.0]), lo, hi)
    if a in _SLOPE:  # slope at a bound: the joint steps stopped short for b
        ones = np.ones((len(z), 1))
        (b,) = _fit_logistic(ones, pos, neg, np.array([b]), -np.inf, np.inf, offset=a * z)
    return float(a), float(b)


def _isotonic_table(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Pooled adjacent violators over the logit bins -> monotone P on every bin centre (n_bins,)."""
    w = pos + neg
    keep = np.flatnonzero(w > 0)
    if keep.size == 0:
        return np.full(pos.shape, 0.5, dtype=np.float32)
    fitted = isotonic_regression(pos[keep] / w[keep], weights=w[keep]).x  # pooled violators
    table = np.interp(np.arange(pos.size), keep, fitted)
    return np.clip(table, _P_EPS, 1 - _P_EPS).astype(np.float32)


def reliability(
    hist: LogitHistogram,
    cal: Calibrator,
    thresholds: tuple[int, ...],
    step: pd.Timedelta,
    n_bins: int = 10,
) -> xr.Dataset:
    """Reliability of validation forecasts before (``raw``) and after (``calibrated``) calibration.

    Returns a Dataset with dims ``(stage, lead_time, strikes, bin)``: ``forecast_probability``
    (mean forecast in the bin), ``observed_frequency``, ``count`` (cells), and per (stage,
    lead_time, strikes) the ``log_loss`` and ``brier_score``; plus ``temperature`` (and the platt
    ``slope`` = 1 / temperature and ``offset``). ``lead_time`` holds durations (``step``, the
    maps' time step, apart), ``lead_step`` the step counts.
    """
    n_out, n_thr = hist.counts.shape[:2]
    z = (
        torch.tensor(hist.centres, dtype=torch.float32)
        .view(1, 1, 1, 1, -1)
        .expand(1, n_out, n_thr, 1, -1)
    )
    probs = {"raw": torch.sigmoid(z), "calibrated": cal.probability(z.contiguous(), monotone=False)}
    c = hist.counts.numpy()
    edges = np.linspace(0, 1, n_bins + 1)
    out = {
        k: []
        for k in ("forecast_probability", "observed_frequency", "count", "log_loss", "brier_score")
    }
    for p in probs.values():
        p = p[0, :, :, 0].double().numpy()  # (n_out, n_thr, n_logit_bins)
        for key, val in _binned(p, c[..., 1], c[..., 0], edges).items():
            out[key].append(val)
    dims3, dims1 = ("stage", LEAD_TIME, STRIKES, "bin"), ("stage", LEAD_TIME, STRIKES)
    data = {k: (dims3 if np.ndim(v[0]) == 3 else dims1, np.array(v)) for k, v in out.items()}
    data["temperature"] = ((LEAD_TIME, STRIKES), cal.temperature.numpy())
    if cal.offset is not None:
        data["slope"] = ((LEAD_TIME, STRIKES), 1.0 / cal.temperature.numpy())
        data["offset"] = ((LEAD_TIME, STRIKES), cal.offset.numpy())
    coords = {
        "stage": list(probs),
        **lead_coords(n_out, step),
        STRIKES: (STRIKES, np.asarray(thresholds, dtype=np.int32), FORECAST_COORD_ATTRS[STRIKES]),
        "bin_lower": ("bin", edges[:-1]),
        "bin_upper": ("bin", edges[1:]),
    }
    ds = xr.Dataset(data, coords=coords, attrs={"calibration_method": cal.method})
    for name, long_name in _RELIABILITY_LONG.items():
        if name in ds.variables:
            ds[name].attrs.update(long_name=long_name, units="1")
    ds.attrs["title"] = (
        "strikecast reliability of validation forecasts before and after calibration"
    )
    return ds


_RELIABILITY_LONG = {
    "bin_lower": "lower edge of the reliability bin (forecast probability)",
    "bin_upper": "upper edge of the reliability bin (forecast probability)",
    "forecast_probability": "mean forecast probability in the bin",
    "observed_frequency": "observed frequency of the event in the bin",
    "count": "observed cells in the bin",
    "log_loss": "mean negative log-likelihood",
    "brier_score": "Brier score (mean squared probability error)",
    "temperature": "calibration temperature T of p = sigmoid(z / T + offset)",
    "slope": "platt slope a of p = sigmoid(a z + b)",
    "offset": "platt offset b of p = sigmoid(a z + b)",
}


def _binned(p: np.ndarray, pos: np.ndarray, neg: np.ndarray, edges: np.ndarray) -> dict:
    """Reliability bins and scores from per-logit-bin probabilities p and outcome weights."""
    n_rel = len(edges) - 1
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_rel - 1)
    w = pos + neg
    count, obs, fsum = (np.zeros(p.shape[:2] + (n_rel,)) for _ in range(3))
    for i, j in np.ndindex(*p.shape[:2]):
        count[i, j] = np.bincount(idx[i, j], w[i, j], n_rel)
        obs[i, j] = np.bincount(idx[i, j], pos[i, j], n_rel)
        fsum[i, j] = np.bincount(idx[i, j], w[i, j] * p[i, j], n_rel)
    with np.errstate(invalid="ignore", divide="ignore"):
        pc = np.clip(p, 1e-7, 1 - 1e-7)
        n = w.sum(-1)
        ll = -(pos * np.log(pc) + neg * np.log(1 - pc)).sum(-1) / n
        bs = (pos * (1 - p) ** 2 + neg * p**2).sum(-1) / n
        return {
            "forecast_probability": fsum / count,
            "observed_frequency": obs / count,
            "count": count,
            "log_loss": ll,
            "brier_score": bs,
        }
