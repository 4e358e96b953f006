"""The climate of a maps file: seasonal cycle of the base rate, a Hovmöller diagram, daily totals.

:func:`climate_figure` needs only ``strike_count(time, lat, lon)`` and ``coverage`` of a maps
file, so it draws the synthetic world and real archives alike. Maps with steps shorter than a day
are summed to UTC days first; a cell counts as observed on a day when any of its steps was.
Three panels:

- the base rate (share of observed cells with at least one strike) day by day and by month, the
  seasonal cycle;
- a Hovmöller diagram of the share of cells with strikes, averaged over latitude, against
  longitude and time, for the 90 days whose patterns travel most coherently (the whole record
  when shorter): systems travelling east leave streaks that slant down to the right. The peak of
  the lag-one-day cross-correlation of its anomalies gives the apparent zonal speed in the title;
- the domain's daily strike totals ranked on a log scale: the heavy tail of quiet and very active
  days.
"""

from __future__ import annotations

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, PercentFormatter

from data_prep.schema import COUNT, COVERAGE, LAT, LON, TIME
from data_prep.sequences import time_step
from forecast.figures.maps import COUNT_CMAP, _cell_label, _edges

HOVMOLLER_DAYS = 90
KM_PER_DEG = 111.32
DAY = pd.Timedelta("1D")


# --------------------------------------------------------------------------------------------
# daily statistics


def daily_climate(maps: xr.Dataset) -> xr.Dataset:
    """Per-day domain statistics of a maps Dataset.

    Returns a Dataset over ``time`` (days) with ``observed`` and ``positive`` cell counts and the
    domain total ``strikes`` (NaN on days without data), and over ``(time, lon)`` the same cell
    counts summed over latitude, ``observed_lon`` and ``positive_lon``.
    """
    count = maps[COUNT]
    cov = maps[COVERAGE] if COVERAGE in maps else xr.ones_like(count, dtype=np.int8)
    if time_step(maps) < DAY:
        count = count.where(cov == 1, 0).resample({TIME: "1D"}).sum()
        cov = cov.resample({TIME: "1D"}).max()
    obs = cov == 1
    pos = (count >= 1) & obs
    observed = obs.sum((LAT, LON))
    return xr.Dataset(
        {
            "observed": observed,
            "positive": pos.sum((LAT, LON)),
            "strikes": count.where(obs, 0).sum((LAT, LON)).where(observed > 0),
            "observed_lon": obs.sum(LAT),
            "positive_lon": pos.sum(LAT),
        }
    )


