"""The fused scoring kernels (numba): one batch of forecasts -> every streaming state in two passes.

The numpy path (:meth:`forecast.metrics.suite.MethodState.add` with ``kernel="numpy"``) reads each
batch a dozen times per state; these kernels read it once or twice and give the same bits:

- :func:`pixel_pass`, lead by lead: histogram counts (all days, per day, contingency
  thresholds), the per-bin sums of forecast probabilities and the per-day Brier sums, added in
  the order the numpy path adds them (element order, one running sum per bin / day).
- :func:`map_pass` and :func:`window_pass`, init by init, one lead at a time: each case's log-loss
  term, then per window size its forecast and observed fractions from integral images (exact
  integer window counts), their squared difference and sum of squares into buffers (one window
  size at a time, so they stay in cache), and the neighbourhood hits, misses and false alarms.

Buffers are summed by ``np.sum`` in the caller, on the same values in the same order as the numpy
path, so the sums are those of ``np.sum`` there. Same IEEE operations, no fast-math: the logs are
the C library's, as numpy's are where it has no vector log of its own. Arrays are
``(N inits, L leads, H*W)``; a case is a masked cell, and masked forecasts are finite.

Imported lazily by :mod:`forecast.metrics.suite`, which falls back to numpy when numba is absent.
Compiled once per machine: ``cache=True`` keeps the machine code in ``__pycache__``. The kernels
run on the calling thread without the GIL (``nogil``): :func:`forecast.evaluation.scoring.stream`
scores the methods of a batch on a thread each, which needs no barrier inside a batch (a
``prange`` per pass measured 2.7 times slower than one thread on two cores shared with other
work).
"""

from __future__ import annotations

import math

import numba
import numpy as np

from forecast.metrics.probabilistic import LOG_EPS

LOG_HI = 1 - LOG_EPS
PACK = np.int64(2**32)  # yes counts above, event counts below, in one integral image
LOW = np.int64(2**32 - 1)


@numba.njit(inline="always")
def _bin(p, n_bins):  # pragma: no cover
    """:func:`forecast.metrics.probabilistic.bin_index` of one finite probability."""
    b = np.int64(np.floor(p * (n_bins - 1)))
    return min(max(b, 0), n_bins - 1)


def below_bins(thresholds: np.ndarray, n_bins: int) -> np.ndarray:
    """How many of the ascending ``thresholds`` lie at or below bin ``b - 1``'s lower edge, for
    each bin ``b`` (B,) int64: all of them are <= any probability of bin ``b`` (0 for bin 0)."""
    edges = (np.arange(n_bins) - 1) / (n_bins - 1)
    out = np.searchsorted(thresholds, edges, side="right").astype(np.int64)
    out[0] = 0
    return out


def ambiguous_bins(thresholds: np.ndarray, n_bins: int) -> np.ndarray:
    """Bins (B,) bool in which probabilities may lie on either side of a threshold: a threshold
    above bin ``b - 1``'s lower edge and at or below bin ``b + 2``'s, and the two end bins (which
    hold every value below 0 / above 1). Every probability of any other bin ``b`` has
    ``below_bins(..)[b]`` thresholds at or below it."""
    edges = (np.arange(n_bins) + 2) / (n_bins - 1)
    out = np.searchsorted(thresholds, edges, side="right") != below_bins(thresholds, n_bins)
    out[0] = out[-1] = True
    return out


@numba.njit(inline="always")
def _n_le(thresholds, below, b, p):  # pragma: no cover
    """How many of the ascending ``thresholds`` are <= p (``searchsorted(.., side="right")``),
    counting on from the ``below[b]`` known to be, p being in bin ``b``."""
    j = below[b]
    while j < thresholds.size and thresholds[j] <= p:
        j += 1
    return j


