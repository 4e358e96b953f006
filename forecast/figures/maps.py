"""Lightning maps: forecast probability beside observed strikes, and observed overviews.

Maps are drawn in plain latitude-longitude axes with coastlines, country and state borders from
:mod:`forecast.figures.borders` at a resolution that fits the domain. Probability uses banded levels
that resolve the low probabilities of lightning (0.5, 1, 2, 3, 5, 7, 10 % ...; white below 0.5 %) on
a yellow-green-blue scale; the cells where strikes were observed are outlined on top, so the
forecast stays visible beneath. Observed strikes use a logarithmic yellow-orange-red scale in
strikes per cell per map step, with cells without data shaded grey. Figures are :class:`matplotlib.figure.Figure` objects built
without pyplot; :mod:`forecast.figures.files` saves them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from data_prep.schema import (
    COUNT,
    COVERAGE,
    INIT_TIME,
    LAT,
    LEAD_STEP,
    LON,
    PROBABILITY,
    STRIKES,
    TIME,
    by_lead_step,
)
from data_prep.sequences import time_step
from forecast.figures.borders import draw_borders

# Lightning base rates are often 1-10 %, and forecasts of active regions reach far above: seven
# bands below 10 %, then steps of 10 %.
PROB_LEVELS = [0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2]
PROB_LEVELS += [0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
PROB_CMAP = "viridis_r"  # light yellow (low) to dark purple (high), each band its own shade
COUNT_CMAP = "YlOrRd"
NO_DATA_COLOUR = "0.75"
OBSERVED_OUTLINE = "#e8000b"  # red: stands out on yellow-green-blue-purple


# --------------------------------------------------------------------------------------------
# labels


def duration_words(td: pd.Timedelta) -> str:
    """``1 day``, ``3 days``, ``6 h``, ``15 min``: a step length for axis labels and titles."""
    minutes = int(td.total_seconds() // 60)
    if minutes % 1440 == 0:
        days = minutes // 1440
        return "1 day" if days == 1 else f"{days} days"
    if minutes % 60 == 0:
        return f"{minutes // 60} h"
    return f"{minutes} min"


def per_step_words(td: pd.Timedelta) -> str:
    """``day``, ``2 days``, ``hour``, ``6 h``: one map step, for "strikes per ..." labels."""
    words = duration_words(td)
    return {"1 day": "day", "1 h": "hour"}.get(words, words)


def _fmt_time(t, step: pd.Timedelta) -> str:
    t = pd.Timestamp(t)
    return (
        t.strftime("%Y-%m-%d")
        if step % pd.Timedelta("1D") == pd.Timedelta(0)
        else t.strftime("%Y-%m-%d %H:%M")
    )


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges (N + 1,) of a regular axis of cell centres (N,)."""
    c = np.asarray(centres, dtype=float)
    res = c[1] - c[0] if c.size > 1 else 1.0
    return np.concatenate([c - res / 2, [c[-1] + res / 2]])


def _bbox(ds: xr.Dataset) -> tuple[float, float, float, float]:
    lat, lon = _edges(ds[LAT].values), _edges(ds[LON].values)
    return lat[0], lat[-1], lon[0], lon[-1]


def _cell_label(ds: xr.Dataset) -> str:
    res = (
        float(np.round(abs(ds[LAT].values[1] - ds[LAT].values[0]), 6))
        if ds.sizes[LAT] > 1
        else None
    )
    return f"{res:g}° cell" if res else "cell"


def _map_figsize(bbox, ncols: int) -> tuple[float, float]:
    lat0, lat1, lon0, lon1 = bbox
    ratio = (lat1 - lat0) / np.cos(np.deg2rad(0.5 * (lat0 + lat1))) / (lon1 - lon0)
    width = 5.2  # per panel; the map itself gets about 4.3 inches of it
    return width * ncols, 4.3 * ratio + 1.5


# --------------------------------------------------------------------------------------------
# map panels


def _prob_cmap() -> tuple[ListedColormap, BoundaryNorm]:
    """Banded probability colours: white below the first level, then light yellow to dark purple."""
    n = len(PROB_LEVELS) - 1
    colours = colormaps[PROB_CMAP](np.linspace(0.0, 1.0, n - 1))
    cmap = ListedColormap(np.vstack([[1, 1, 1, 1], colours]))
    return cmap, BoundaryNorm(PROB_LEVELS, n)


def draw_probability(
    ax, prob: xr.DataArray, *, observed: np.ndarray | None = None, label: str | None = None
):
    """Probability map (lat, lon) in [0, 1] on banded levels; cells with ``observed`` True outlined.

    Returns the QuadMesh (for a colour bar).
    """
    cmap, norm = _prob_cmap()
    lon, lat = prob[LON].values, prob[LAT].values
    mesh = ax.pcolormesh(_edges(lon), _edges(lat), prob.values, cmap=cmap, norm=norm)
    if observed is not None and observed.any():
        outline_cells(ax, lon, lat, observed)
        handle = Line2D([], [], color=OBSERVED_OUTLINE, lw=1.2, label=label or "observed")
        ax.legend(handles=[handle], loc="lower left", fontsize=7, framealpha=0.85)
    draw_borders(ax, _bbox(prob.to_dataset(name="p")))
    return mesh