def lag_correlation(
    share: np.ndarray, dlon: float, max_deg: float = 25.0
) -> tuple[np.ndarray, np.ndarray] | None:
    """How a Hovmöller field ``share`` (T, X) moves from one step to the next.

    The field is removed of its time mean per longitude (fixed geography) and of its mean per step
    (domain-wide swings); returns the shifts in degrees of longitude (S,), east positive, and the
    correlation (S,) of each step's anomalies with the next step's shifted by that much. None when
    the field is too short, too narrow or without variation.
    """
    k = min(int(max_deg / dlon), share.shape[1] // 3)
    if share.shape[0] < 3 or k < 2 or not np.isfinite(share).any():
        return None
    valid = np.isfinite(share)
    a = np.where(valid, share, 0.0)
    a = np.where(valid, a - a.sum(0) / np.maximum(valid.sum(0), 1), 0.0)
    a = a - a.mean(1, keepdims=True)
    shifts = np.arange(-k, k + 1)
    corr = np.array([_lag_corr(a, int(s)) for s in shifts])
    return (shifts * dlon, corr) if np.isfinite(corr).any() else None


def zonal_speed(share: np.ndarray, dlon: float, max_deg: float = 25.0) -> float | None:
    """Apparent zonal speed of a Hovmöller field (T, X), degrees of longitude per step, east > 0.

    The shift of the peak of :func:`lag_correlation`, refined by a parabola through the peak.
    """
    profile = lag_correlation(share, dlon, max_deg)
    if profile is None:
        return None
    shifts, corr = profile
    i = int(np.nanargmax(corr))
    if 0 < i < len(shifts) - 1 and np.isfinite(corr[i - 1 : i + 2]).all():
        c0, c1, c2 = corr[i - 1 : i + 2]
        denom = c0 - 2 * c1 + c2
        return float(shifts[i] + (0.5 * (c0 - c2) / denom * dlon if denom < 0 else 0.0))
    return float(shifts[i])


def travelling_window(share: np.ndarray, dlon: float, days: int = HOVMOLLER_DAYS) -> slice:
    """The ``days`` consecutive steps of ``share`` (T, X) whose patterns travel most coherently.

    Windows every ``days // 6`` steps are ranked by the peak of their :func:`lag_correlation`, so
    the Hovmöller diagram shows the season of travelling systems (in the US the cool season and
    spring; summer air-mass storms barely move). The whole record when it is not longer.
    """
    n = share.shape[0]
    if n <= days:
        return slice(0, n)
    starts = sorted({*range(0, n - days + 1, max(1, days // 6)), n - days})
    peaks = [_peak(lag_correlation(share[s : s + days], dlon)) for s in starts]
    best = starts[int(np.argmax(peaks))]
    return slice(best, best + days)


def _peak(profile: tuple[np.ndarray, np.ndarray] | None) -> float:
    return -np.inf if profile is None else float(np.nanmax(profile[1]))


def _lag_corr(a: np.ndarray, shift: int) -> float:
    """Correlation of ``a[t, x]`` (T, X) with ``a[t + 1, x + shift]`` over the overlap."""
    n = a.shape[1]
    x = a[:-1, max(0, -shift) : n - max(0, shift)]
    y = a[1:, max(0, shift) : n - max(0, -shift)]
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / den) if den > 0 else np.nan


# --------------------------------------------------------------------------------------------
# panels


def _lon_label(lon: float, _=None) -> str:
    return f"{abs(lon):g}°{'W' if lon < 0 else 'E' if lon > 0 else ''}"


def _draw_base_rate(ax, clim: xr.Dataset, window: slice, step_words: str) -> None:
    """(a) daily base rate (thin) and monthly pooled base rate (steps), Hovmöller period shaded."""
    days = pd.DatetimeIndex(clim[TIME].values)
    rate = (clim["positive"] / clim["observed"].where(clim["observed"] > 0)).values
    marker = "." if len(days) <= 60 else None
    ax.plot(days, rate, color="0.55", lw=0.6, marker=marker, label=f"each {step_words}")
    monthly = clim[["positive", "observed"]].resample({TIME: "MS"}).sum()
    m_rate = (monthly["positive"] / monthly["observed"].where(monthly["observed"] > 0)).values
    starts = pd.DatetimeIndex(monthly[TIME].values)
    # month edges, clipped to the record so that partial months end where the data end
    edges = np.clip(
        starts.append(pd.DatetimeIndex([starts[-1] + pd.offsets.MonthBegin(1)])).values,
        days[0].to_datetime64(),
        (days[-1] + DAY).to_datetime64(),
    )
    ax.stairs(m_rate, edges, baseline=None, color="tab:red", lw=2, label="monthly")
    if len(starts) <= 14:
        _label_months(ax, edges, m_rate)
    mean = float(clim["positive"].sum() / max(int(clim["observed"].sum()), 1))
    label = f"mean of all {len(days)} days: {100 * mean:.1f} %"
    ax.axhline(mean, color="k", lw=0.8, ls="--", label=label)
    if window.stop - window.start < len(days):
        ax.axvspan(
            days[window][0],
            days[window][-1] + DAY,
            color="tab:blue",
            alpha=0.08,
            label="Hovmöller period (b)",
        )
    ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    ax.set_ylim(0, max(np.nanmax(rate) if np.isfinite(rate).any() else 0, 0.01) * 1.12)
    # minticks 3: a 4-year record gets yearly ticks (with the default 5, no month interval fits)
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=8))
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(ax.xaxis.get_major_locator()))
    ax.set_ylabel("cells with >= 1 strike")
    ax.set_title("(a) base rate: share of observed cells with lightning", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.85)


def _label_months(ax, edges: np.ndarray, rate: np.ndarray) -> None:
    """Write each month's base rate in percent above its step."""
    box = {"fc": "white", "ec": "none", "alpha": 0.7, "pad": 0.3}
    for t0, t1, r in zip(edges[:-1], edges[1:], rate, strict=True):
        if np.isfinite(r):
            text = f"{100 * r:.{0 if r >= 0.1 else 1}f}"
            ax.annotate(
                text,
                (t0 + (t1 - t0) / 2, r),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
                color="tab:red",
                bbox=box,
            )


def _draw_hovmoller(
    ax, fig, clim: xr.Dataset, share: np.ndarray, window: slice, *, cell: str, lat: np.ndarray
) -> None:
    """(b) ``share`` (T, X) of cells with strikes over latitude, time (down) vs longitude."""
    part = share[window]
    lon = clim[LON].values
    days = pd.DatetimeIndex(clim[TIME].values[window])
    t_edges = days.append(pd.DatetimeIndex([days[-1] + DAY]))
    vmax = max(float(np.nanpercentile(part, 99)) if np.isfinite(part).any() else 0, 0.01)
    mesh = ax.pcolormesh(_edges(lon), t_edges, part, cmap=COUNT_CMAP, vmin=0, vmax=vmax)
    ax.set_ylim(t_edges[-1], t_edges[0])  # time runs down: eastward motion slants down-right
    ax.yaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=12))
    ax.yaxis.set_major_formatter(mdates.DateFormatter("%d %b %Y"))
    ax.xaxis.set_major_formatter(FuncFormatter(_lon_label))
    ax.set_xlabel("longitude")
    ax.set_ylabel("date (UTC day)")
    cb = fig.colorbar(mesh, ax=ax, shrink=0.8, pad=0.02, extend="max")
    cb.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
    cb.set_label(f"share of {cell}s with >= 1 strike, averaged over latitude")
    which = "all" if len(days) == clim.sizes[TIME] else "the"
    why = "" if which == "all" else " whose patterns travel most coherently"
    speed = zonal_speed(part, _spacing(lon))
    ax.set_title(
        f"(b) Hovmöller, {which} {len(days)} days{why}\n"
        f"streaks slanting down-right move east{_motion_note(speed, lat)}",
        fontsize=9,
    )


