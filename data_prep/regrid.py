"""Regular lat-lon fields onto the maps' grid: separable weights, missing values kept missing.

Each axis gets a weight matrix ``(n_target, n_source)``, chosen by comparing cell sizes:

- **conservative** where the source cells are finer than the target's (or as fine): a target cell
  takes the share of it each source cell overlaps, measured in ``sin(lat)`` along latitude (so
  area-weighted, cos-lat) and in degrees along longitude;
- **bilinear** where the source cells are coarser: a target cell takes linear weights of the two
  source centres around its centre (the nearest one alone between the outermost centre and the
  source's edge).

The 2-D weight of source cell ``(k, l)`` in target cell ``(i, j)`` is ``wy[i, k] * wx[j, l]``, so
regridding is two matrix products. A target value is the weighted mean of its non-NaN source
parts; its *coverage* is the weight of those parts (1 when observed source cells cover it all,
less where values are NaN or the source grid ends). Where coverage is below
:data:`MIN_COVERAGE` the value is NaN: missing, never zero.

Longitudes are periodic: the source is laid out three times (``-360``, ``0``, ``+360``) before the
weights are taken, so 0..360 and -180..180 sources land the same on a grid of either convention,
and a global source wraps across the seam. A repeated cyclic column (both 0 and 360) counts once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data_prep.errors import UserError

MIN_COVERAGE = 0.5  # a target cell needs at least this share observed, else it is NaN
SPACING_RTOL = 1e-3  # centres this close to evenly spaced (relative to the step) are regular
FINER_RTOL = 1e-6  # a source step within this of the target's counts as "as fine"
COVER_EPS = 1e-9  # coverage rounding: exactly half observed counts as half


@dataclass(frozen=True)
class AxisWeights:
    """Weights of one axis: ``matrix`` (n_target, n_source) and how they were made."""

    matrix: np.ndarray  # (n_target, n_source) float64, rows sum to the share covered (<= 1)
    method: str  # "conservative" or "bilinear"

    @property
    def used(self) -> np.ndarray:
        """Indices of the source cells that weigh in some target cell, ascending."""
        return np.flatnonzero(self.matrix.any(axis=0))


def regular_step(centres: np.ndarray, name: str, where: str) -> float:
    """The spacing of cell ``centres`` (1-D, any order, no repeats); UserError if uneven."""
    c = np.sort(np.asarray(centres, np.float64))
    if c.size < 2:
        raise UserError(
            f"{where}: {name} has {c.size} value(s); a grid needs at least 2 cells along {name}"
        )
    d = np.diff(c)
    step = float(np.median(d))
    if step <= 0 or np.abs(d - step).max() > SPACING_RTOL * step:
        raise UserError(
            f"{where}: {name} is not evenly spaced (steps from {d.min():g} to {d.max():g} "
            f"degrees); the grid is not regular: bring it onto a regular lat-lon grid first "
            f"(e.g. `cdo remapbil`)"
        )
    return step


def lat_weights(source: np.ndarray, target: np.ndarray, where: str = "source") -> AxisWeights:
    """Weights from source latitudes (any order) to the regular, ascending ``target`` centres."""
    source = np.asarray(source, np.float64)
    order = np.argsort(source)
    step = regular_step(source, "lat", where)
    return _axis(source[order], order, source.size, target, step, lat=True)


def lon_weights(source: np.ndarray, target: np.ndarray, where: str = "source") -> AxisWeights:
    """Weights from source longitudes (any order, 0..360 or -180..180) to ``target`` centres."""
    source = np.asarray(source, np.float64)
    wrapped = np.round(np.mod(source, 360.0), 9)
    _, first = np.unique(wrapped, return_index=True)  # a cyclic repeat (0 and 360) counts once
    keep = np.sort(first)
    tiled = np.concatenate([source[keep] - 360.0, source[keep], source[keep] + 360.0])
    columns = np.tile(keep, 3)
    order = np.argsort(tiled, kind="stable")
    step = _lon_step(wrapped[keep], where)
    return _axis(tiled[order], columns[order], source.size, target, step, lat=False)


def _lon_step(wrapped: np.ndarray, where: str) -> float:
    """The spacing of longitudes ``wrapped`` into [0, 360): regular along the circle but for
    one gap (the part of the globe the grid leaves out), wherever that gap falls."""
    c = np.sort(wrapped)
    gaps = np.diff(np.concatenate([c, c[:1] + 360.0]))
    if c.size > 2 and gaps.max() > gaps.min() * (1 + SPACING_RTOL):  # not global: open the gap
        start = (int(gaps.argmax()) + 1) % c.size
        c = np.concatenate([c[start:], c[:start] + 360.0])
    return regular_step(c, "lon", where)


def _axis(centres, columns, n_source, target, s_step, *, lat) -> AxisWeights:
    """Weights on ascending ``centres`` (source column ``columns[k]``), summed per column."""
    target = np.asarray(target, np.float64)
    t_step = regular_step(target, "lat" if lat else "lon", "maps")
    if s_step <= t_step * (1 + FINER_RTOL):
        w, method = _overlap(centres, s_step, target, t_step, lat=lat), "conservative"
    else:
        w, method = _linear(centres, s_step, target), "bilinear"
    matrix = np.zeros((target.size, n_source))
    np.add.at(matrix, (slice(None), columns), w)
    return AxisWeights(matrix, method)


def _overlap(centres, s_step, target, t_step, *, lat) -> np.ndarray:
    """(n_target, n_centres): the share of each target cell that each source cell covers."""
    lo, hi = centres - s_step / 2, centres + s_step / 2  # source edges
    a, b = target - t_step / 2, target + t_step / 2  # target edges
    measure = (lambda x: np.sin(np.radians(np.clip(x, -90.0, 90.0)))) if lat else (lambda x: x)
    top = measure(np.minimum(hi[None, :], b[:, None]))
    bottom = measure(np.maximum(lo[None, :], a[:, None]))
    return np.maximum(top - bottom, 0.0) / (measure(b) - measure(a))[:, None]


def _linear(centres, s_step, target) -> np.ndarray:
    """(n_target, n_centres): linear weights of the centres around each target centre; the
    nearest alone where its neighbour is missing (an edge or a gap); none outside the cells."""
    w = np.zeros((target.size, centres.size))
    rows = np.arange(target.size)
    k = np.clip(np.searchsorted(centres, target, side="right") - 1, 0, centres.size - 2)
    left, right = centres[k], centres[k + 1]
    pair = np.abs((right - left) - s_step) <= SPACING_RTOL * s_step  # adjacent centres
    inside = pair & (target >= left) & (target <= right)
    f = np.where(inside, (target - left) / (right - left), 0.0)
    w[rows[inside], k[inside]] = 1.0 - f[inside]
    w[rows[inside], k[inside] + 1] += f[inside]
    near = np.abs(centres[None, :] - target[:, None]).argmin(axis=1)
    alone = ~inside & (np.abs(centres[near] - target) <= s_step / 2 * (1 + FINER_RTOL))
    w[rows[alone], near[alone]] = 1.0
    return w


@dataclass(frozen=True)
class Regridder:
    """Separable weights from a source grid to the maps' grid, cropped to the source cells used.

    ``lat_index`` and ``lon_index`` are the source rows and columns that weigh in (read only
    those); :meth:`__call__` takes fields cropped to them.
    """

    wy: np.ndarray  # (n_target_lat, len(lat_index))
    wx: np.ndarray  # (n_target_lon, len(lon_index))
    lat_index: np.ndarray
    lon_index: np.ndarray
    methods: tuple[str, str]  # (along lat, along lon)

    @classmethod
    def build(cls, src_lat, src_lon, lat, lon, where: str = "source") -> Regridder:
        """From source centres ``src_lat``, ``src_lon`` to the maps' centres ``lat``, ``lon``."""
        y, x = lat_weights(src_lat, lat, where), lon_weights(src_lon, lon, where)
        iy, ix = y.used, x.used
        return cls(y.matrix[:, iy], x.matrix[:, ix], iy, ix, (y.method, x.method))

    @property
    def covers_any(self) -> bool:
        """Whether some target cell gets source weight at all."""
        return bool(self.lat_index.size and self.lon_index.size)

    def __call__(self, field: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Regrid ``field`` (..., len(lat_index), len(lon_index)).

        Returns ``(values, coverage)``, both (..., n_target_lat, n_target_lon) float32: values
        NaN where coverage (the observed share of the cell) is below :data:`MIN_COVERAGE`.
        """
        field = np.asarray(field, np.float64)
        seen = np.isfinite(field)
        num = self.wy @ np.where(seen, field, 0.0) @ self.wx.T  # (..., Ty, Tx)
        cover = self.wy @ seen.astype(np.float64) @ self.wx.T
        with np.errstate(invalid="ignore", divide="ignore"):
            values = num / cover
        values[cover < MIN_COVERAGE - COVER_EPS] = np.nan
        return values.astype(np.float32), np.clip(cover, 0.0, 1.0).astype(np.float32)