@numba.njit(cache=True, nogil=True, error_model="numpy")
def pixel_pass(prob, obs, mask, day, lead_thr, cat_thr, bins, hists, daily):  # pragma: no cover
    """Per-cell histograms and order-sensitive sums of one batch; integer counts added in place.

    ``prob`` float32, ``obs`` and ``mask`` bool (N, L, HW); ``day`` int64 (N,) day index;
    ``lead_thr`` (L,) CSI thresholds; ``cat_thr`` (K,) ascending contingency thresholds and
    ``bins`` their (:func:`below_bins`, :func:`ambiguous_bins`): the contingency counts of a
    case come from its bin, except in ambiguous bins (one counter per case would make every
    case wait for the previous one's increment: most land in the same few counters).
    Counts added in place: ``hists`` = (negatives, positives) int64 (L, B) per bin; ``daily`` =
    (negatives, positives (D, L, B), table (D, L, 3) hits / false alarms / misses, cases (D, L)).

    Returns ``prob_sum`` (L, B), ``daily_brier`` (D, L), ``n_le`` int64 (L, 2, K+1) (cases by
    event and number of thresholds <= p) and ``table`` int64 (L, 3) the batch's hits, false
    alarms and misses at ``lead_thr``.
    """
    n, n_leads, hw = prob.shape
    below, ambiguous = bins
    neg, pos = hists
    d_neg, d_pos, daily_table, n_cases = daily
    n_bins, n_days = neg.shape[1], d_neg.shape[0]
    prob_sum = np.zeros((n_leads, n_bins))
    daily_brier = np.zeros((n_days, n_leads))
    n_le = np.zeros((n_leads, 2, cat_thr.size + 1), dtype=np.int64)
    table = np.zeros((n_leads, 3), dtype=np.int64)
    for lead in range(n_leads):
        t = lead_thr[lead]
        local = np.zeros((2, n_bins), dtype=np.int64)  # non-events / events per bin
        for i in range(n):
            d = day[i]
            for c in range(hw):
                if not mask[i, lead, c]:
                    continue
                p = np.float64(prob[i, lead, c])
                o = np.int64(obs[i, lead, c])
                b = _bin(p, n_bins)
                local[o, b] += 1
                if o:
                    d_pos[d, lead, b] += 1
                else:
                    d_neg[d, lead, b] += 1
                prob_sum[lead, b] += p
                e = p - o
                e2 = e * e
                daily_brier[d, lead] += e2
                n_cases[d, lead] += 1
                if ambiguous[b]:
                    n_le[lead, o, _n_le(cat_thr, below, b, p)] += 1
                yes = p >= t
                if yes or o:
                    j = 0 if (yes and o) else (1 if yes else 2)
                    daily_table[d, lead, j] += 1
                    table[lead, j] += 1
        for b in range(n_bins):
            neg[lead, b] += local[0, b]
            pos[lead, b] += local[1, b]
            if not ambiguous[b]:
                n_le[lead, 0, below[b]] += local[0, b]
                n_le[lead, 1, below[b]] += local[1, b]
    return prob_sum, daily_brier, n_le, table


@numba.njit(inline="always")
def _integral(x, h, w):  # pragma: no cover
    """Integral image (H+1, W+1) of the map ``x`` (H*W,): sums of rows < y, cols < x."""
    out = np.zeros((h + 1, w + 1), dtype=x.dtype)
    for r in range(h):
        run = 0
        for c in range(w):
            run += x[r * w + c]
            out[r + 1, c + 1] = out[r, c + 1] + run
    return out


@numba.njit(inline="always")
def _box(integral, r0, r1, c0, c1):  # pragma: no cover
    return integral[r1, c1] - integral[r0, c1] - integral[r1, c0] + integral[r0, c0]


@numba.njit(cache=True, nogil=True, error_model="numpy")
def map_pass(prob, obs, mask, lead, offset, thr, shape):  # pragma: no cover
    """Log-loss terms and the 0/1 maps of lead ``lead``: ``prob`` float32, ``obs``, ``mask`` bool
    (N, L, HW); ``offset`` int64 (N+1,) first case of each init; ``thr`` the CSI threshold;
    ``shape`` (H, W).

    Returns ``sq_err`` and ``log_term`` (C,), the squared errors and log-loss terms of the C
    cases, ``maps`` int32 (N, 3, HW) = yes (p >= thr),
    observed and event cells, and integral images ``integrals`` int64 (N, 2, H+1, W+1) of
    ``yes * 2**32 + event`` (two counts in one sum: no carry, a map has < 2**31 cells) and of
    the observed cells.
    """
    n, hw = prob.shape[0], prob.shape[2]
    h, w = shape[0], shape[1]
    sq_err, log_term = np.empty(offset[n]), np.empty(offset[n])
    maps = np.zeros((n, 3, hw), dtype=np.int32)
    integrals = np.empty((n, 2, h + 1, w + 1), dtype=np.int64)
    for i in range(n):
        k = offset[i]
        for c in range(hw):
            if mask[i, lead, c]:
                p, o = np.float64(prob[i, lead, c]), obs[i, lead, c]
                pc = min(max(p, LOG_EPS), LOG_HI)
                log_term[k] = math.log(pc) if o else math.log1p(-pc)
                sq_err[k] = (p - o) * (p - o)
                k += 1
                maps[i, 0, c], maps[i, 1, c], maps[i, 2, c] = p >= thr, 1, o
        integrals[i, 0] = _integral(maps[i, 0].astype(np.int64) * PACK + maps[i, 2], h, w)
        integrals[i, 1] = _integral(maps[i, 1], h, w)
    return sq_err, log_term, maps, integrals