def _spacing(lon: np.ndarray) -> float:
    return float(abs(lon[1] - lon[0])) if lon.size > 1 else 1.0


def _motion_note(speed: float | None, lat: np.ndarray) -> str:
    """``: apparent motion 7.0° lon/day east (~7.2 m/s)`` at the domain's middle latitude."""
    if speed is None:
        return ""
    ms = abs(speed) * KM_PER_DEG * np.cos(np.deg2rad(lat.mean())) * 1000 / 86400
    way = "east" if speed >= 0 else "west"
    return f"; apparent motion {abs(speed):.1f}° lon/day {way} (~{ms:.{int(ms < 10)}f} m/s)"


def _draw_daily_totals(ax, clim: xr.Dataset) -> None:
    """(c) daily domain totals ranked from the most active day, log scale, with a tail summary."""
    totals = clim["strikes"].values
    totals = np.sort(totals[np.isfinite(totals)])[::-1]
    if not (totals > 0).any():
        ax.set_title("(c) daily strike totals: no strikes on observed days", fontsize=9)
        return
    rank = np.arange(1, totals.size + 1)
    ax.plot(rank, np.where(totals > 0, totals, np.nan), color="k", lw=1.2)
    ax.set_yscale("log")
    mean, med = float(totals.mean()), float(np.median(totals))
    ax.axhline(mean, color="tab:red", lw=0.8, ls="--", label=f"mean {mean:,.0f}")
    ax.axhline(med, color="tab:blue", lw=0.8, ls=":", label=f"median {med:,.0f}")
    top = max(1, int(round(0.1 * totals.size)))
    share_top = float(totals[:top].sum() / totals.sum()) if totals.sum() > 0 else 0.0
    quiet = int((totals < 0.1 * mean).sum())
    none = int((totals == 0).sum())
    ax.text(
        0.98,
        0.97,
        f"the most active 10 % of days bring {100 * share_top:.0f} % of the strikes\n"
        f"{quiet} of {totals.size} days below a tenth of the mean"
        + (f"\n{none} days without any strike (not on the log axis)" if none else ""),
        transform=ax.transAxes,
        ha="right",
        va="top",
        fontsize=7,
        bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "0.8"},
    )
    ax.set_xlabel("days ranked from the most active (1)")
    ax.set_ylabel("strikes per day in the domain")
    ax.set_title("(c) daily strike totals, ranked: heavy tail of very active days", fontsize=9)
    ax.legend(fontsize=7, loc="lower left")


# --------------------------------------------------------------------------------------------
# figure


def climate_figure(maps: xr.Dataset) -> Figure:
    """Seasonal cycle of the base rate, Hovmöller diagram and ranked daily totals of a maps file.

    Parameters
    ----------
    maps : Dataset with ``strike_count(time, lat, lon)`` and optionally ``coverage`` (1 observed);
        steps shorter than a day are summed to UTC days.
    """
    clim = daily_climate(maps)
    step = max(time_step(maps), DAY)
    step_words = "day" if step == DAY else f"{int(step / DAY)}-day step"
    share = (clim["positive_lon"] / clim["observed_lon"].where(clim["observed_lon"] > 0)).values
    window = travelling_window(share, _spacing(clim[LON].values))
    cell = _cell_label(maps)
    fig = Figure(figsize=(13, 8.2), layout="constrained")
    axes = fig.subplot_mosaic([["a", "b"], ["c", "b"]], width_ratios=[1.15, 1])
    _draw_base_rate(axes["a"], clim, window, step_words)
    _draw_hovmoller(axes["b"], fig, clim, share, window, cell=cell, lat=maps[LAT].values)
    _draw_daily_totals(axes["c"], clim)
    days = pd.DatetimeIndex(clim[TIME].values)
    fig.suptitle(
        f"Lightning climate of the maps on grid {maps.attrs.get('grid', '')} "
        f"({maps.sizes[LAT]} x {maps.sizes[LON]} cells of {cell.removesuffix(' cell')}), "
        f"{len(days)} days {days[0]:%Y-%m-%d} to {days[-1]:%Y-%m-%d}",
        fontsize=10,
    )
    return fig
