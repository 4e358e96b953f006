"""Figures from files on disk: forecast-vs-observed lightning maps, score diagrams, training curves.

Every figure is built from files (maps, forecast, scores netCDF; training ``log.csv``), never from
live training state, as a :class:`matplotlib.figure.Figure` without pyplot, so plotting works on
headless machines and inside notebooks alike. :func:`plot_files` draws whatever the given files
allow and writes PNGs atomically. Map figures live in :mod:`forecast.figures.maps`, the climate of a
maps file in :mod:`forecast.figures.climate`, score diagrams in :mod:`forecast.figures.diagrams`.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from data_prep.atomic import atomic_output
from data_prep.errors import UserError
from data_prep.io import open_maps
from data_prep.schema import INIT_TIME, LEAD_STEP, PROBABILITY, by_lead_step
from forecast.figures.climate import climate_figure
from forecast.figures.diagrams import DIAGRAMS
from forecast.figures.maps import forecast_map_figure, observed_map_figure
from forecast.metrics.suite import FORECAST, upgrade_scores

__all__ = [
    "climate_figure",
    "forecast_map_figure",
    "observed_map_figure",
    "open_dataset",
    "plot_files",
    "plot_maps",
    "plot_scores",
    "save_figure",
    "settle_layout",
    "training_figure",
]

DPI = 110


# --------------------------------------------------------------------------------------------
# files


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path`` atomically (temp file in the same folder, then rename)."""
    settle_layout(fig)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(path)


def settle_layout(fig: Figure) -> None:
    """Run the layout once before drawing: panels of fixed aspect (unit-square diagrams, maps)
    find their final place on the second pass, and titles or legends overlap them before that."""
    fig.draw_without_rendering()


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


# --------------------------------------------------------------------------------------------
# training curves


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
    for lead in by_lead_step(fc)[LEAD_STEP].values:
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
    maps : observed maps netCDF; with ``forecast`` gives the observed panel, alone an overview;
        always the climate figure (base rate by month, Hovmöller diagram, daily totals).
    forecast : forecast netCDF with ``probability(init_time, lead_time, lat, lon)``.
    scores : scores netCDF from evaluate -> reliability, ROC, PR, performance, score-vs-lead.
    log : training ``log.csv`` -> training curves.
    init : init time to map (default: the last init of the forecast file).
    """
    out = Path(out)
    if maps is None and forecast is None and scores is None and log is None:
        raise UserError("nothing to draw; pass --maps, --forecast, --scores or --log")
    paths: list[Path] = []
    maps_ds = open_maps(Path(maps)) if maps is not None else None
    if forecast is not None:
        fc = open_dataset(forecast, "forecast", (PROBABILITY,))
        paths += plot_maps(out, fc, maps_ds, init)
    elif maps_ds is not None:
        paths.append(save_figure(observed_map_figure(maps_ds, init), out / "observed.png"))
    if maps_ds is not None:
        paths.append(save_figure(climate_figure(maps_ds), out / "climate.png"))
    if scores is not None:
        sc = by_lead_step(upgrade_scores(open_dataset(scores, "scores")))  # older names too
        if FORECAST not in sc.dims or LEAD_STEP not in sc.dims:
            raise UserError(
                f"{scores}: not a scores file (no {FORECAST} and lead_time dimensions); pass the "
                "scores .nc written by `strikecast evaluate`"
            )
        paths += plot_scores(out, sc)
    if log is not None:
        paths += _plot_log(out, Path(log))
    return paths


def plot_scores(out: Path, scores: xr.Dataset) -> list[Path]:
    """Every diagram the scores Dataset allows, saved as ``out/<name>.png``; returns the paths."""
    paths = []
    for name, make in DIAGRAMS.items():
        fig = make(scores)
        if fig is not None:
            paths.append(save_figure(fig, Path(out) / f"{name}.png"))
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