@numba.njit(cache=True, nogil=True, error_model="numpy")
def window_pass(maps, integrals, offset, scale):  # pragma: no cover
    """Window fractions of one lead at one window size ``scale`` from :func:`map_pass`'s maps
    and integral images; ``offset`` int64 (N+1,) first case of each init.

    Returns ``sq_diff``, ``sq_sum`` (C,) per case and ``counts`` int64 (3,) hits, misses, false
    alarms. Windows span ``-((n-1)//2) .. n//2`` cells, zero outside.
    """
    n = maps.shape[0]
    h, w = integrals.shape[2] - 1, integrals.shape[3] - 1
    sq_diff, sq_sum = np.empty(offset[n]), np.empty(offset[n])
    counts = np.zeros(3, dtype=np.int64)
    for i in range(n):
        _windows(maps[i], integrals[i], h, w, scale, offset[i], sq_diff, sq_sum, counts)
    return sq_diff, sq_sum, counts


@numba.njit(inline="always")
def _windows(maps, integrals, h, w, scale, k, diff, total, counts):  # pragma: no cover
    """Fractions of one window size around the observed cells of one map (see window_pass)."""
    yes, seen, event = maps[0], maps[1], maps[2]
    i_packed, i_seen = integrals[0], integrals[1]
    lo, hi = (scale - 1) // 2, scale // 2
    hits, misses, false_alarms = 0, 0, 0
    for r in range(h):
        r0, r1 = max(r - lo, 0), min(r + hi + 1, h)
        for c in range(w):
            if not seen[r * w + c]:
                continue
            c0, c1 = max(c - lo, 0), min(c + hi + 1, w)
            packed = _box(i_packed, r0, r1, c0, c1)
            a, b = packed >> 32, packed & LOW
            if a == 0 and b == 0:  # no yes, no strike in the window: 0 / n is +0.0
                diff[k], total[k] = 0.0, 0.0
            else:
                n_obs = _box(i_seen, r0, r1, c0, c1)
                ff, fo = a / n_obs, b / n_obs
                # products, not ``** 2`` (a call to pow): numpy squares by multiplying
                diff[k], total[k] = (ff - fo) * (ff - fo), ff * ff + fo * fo
            k += 1
            hit = event[r * w + c] and a > 0
            hits += hit
            misses += event[r * w + c] and not hit
            false_alarms += yes[r * w + c] and b == 0
    counts[0] += hits
    counts[1] += misses
    counts[2] += false_alarms


@numba.njit(cache=True, nogil=True, error_model="numpy")
def contingency_pass(prob, obs, mask, cat_thr, below):  # pragma: no cover
    """Cases of one batch by event and number of thresholds <= p: int64 (L, 2, K+1).

    ``prob`` float32, ``obs`` and ``mask`` bool (N, L, HW); ``cat_thr`` (K,) ascending and
    ``below`` (B,) their :func:`below_bins` on B probability bins.
    """
    n, n_leads, hw = prob.shape
    n_bins = below.size
    n_le = np.zeros((n_leads, 2, cat_thr.size + 1), dtype=np.int64)
    for i in range(n):
        for lead in range(n_leads):
            for c in range(hw):
                if mask[i, lead, c]:
                    p = np.float64(prob[i, lead, c])
                    n_le[
                        lead, np.int64(obs[i, lead, c]), _n_le(cat_thr, below, _bin(p, n_bins), p)
                    ] += 1
    return n_le
