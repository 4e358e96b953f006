"""Domain-wide storm motion from successive lightning maps, and advection along it.

Phase correlation: for maps ``a`` then ``b`` (zero-padded to twice their size so nothing wraps
round), the normalised cross-power spectrum ``B conj(A) / |B conj(A)|`` transforms back to a sharp
peak at the displacement of ``b`` relative to ``a``. A parabola through the peak and its neighbours
gives sub-pixel precision. Displacements of successive pairs are averaged into one velocity
(pixels per step); pairs where either map is empty are skipped.
"""

from __future__ import annotations

import numpy as np


def phase_correlation(fields: np.ndarray, *, max_shift: int) -> np.ndarray:
    """Displacement ``(dy, dx)`` of each map relative to the one before: (T, H, W) -> (T-1, 2).

    Only displacements of at most ``max_shift`` pixels along each axis are considered. Rows are
    NaN where either map of the pair is empty.
    """
    t, h, w = fields.shape
    size = (2 * h, 2 * w)
    spec = np.fft.rfft2(fields, size)  # (T, 2H, W+1)
    cross = spec[1:] * np.conj(spec[:-1])
    r = np.fft.irfft2(cross / (np.abs(cross) + 1e-12), size)  # (T-1, 2H, 2W), peak at the shift
    dy, dx = np.meshgrid(_signed(2 * h), _signed(2 * w), indexing="ij")
    r[:, (np.abs(dy) > max_shift) | (np.abs(dx) > max_shift)] = -np.inf
    out = np.full((t - 1, 2), np.nan)
    empty = ~np.any(fields.reshape(t, -1), axis=1)
    for k in np.flatnonzero(~(empty[1:] | empty[:-1])):
        iy, ix = np.unravel_index(np.argmax(r[k]), r[k].shape)
        sub_y = _parabola(r[k, iy - 1, ix], r[k, iy, ix], r[k, (iy + 1) % (2 * h), ix])
        sub_x = _parabola(r[k, iy, ix - 1], r[k, iy, ix], r[k, iy, (ix + 1) % (2 * w)])
        out[k] = dy[iy, ix] + sub_y, dx[iy, ix] + sub_x
    return out


def _signed(n: int) -> np.ndarray:
    """FFT index -> signed displacement: 0, 1, ..., n/2 - 1, -n/2, ..., -1."""
    k = np.arange(n)
    return np.where(k < n // 2, k, k - n)


def _parabola(left: float, centre: float, right: float) -> float:
    """Offset of the vertex of the parabola through three points, in [-0.5, 0.5]."""
    if not (np.isfinite(left) and np.isfinite(right)):
        return 0.0
    curve = left - 2 * centre + right
    return float(np.clip((left - right) / (2 * curve), -0.5, 0.5)) if curve < 0 else 0.0


def estimate_motion(fields: np.ndarray, *, max_shift: int = 8) -> np.ndarray:
    """Mean displacement per step ``(dy, dx)`` over successive maps ``fields`` (T, H, W).

    Zero when no pair of successive maps both hold strikes.
    """
    if len(fields) < 2:
        return np.zeros(2)
    return mean_motion(phase_correlation(np.asarray(fields, dtype=np.float64), max_shift=max_shift))


def mean_motion(shifts: np.ndarray) -> np.ndarray:
    """Mean ``(dy, dx)`` of the pair shifts (P, 2) found (finite); zero when none is."""
    shifts = np.asarray(shifts, dtype=np.float64).reshape(-1, 2)
    shifts = shifts[np.isfinite(shifts[:, 0])]
    return shifts.mean(axis=0) if len(shifts) else np.zeros(2)


def shift(field: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``out[y, x] = field[y - dy, x - dx]`` for whole pixels, zero where that lies outside."""
    h, w = field.shape
    out = np.zeros_like(field)
    if abs(dy) >= h or abs(dx) >= w:
        return out
    out[max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = field[
        max(-dy, 0) : h + min(-dy, 0), max(-dx, 0) : w + min(-dx, 0)
    ]
    return out


def advect(field: np.ndarray, displacements: np.ndarray) -> np.ndarray:
    """``field`` (H, W) moved by each ``(dy, dx)`` of ``displacements`` (L, 2): (L, H, W).

    Fractional displacements interpolate bilinearly between whole-pixel shifts; what moves in
    from beyond the domain edge is zero.
    """
    out = np.zeros((len(displacements),) + field.shape)
    for k, (dy, dx) in enumerate(np.asarray(displacements, dtype=np.float64)):
        y0, x0 = int(np.floor(dy)), int(np.floor(dx))
        fy, fx = dy - y0, dx - x0
        for oy, wy in ((0, 1 - fy), (1, fy)):
            for ox, wx in ((0, 1 - fx), (1, fx)):
                if wy * wx > 0:
                    out[k] += wy * wx * shift(field, y0 + oy, x0 + ox)
    return out
