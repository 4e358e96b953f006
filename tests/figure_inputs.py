"""Small files in the layouts of predict and evaluate, and the texts a figure shows."""

from __future__ import annotations

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from data_prep.schema import by_lead_step, lead_coords
from forecast.metrics import THRESHOLDS, ContingencyState, ProbabilityState, best_threshold


def fake_forecast(maps: xr.Dataset, inits=(40, 41), n_out: int = 2) -> xr.Dataset:
    """A forecast-file Dataset: the init's occurrence map blurred, for every lead."""
    occ = (maps["strike_count"].values >= 1).astype(np.float32)  # (T, H, W)
    kernel = np.ones(3) / 3
    blur = np.apply_along_axis(np.convolve, 1, occ, kernel, mode="same")
    blur = np.apply_along_axis(np.convolve, 2, blur, kernel, mode="same")
    prob = np.stack([np.repeat(blur[i][None], n_out, 0) for i in inits]).clip(0, 1)
    init_t = maps["time"].values[list(inits)]
    lead = np.arange(1, n_out + 1)
    valid = init_t[:, None] + lead[None, :] * np.timedelta64(1, "D")
    return xr.Dataset(
        {"probability": (("init_time", "lead_time", "lat", "lon"), prob.astype(np.float32))},
        coords={
            "init_time": init_t,
            **lead_coords(n_out, np.timedelta64(1, "D")),
            "valid_time": (("init_time", "lead_time"), valid),
            "lat": maps["lat"],
            "lon": maps["lon"],
        },
        attrs={"time_step": maps.attrs["time_step"], "source": "test"},
    )


def fake_scores(
    methods=("model", "persistence", "climatology"), n_leads: int = 2, seed: int = 0
) -> xr.Dataset:
    """A scores Dataset with evaluate's names and dims, from the metrics states on random cases,
    indexed by lead step as ``plot_files`` hands it to the diagrams."""
    rng = np.random.default_rng(seed)
    truth = rng.uniform(0, 0.6, size=(10, n_leads, 8, 8)) ** 2
    obs = rng.uniform(size=truth.shape) < truth
    mask = np.ones(obs.shape, bool)
    per = {}
    for k, m in enumerate(methods):
        p = np.clip(truth + rng.normal(0, 0.1 * (k + 1), truth.shape), 0, 1)
        per[m] = ProbabilityState.init(n_leads, 101).add(p, obs, mask).compute()
        per[m].update(ContingencyState.init(n_leads).add(p, obs, mask).compute())
    coords = {
        "forecast": list(methods),
        **lead_coords(n_leads, np.timedelta64(1, "D")),
        "probability_threshold": THRESHOLDS,
        "bin": (np.arange(10) + 0.5) / 10,
        "curve_threshold": np.arange(102) / 100,
    }
    dims = {
        "roc_pofd": "curve_threshold",
        "roc_pod": "curve_threshold",
        "pr_recall": "curve_threshold",
        "pr_precision": "curve_threshold",
        "reliability_forecast": "bin",
        "reliability_observed": "bin",
        "reliability_count": "bin",
        "pod": "probability_threshold",
        "far": "probability_threshold",
    }
    data = {}
    for v in ("brier_score", "base_rate", "roc_auc", "average_precision", *dims):
        extra = (dims[v],) if v in dims else ()
        data[v] = (("forecast", "lead_time", *extra), np.stack([per[m][v] for m in methods]))
    ds = xr.Dataset(data, coords=coords)
    ds["brier_skill_score"] = 1 - ds["brier_score"] / ds["brier_score"].sel(
        forecast="climatology", drop=True
    )
    csi = np.stack([per[m]["csi"] for m in methods])
    ds["best_threshold"] = (("forecast", "lead_time"), best_threshold(csi, THRESHOLDS))
    ds["csi"] = (("forecast", "lead_time"), np.nanmax(csi, -1))
    for v in ("brier_skill_score", "roc_auc", "csi"):
        ds[f"{v}_lo"], ds[f"{v}_hi"] = ds[v] - 0.03, ds[v] + 0.02
    ds = ds.assign_coords(scale=[1, 3, 5])
    for v in ("fss", "csi_neighbourhood"):
        ds[v] = ds["csi"] + 0.1 * np.log(ds["scale"])  # (forecast, lead_time, scale)
    return by_lead_step(ds)


def _texts(fig: Figure) -> str:
    """Every title, axis label and colour-bar label of a figure, joined."""
    parts = [fig._suptitle.get_text() if fig._suptitle else ""]
    for ax in fig.axes:
        parts += [ax.get_title(), ax.get_xlabel(), ax.get_ylabel()]
    return "\n".join(parts)
