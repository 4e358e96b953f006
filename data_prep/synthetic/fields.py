"""Fixed geography and seasonal cycle of the synthetic world: smooth functions of lat, lon and date.

Every function here is deterministic; the random parts of the world live in
:mod:`data_prep.synthetic.dynamics`. Rates are per square degree per day.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Favoured regions: (lat, lon, sigma_lat, sigma_lon, weight, what it imitates). Storm births are
# proportional to the sum of these bumps on top of a background, as thunderstorm days in the US
# climatology peak over Florida and the Gulf coast (sea breezes, Gulf moisture), the high plains
# (upslope flow, dry line), the southern Rockies (monsoon and orographic storms) and the
# Mississippi/Ohio valleys, and fade toward the Pacific coast and the open Atlantic.
FAVOURED = (
    (27.8, -81.4, 1.6, 1.4, 1.00, "Florida peninsula"),
    (30.3, -89.5, 1.8, 6.5, 0.80, "Gulf coast"),
    (38.5, -101.5, 5.0, 2.8, 0.75, "high plains"),
    (34.5, -107.5, 3.5, 2.8, 0.60, "southern Rockies, monsoon highlands"),
    (38.5, -91.0, 5.0, 6.5, 0.60, "Mississippi and Ohio valleys"),
    (33.5, -84.0, 3.0, 4.0, 0.50, "southeast"),
    (44.5, -96.0, 3.0, 5.0, 0.40, "northern plains"),
)
BACKGROUND = 0.15  # favourability far from every favoured region


def favourability(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Static storm favourability in [0, 1] at points (broadcast shapes of ``lat`` and ``lon``)."""
    lat, lon = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lon, float))
    f = np.full(lat.shape, BACKGROUND)
    for y0, x0, sy, sx, w, _ in FAVOURED:
        f = f + w * np.exp(-0.5 * (((lat - y0) / sy) ** 2 + ((lon - x0) / sx) ** 2))
    pacific = _sigmoid((lon + 121.0) / 1.5)  # few storms over and near the cool Pacific
    atlantic = 0.4 + 0.6 * _sigmoid((-70.0 - lon) / 2.0)  # fewer over the open Atlantic
    return np.minimum(f, 1.0) * (0.1 + 0.9 * pacific) * atlantic


def warmth(doy: np.ndarray | float) -> np.ndarray:
    """Seasonal warmth in [0, 1]: 0 in mid-January, 1 in mid-July (the lightning season)."""
    return 0.5 * (1.0 - np.cos(2 * np.pi * (np.asarray(doy, float) - 15.0) / 365.25))


def moisture(lat: np.ndarray, doy: np.ndarray | float, *, extra: float = 0.0) -> np.ndarray:
    """Share of warm, moist air at ``lat`` in [0, 1]: Gulf moisture reaches ~33 N in winter,
    ~47 N in summer.

    ``extra`` pushes the moist edge north (the warm sector of travelling systems).
    """
    edge = 33.0 + 14.0 * warmth(doy) + extra
    return _sigmoid((edge - np.asarray(lat, float)) / 2.0)


def diurnal(utc_hour: float, lon: np.ndarray) -> np.ndarray:
    """Diurnal cycle of storm intensity, mean 1: peak in the late afternoon local solar time."""
    local = utc_hour + np.asarray(lon, float) / 15.0
    return 1.0 + 0.6 * np.cos(2 * np.pi * (local - 17.0) / 24.0)


# The hourly world's diurnal cycle (sub-daily worlds only; daily worlds keep :func:`diurnal`, so
# their records do not change). Over land, heating drives air-mass storms: births peak in the
# early afternoon local solar time and strikes in the late afternoon, with little at night. Over
# the sea the cycle is weak and the storms fewer and weaker, as in lightning climatologies.
BIRTH_PEAK = 2.6  # largest value of diurnal_births (land, 14 h local)
SEA_INTENSITY = 0.5  # strike output of a storm over the sea relative to land, daily mean


def land_share(lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """A smooth land mask of the contiguous US in [0, 1]: the Pacific west of ~124 W, the
    Atlantic east of the coast (~76 W in the north-east, ~80 W off the south-east), the Gulf of
    Mexico south of ~29.5 N between 97.5 W and 82 W, and the sea south of ~25 N."""
    lat, lon = np.broadcast_arrays(np.asarray(lat, float), np.asarray(lon, float))
    coast_east = -80.0 + 0.9 * np.clip(lat - 32.0, 0.0, 10.0)  # the coast turns north-east
    land = _sigmoid((lon + 124.0) / 0.5) * _sigmoid((coast_east - lon) / 0.5)
    gulf = (
        _sigmoid((29.5 - lat) / 0.4) * _sigmoid((lon + 97.5) / 0.4) * _sigmoid((-82.0 - lon) / 0.4)
    )
    return land * (1.0 - gulf) * _sigmoid((lat - 25.0) / 0.4)


def _local_hour(utc_hour: np.ndarray, lon: np.ndarray) -> np.ndarray:
    return (np.asarray(utc_hour, float) + np.asarray(lon, float) / 15.0) % 24.0


def diurnal_births(utc_hour: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Diurnal factor of air-mass storm births, mean 0.86 over a day on land: a peak of 2.6 at 14 h
    local solar time, 0.15 before dawn; over the sea a flat 0.5 (weaker and nearly steady)."""
    phase = 2 * np.pi * (_local_hour(utc_hour, lon) - 14.0) / 24.0
    on_land = np.clip(1.0 + 1.6 * np.cos(phase) + 0.45 * np.cos(2 * phase) - 0.45, 0.15, None)
    share = land_share(lat, lon)
    return share * on_land + (1.0 - share) * 0.5


def diurnal_land_sea(utc_hour: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Diurnal factor of a storm's strike output: over land peak 1.8 at 17 h local solar time,
    0.2 at 5 h; over the sea ``SEA_INTENSITY`` times a weak cycle peaking before dawn."""
    local = _local_hour(utc_hour, lon)
    land = 1.0 + 0.8 * np.cos(2 * np.pi * (local - 17.0) / 24.0)
    sea = SEA_INTENSITY * (1.0 + 0.2 * np.cos(2 * np.pi * (local - 5.0) / 24.0))
    share = land_share(lat, lon)
    return share * land + (1.0 - share) * sea


def steering_speed(doy: np.ndarray | float) -> np.ndarray:
    """Eastward drift of storms not tied to a system, degrees lon per day (weak in summer)."""
    return 6.0 - 3.5 * warmth(doy)


def track_lat(doy: np.ndarray | float) -> np.ndarray:
    """Mean latitude of the storm track of travelling systems: further north in summer."""
    return 34.0 + 9.0 * warmth(doy)


def day_of_year(start: pd.Timestamp, t: np.ndarray | float) -> np.ndarray:
    """Fractional day of year (1 = 1 January 00Z) at ``t`` days after ``start``."""
    return (start.day_of_year + np.asarray(t, float) - 1.0) % 365.25 + 1.0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0)))
