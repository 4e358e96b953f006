"""Figures from files on disk: forecast-vs-observed lightning maps, score diagrams, training curves.

Every figure is built from files (maps, forecast, scores netCDF; training ``log.csv``), never from
live training state, as a :class:`matplotlib.figure.Figure` without pyplot, so plotting works on
headless machines and inside notebooks alike. :func:`plot_files` draws whatever the given files
allow and writes PNGs atomically. Score diagrams live in :mod:`forecast.diagrams`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from data_prep.errors import UserError
from data_prep.io import open_maps
from data_prep.schema import (
    COUNT,
    COVERAGE,
    INIT_TIME,
    LAT,
    LEAD_TIME,
    LON,
    PROBABILITY,
    THRESHOLD,
    TIME,
    parse_time_step,
)
from forecast.borders import draw_borders

PROB_LEVELS = [0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]
PROB_CMAP = "YlGnBu"
COUNT_CMAP = "YlOrRd"
NO_DATA_COLOUR = "0.75"
OBSERVED_DOTS = "#d6006f"  # magenta: stands out on yellow-green-blue
DPI = 110


# --------------------------------------------------------------------------------------------
# helpers: files, time labels


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temp file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=DPI)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def open_dataset(path: Path, what: str, needs: tuple[str, ...] = ()) -> xr.Dataset:
    """Open a small netCDF file eagerly; a UserError when missing, unreadable or incomplete."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {what} file not found; check the path")
    try:
        with xr.open_dataset(path) as ds:
            ds = ds.load()
    except (OSError, ValueError) as err:
        raise UserError(
            f"{path}: cannot read the {what} file ({err}); pass a netCDF file"
        ) from None
    missing = [v for v in needs if v not in ds.variables]
    if missing:
        raise UserError(
            f"{path}: {what} file lacks {', '.join(missing)}; pass a file written by strikecast"
        )
    return ds


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


def _time_step(ds: xr.Dataset) -> pd.Timedelta:
    return parse_time_step(str(ds.attrs.get("time_step", "1D")))