def outline_cells(ax, lon: np.ndarray, lat: np.ndarray, mask: np.ndarray):
    """Outline the cells where ``mask`` (lat, lon) is True: a contour around each patch.

    The mask is repeated on a finer grid so the contour follows the cell edges (instead of cutting
    corners between cell centres), with a ring of False cells so patches on the domain's edge
    close too. Returns the contour set.
    """
    up = int(np.clip(2000 // max(mask.shape), 2, 8))  # sub-cells per cell side
    fine = np.pad(np.kron(mask.astype(np.float32), np.ones((up, up), np.float32)), 1)
    x, y = _sub_centres(np.asarray(lon, float), up), _sub_centres(np.asarray(lat, float), up)
    return ax.contour(x, y, fine, levels=[0.5], colors=OBSERVED_OUTLINE, linewidths=1.0, zorder=4)


def _sub_centres(c: np.ndarray, up: int) -> np.ndarray:
    """Centres (N * up + 2,) of ``up`` sub-cells per cell of centres ``c`` (N,), one more per side."""
    e = _edges(c)
    res = (e[1] - e[0]) / up
    fine = e[0] + res * (np.arange(c.size * up) + 0.5)
    return np.concatenate([[fine[0] - res], fine, [fine[-1] + res]])


def draw_counts(
    ax, counts: xr.DataArray, coverage: xr.DataArray | None = None, vmax: float | None = None
):
    """Observed strike counts (lat, lon) on a log colour scale; cells without data shaded grey.

    Returns the QuadMesh (for a colour bar).
    """
    lon, lat = _edges(counts[LON].values), _edges(counts[LAT].values)
    if coverage is not None and (coverage.values == 0).any():
        nodata = np.where(coverage.values == 0, 1.0, np.nan)
        ax.pcolormesh(lon, lat, nodata, cmap=ListedColormap([NO_DATA_COLOUR]), vmin=0, vmax=1)
        ax.legend(
            handles=[Patch(color=NO_DATA_COLOUR, label="no data")], loc="lower left", fontsize=7
        )
    values = np.ma.masked_less(counts.values.astype(float), 1)
    vmax = max(float(vmax if vmax is not None else values.max() if values.count() else 1), 10.0)
    # Skip the near-white end of the colour map so that single strikes stay visible.
    cmap = ListedColormap(colormaps[COUNT_CMAP](np.linspace(0.2, 1.0, 256)))
    mesh = ax.pcolormesh(lon, lat, values, cmap=cmap, norm=LogNorm(1, vmax))
    draw_borders(ax, _bbox(counts.to_dataset(name="c")))
    return mesh


def _prob_colorbar(fig, mesh, ax, label: str) -> None:
    """Horizontal colour bar of the probability bands, ticks in percent (equal width per band)."""
    cb = fig.colorbar(
        mesh, ax=ax, orientation="horizontal", shrink=0.9, pad=0.03, ticks=PROB_LEVELS
    )
    cb.ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{100 * v:g}"))
    cb.set_label(f"{label} (%)")
    cb.ax.tick_params(labelsize=7)


def forecast_name(fc: xr.Dataset) -> str:
    """What made the forecast, from the file's attributes: ``convgru model, temperature-calibrated``.

    Falls back to the ``method`` or ``source`` attribute, then to ``forecast``.
    """
    cell = fc.attrs.get("model_cell")
    if cell:
        cal = str(fc.attrs.get("calibration", "none"))
        uncal = cal in ("", "none") or "uncalibrated" in str(fc.attrs.get("source", ""))
        return f"{cell} model, " + ("uncalibrated" if uncal else f"{cal}-calibrated")
    return str(fc.attrs.get("method") or fc.attrs.get("source") or "forecast")


def _count_colorbar(fig, mesh, ax, label: str) -> None:
    cb = fig.colorbar(mesh, ax=ax, orientation="horizontal", shrink=0.9, pad=0.03, extend="max")
    cb.ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    cb.ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    cb.ax.xaxis.set_minor_formatter(NullFormatter())
    cb.set_label(label)


# --------------------------------------------------------------------------------------------
# map figures


def forecast_map_figure(
    fc: xr.Dataset, maps: xr.Dataset | None, init, lead: int, *, outline: bool = True
) -> Figure:
    """Forecast probability beside the observed strikes of the valid step, for one init and lead.

    Parameters
    ----------
    fc : forecast Dataset with ``probability(init_time, lead_time, [strikes,] lat, lon)``.
    maps : observed maps Dataset (``strike_count``, ``coverage``), or None for the forecast alone.
    init : init time (a value of ``fc.init_time``).
    lead : lead time in map steps (a value of ``fc.lead_step``).
    outline : outline the observed cells (>= the threshold) on the forecast panel.
    """
    step = time_step(fc)
    prob = by_lead_step(fc)[PROBABILITY].sel({INIT_TIME: init, LEAD_STEP: lead})
    threshold = 1.0
    name = forecast_name(fc)
    if STRIKES in prob.dims:
        threshold = float(prob[STRIKES].values[0])
        prob = prob.isel({STRIKES: 0})
    prob = prob.transpose(LAT, LON)
    valid = pd.Timestamp(init) + lead * step
    obs = _observed_at(maps, valid)
    fig = Figure(figsize=_map_figsize(_bbox(fc), 2 if obs is not None else 1), layout="compressed")
    axes = fig.subplots(1, 2 if obs is not None else 1, squeeze=False)[0]
    occurred = None if obs is None or not outline else (obs[COUNT].values >= threshold)
    mesh = draw_probability(
        axes[0],
        prob,
        observed=occurred,
        label=f"observed >= {threshold:g} strike{'s' if threshold > 1 else ''}",
    )
    note = " (valid time not in the observed maps)" if maps is not None and obs is None else ""
    axes[0].set_title(f"forecast probability{note}", fontsize=9)
    what = "1 strike" if threshold == 1 else f"{threshold:g} strikes"
    _prob_colorbar(fig, mesh, axes[0], f"probability of >= {what}")
    if obs is not None:
        mesh = draw_counts(axes[1], obs[COUNT], obs[COVERAGE] if COVERAGE in obs else None)
        axes[1].set_title(f"observed: {_obs_summary(obs)}", fontsize=9)
        _count_colorbar(
            fig, mesh, axes[1], f"strikes per {_cell_label(fc)} per {per_step_words(step)}"
        )
    fig.suptitle(
        f"Lightning forecast by {name}\n"
        f"init {_fmt_time(init, step)} (last observed step), lead {lead} "
        f"(+{duration_words(lead * step)}): "
        f"valid {_fmt_time(valid, step)} to {_fmt_time(valid + step, step)} (UTC)",
        fontsize=10,
    )
    return fig


def _observed_at(maps: xr.Dataset | None, valid: pd.Timestamp) -> xr.Dataset | None:
    if maps is None or valid.to_datetime64() not in maps[TIME].values:
        return None
    return maps.sel({TIME: valid.to_datetime64()})


def _obs_summary(obs: xr.Dataset) -> str:
    """``1234 strikes`` plus the share of cells without data, or ``no data`` when none observed."""
    cov = obs[COVERAGE].values if COVERAGE in obs else np.ones(obs[COUNT].shape)
    if not cov.any():
        return "no data for this step"
    missing = f", {100 * (1 - cov.mean()):.0f}% of cells without data" if not cov.all() else ""
    return f"{int(obs[COUNT].sum())} strikes in the domain{missing}"


def observed_map_figure(maps: xr.Dataset, time=None) -> Figure:
    """Observed strikes of one step (default: the last) and the fraction of steps with a strike."""
    step = time_step(maps)
    t = pd.Timestamp(maps[TIME].values[-1] if time is None else time)
    obs = maps.sel({TIME: t.to_datetime64()}, method="nearest")
    cov = maps[COVERAGE] if COVERAGE in maps else xr.ones_like(maps[COUNT])
    n_obs = cov.sum(TIME)
    freq = ((maps[COUNT] >= 1) & (cov == 1)).sum(TIME) / n_obs.where(n_obs > 0)
    fig = Figure(figsize=_map_figsize(_bbox(maps), 2), layout="compressed")
    ax0, ax1 = fig.subplots(1, 2)
    mesh = draw_counts(ax0, obs[COUNT], obs[COVERAGE] if COVERAGE in obs else None)
    ax0.set_title(f"{_fmt_time(obs[TIME].values, step)}: {_obs_summary(obs)}", fontsize=9)
    _count_colorbar(fig, mesh, ax0, f"strikes per {_cell_label(maps)} per {per_step_words(step)}")
    mesh = draw_probability(ax1, freq.astype(np.float32))
    t0, t1 = (_fmt_time(maps[TIME].values[i], step) for i in (0, -1))
    ax1.set_title(f"strike frequency, {maps.sizes[TIME]} steps {t0} to {t1}", fontsize=9)
    _prob_colorbar(
        fig, mesh, ax1, f"share of observed steps ({duration_words(step)}) with >= 1 strike"
    )
    fig.suptitle(f"Observed lightning on grid {maps.attrs.get('grid', '')}", fontsize=10)
    return fig
