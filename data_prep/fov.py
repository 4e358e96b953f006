"""Where a geostationary lightning imager sees: cells of the grid inside its field of view.

GOES GLM L2 LCFA granules state their field of view: its centre (``lat_field_of_view``,
``lon_field_of_view``: the sub-satellite point) and its north/south extent
(``lat_field_of_view_bounds``: +/- 66.56 degrees in the GOES-16, -17 and -18 granules of
2018-2023, +/- 57.6 in a GOES-19 one of 2025). A cell whose centre is farther from the centre
than that extent, in great-circle arc, is outside the field of view: no data, never an observed
zero. The stated extent is the arc a ray 8.4 degrees off nadir spans from geostationary orbit
(arcsin(42164.16 / 6378.137 * sin 8.4 deg) - 8.4 deg = 66.55 deg on a sphere of the GRS80
equatorial radius), a little wider than the lens' nominal +/- 8 degrees (a 16-degree field of
view: GOES-R Series Data Book, NOAA/NASA 2019, pp. 57 and 225; 58.93 degrees of arc) and than
glmtools' minimum specification (the intersection of a 15.59-degree circle and a 14.81-degree
square in scan angle: 51.0 to 55.9 degrees of arc); the real footprint is such a rounded square,
and a circle is its one-number summary. The shipped sample holds good-quality flashes up to 63.0
degrees from the centre (GOES-16 over the Canary Islands and Alberta), so neither nominal figure
is used: ``prep.glm_fov_radius_deg`` overrides the stated extent (e.g. 51 for the disk the
minimum specification guarantees everywhere).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from data_prep.schema import Grid

GLM_STATED_RADIUS_DEG = 66.56  # the extent GOES-16 to -18 granules state; for granules without


@dataclass(frozen=True)
class FieldOfView:
    """Where an instrument sees: points within ``radius_deg`` of great-circle arc of the centre
    (``lat``, ``lon`` degrees; a geostationary imager's sub-satellite point)."""

    lat: float
    lon: float
    radius_deg: float

    def contains(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Which points (``lat``, ``lon`` broadcast together, degrees) lie inside (bool)."""
        return great_circle_deg(self.lat, self.lon, lat, lon) <= self.radius_deg


def great_circle_deg(lat0: float, lon0: float, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Great-circle arc (degrees) from (``lat0``, ``lon0``) to each point (haversine formula)."""
    p0, p = np.radians(lat0), np.radians(lat)
    dlat, dlon = p - p0, np.radians(np.asarray(lon) - lon0)
    h = np.sin(dlat / 2) ** 2 + np.cos(p0) * np.cos(p) * np.sin(dlon / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))


def grid_mask(fov: FieldOfView, grid: Grid) -> np.ndarray:
    """Cells (H*W,) bool whose centre ``fov`` contains (row-major, like the maps' cells)."""
    lat, lon = np.meshgrid(grid.lat, grid.lon, indexing="ij")  # (H, W) each
    return fov.contains(lat, lon).ravel()


def fov_coverage(
    fov_spans: dict[FieldOfView, list[tuple[int, int]]],
    grid: Grid,
    filled: Callable[[list[tuple[int, int]]], np.ndarray],
    n_steps: int,
) -> np.ndarray:
    """Observed cells (S, H*W) bool of granules seen only inside their field of view.

    ``fov_spans`` maps each field of view to its granules' ``(t0, t1)`` ns intervals;
    ``filled(spans)`` says which of the ``n_steps`` steps (S,) the union of ``spans`` covers
    enough. A cell is observed in a step when the granules of the fields of view holding it
    fill the step together: cells are grouped by the set of fields of view holding them, so
    two satellites' granules add up where their views overlap, and a cell outside every field
    of view is never observed.
    """
    out = np.zeros((n_steps, grid.nlat * grid.nlon), dtype=bool)
    if not fov_spans:
        return out
    fovs = list(fov_spans)
    inside = np.stack([grid_mask(f, grid) for f in fovs])  # (F, H*W)
    combos, cell_combo = np.unique(inside, axis=1, return_inverse=True)  # (F, C), (H*W,)
    cell_combo = cell_combo.reshape(-1)
    for c in range(combos.shape[1]):
        spans = [
            s for f, held in zip(fovs, combos[:, c], strict=True) if held for s in fov_spans[f]
        ]
        if spans:
            out[np.ix_(filled(spans), cell_combo == c)] = True
    return out