def _fmt_time(t, step: pd.Timedelta) -> str:
    t = pd.Timestamp(t)
    return (
        t.strftime("%Y-%m-%d")
        if step % pd.Timedelta("1D") == pd.Timedelta(0)
        else t.strftime("%Y-%m-%d %H:%MZ")
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
    """Banded probability colours: white below the first level, then light yellow to dark blue."""
    n = len(PROB_LEVELS) - 1
    colours = colormaps[PROB_CMAP](np.linspace(0.08, 1.0, n - 1))
    cmap = ListedColormap(np.vstack([[1, 1, 1, 1], colours]))
    return cmap, BoundaryNorm(PROB_LEVELS, n)


def draw_probability(
    ax, prob: xr.DataArray, *, observed: np.ndarray | None = None, label: str | None = None
):
    """Probability map (lat, lon) in [0, 1] on banded levels; cells with ``observed`` True dotted.

    Returns the QuadMesh (for a colour bar).
    """
    cmap, norm = _prob_cmap()
    lon, lat = prob[LON].values, prob[LAT].values
    mesh = ax.pcolormesh(_edges(lon), _edges(lat), prob.values, cmap=cmap, norm=norm)
    if observed is not None and observed.any():
        ii, jj = np.nonzero(observed)
        size = float(np.clip(6000 / observed.size, 0.3, 6))
        ax.scatter(
            lon[jj],
            lat[ii],
            s=size,
            c=OBSERVED_DOTS,
            marker="o",
            linewidths=0,
            zorder=4,
            label=label or "observed",
        )
        ax.legend(loc="lower left", fontsize=7, framealpha=0.85, markerscale=max(1, 3 / size))
    draw_borders(ax, _bbox(prob.to_dataset(name="p")))
    return mesh


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


def _prob_colorbar(fig, mesh, ax, threshold: float) -> None:
    cb = fig.colorbar(
        mesh, ax=ax, orientation="horizontal", shrink=0.9, pad=0.03, ticks=PROB_LEVELS
    )
    what = "1 strike" if threshold == 1 else f"{threshold:g} strikes"
    cb.set_label(f"probability of >= {what}")
    cb.ax.tick_params(labelsize=7)


def _count_colorbar(fig, mesh, ax, label: str) -> None:
    cb = fig.colorbar(mesh, ax=ax, orientation="horizontal", shrink=0.9, pad=0.03, extend="max")
    cb.ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    cb.ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    cb.ax.xaxis.set_minor_formatter(NullFormatter())
    cb.set_label(label)


# --------------------------------------------------------------------------------------------
# map figures


def forecast_map_figure(fc: xr.Dataset, maps: xr.Dataset | None, init, lead: int) -> Figure:
    """Forecast probability beside the observed strikes of the valid step, for one init and lead.

    Parameters
    ----------
    fc : forecast Dataset with ``probability(init_time, lead_time, [threshold,] lat, lon)``.
    maps : observed maps Dataset (``strike_count``, ``coverage``), or None for the forecast alone.
    init : init time (a value of ``fc.init_time``).
    lead : lead time in map steps (a value of ``fc.lead_time``).
    """
    step = _time_step(fc)
    prob = fc[PROBABILITY].sel({INIT_TIME: init, LEAD_TIME: lead})
    threshold = 1.0
    if THRESHOLD in prob.dims:
        threshold = float(prob[THRESHOLD].values[0])
        prob = prob.isel({THRESHOLD: 0})
    prob = prob.transpose(LAT, LON)
    valid = pd.Timestamp(init) + lead * step
    obs = _observed_at(maps, valid)
    fig = Figure(figsize=_map_figsize(_bbox(fc), 2 if obs is not None else 1), layout="compressed")
    axes = fig.subplots(1, 2 if obs is not None else 1, squeeze=False)[0]
    occurred = None if obs is None else (obs[COUNT].values >= threshold)
    mesh = draw_probability(
        axes[0],
        prob,
        observed=occurred,
        label=f"observed >= {threshold:g} strike{'s' if threshold > 1 else ''}",
    )
    axes[0].set_title("forecast probability", fontsize=9)
    _prob_colorbar(fig, mesh, axes[0], threshold)
    if obs is not None:
        mesh = draw_counts(axes[1], obs[COUNT], obs[COVERAGE] if COVERAGE in obs else None)
        axes[1].set_title(f"observed: {_obs_summary(obs)}", fontsize=9)
        _count_colorbar(
            fig, mesh, axes[1], f"strikes per {_cell_label(fc)} per {per_step_words(step)}"
        )
    fig.suptitle(
        f"Lightning: init {_fmt_time(init, step)} (last observed step), lead {lead} "
        f"(+{duration_words(lead * step)})\n"
        f"valid {_fmt_time(valid, step)} to {_fmt_time(valid + step, step)} UTC",
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
    step = _time_step(maps)
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
    cb = fig.colorbar(
        mesh, ax=ax1, orientation="horizontal", shrink=0.9, pad=0.03, ticks=PROB_LEVELS
    )
    cb.set_label(f"fraction of observed steps ({duration_words(step)}) with >= 1 strike")
    cb.ax.tick_params(labelsize=7)
    fig.suptitle(f"Observed lightning on grid {maps.attrs.get('grid', '')}", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# training curves


LOG_COLUMNS = ("step", "epoch", "lr", "train_loss", "val_loss", "val_brier", "val_bss")


def training_figure(log: pd.DataFrame) -> Figure:
    """Training and validation loss, validation Brier skill score and learning rate against step."""
    if "step" not in log:
        raise UserError(
            f"training log: no 'step' column (has {', '.join(log.columns)}); pass train's log.csv"
        )
    fig = Figure(figsize=(11, 3.4), layout="constrained")
    ax_loss, ax_bss, ax_lr = fig.subplots(1, 3)
    for col, colour in (("train_loss", "tab:blue"), ("val_loss", "tab:orange")):
        if col in log:
            d = log[["step", col]].dropna()
            smooth = (
                d[col].rolling(max(1, len(d) // 20), min_periods=1).mean()
                if col == "train_loss"
                else d[col]
            )
            if col == "train_loss":
                ax_loss.plot(d["step"], d[col], color=colour, alpha=0.3, lw=0.7)
            ax_loss.plot(
                d["step"],
                smooth,
                color=colour,
                marker="o" if col == "val_loss" else None,
                ms=3,
                label=col.replace("_", " "),
            )
    ax_loss.set(xlabel="optimizer step", ylabel="loss", title="loss")
    ax_loss.legend(fontsize=8)
    for col, ax, title in (
        ("val_bss", ax_bss, "validation Brier skill score"),
        ("lr", ax_lr, "learning rate"),
    ):
        if col in log:
            d = log[["step", col]].dropna()
            ax.plot(d["step"], d[col], marker="o" if col == "val_bss" else None, ms=3, color="k")
        ax.set(xlabel="optimizer step", title=title)
    ax_bss.axhline(0, color="0.5", lw=0.8, ls="--")
    ax_bss.set_ylabel("Brier skill score")
    ax_lr.set_ylabel("learning rate")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.suptitle("Training curves", fontsize=10)
    return fig


# --------------------------------------------------------------------------------------------
# files -> PNGs


def _pick_init(fc: xr.Dataset, init: str | None):
    times = pd.DatetimeIndex(fc[INIT_TIME].values)
    if init is None:
        return times[-1]
    try:
        t = pd.Timestamp(init)
    except ValueError:
        raise UserError(f"--init {init!r} is not a time; use e.g. 2024-02-05") from None
    if t not in times:
        raise UserError(
            f"--init {init}: not an init_time of the forecast file ({times[0]:%Y-%m-%d %H:%M} .. "
            f"{times[-1]:%Y-%m-%d %H:%M}, {len(times)} inits); pick one of those"
        )
    return t


def plot_maps(out: Path, fc: xr.Dataset, maps: xr.Dataset | None, init: str | None) -> list[Path]:
    """One PNG per lead time for the chosen init: forecast probability beside observed strikes."""
    t = _pick_init(fc, init)
    paths = []
    for lead in fc[LEAD_TIME].values:
        fig = forecast_map_figure(fc, maps, t.to_datetime64(), int(lead))
        paths.append(save_figure(fig, out / f"map_{t:%Y%m%dT%H%M}_lead{int(lead):02d}.png"))
    return paths


def plot_files(
    *,
    out: Path,
    maps: Path | None = None,
    forecast: Path | None = None,
    scores: Path | None = None,
    log: Path | None = None,
    init: str | None = None,
) -> list[Path]:
    """Draw every figure the given files allow and return the PNG paths written into ``out``.

    Parameters
    ----------
    out : output folder (created).
    maps : observed maps netCDF; with ``forecast`` gives the observed panel, alone an overview.
    forecast : forecast netCDF with ``probability(init_time, lead_time, lat, lon)``.
    scores : scores netCDF from evaluate -> reliability, ROC, PR, performance, score-vs-lead.
    log : training ``log.csv`` -> training curves.
    init : init time to map (default: the last init of the forecast file).
    """
    from forecast.diagrams import plot_scores

    out = Path(out)
    paths: list[Path] = []
    maps_ds = open_maps(Path(maps)) if maps is not None else None
    if forecast is not None:
        fc = open_dataset(forecast, "forecast", (PROBABILITY,))
        paths += plot_maps(out, fc, maps_ds, init)
    elif maps_ds is not None:
        paths.append(save_figure(observed_map_figure(maps_ds, init), out / "observed.png"))
    if scores is not None:
        paths += plot_scores(out, open_dataset(scores, "scores"))
    if log is not None:
        paths += _plot_log(out, Path(log))
    if not paths:
        warnings.warn("plot_files: no input files given, nothing drawn", stacklevel=2)
    return paths


def _plot_log(out: Path, log: Path) -> list[Path]:
    if not log.is_file():
        raise UserError(f"{log}: training log not found; pass the log.csv of a run directory")
    try:
        df = pd.read_csv(log)
    except (ValueError, pd.errors.ParserError) as err:
        raise UserError(
            f"{log}: cannot read the training log ({err}); pass train's log.csv"
        ) from None
    if df.empty:
        warnings.warn(f"{log}: training log is empty; no training curves drawn", stacklevel=3)
        return []
    return [save_figure(training_figure(df), out / "training.png")]
