"""Every state of one method from one batch in two fused passes (:mod:`forecast.metrics.kernel`).

:func:`add_fused` adds a batch to the probability, contingency, fractions and per-day states at
once and leaves them as the states' own ``add`` methods would, bit for bit: integer counts are
exact in any order, and every floating-point sum runs over the same values in the same order
(``np.sum`` over a buffer of the per-case terms, or one running sum per bin / day in element
order). :func:`scoring_kernel` is None without numba; the states' ``add`` methods then score.
"""

from __future__ import annotations

import numpy as np


def scoring_kernel():
    """The module :mod:`forecast.metrics.kernel`, or None when numba is not installed."""
    try:
        from forecast.metrics import kernel  # numba, compiled on first use: optional
    except ImportError:
        return None
    return kernel


def add_fused(state, prob, obs, mask, day) -> None:
    """Add ``prob`` float (N, L, H, W) against ``obs`` where ``mask`` (bool, same shape), init
    days ``day`` int (N,), to ``state`` (a :class:`forecast.metrics.suite.MethodState`); in place.
    Masked forecasts must be finite."""
    kernel = scoring_kernel()
    n, n_leads, h, w = prob.shape
    p = np.ascontiguousarray(prob, dtype=np.float32).reshape(n, n_leads, h * w)
    o = np.ascontiguousarray(obs, dtype=bool).reshape(p.shape)
    m = np.ascontiguousarray(mask, dtype=bool).reshape(p.shape)
    day = np.ascontiguousarray(day, dtype=np.int64)
    pr, daily, table = state.prob, state.daily, state.table
    lead_thr = np.ascontiguousarray(state.thresholds, dtype=np.float64)
    cat_thr = np.ascontiguousarray(table.thresholds, dtype=np.float64)
    prob_sum, daily_brier, n_le, yes_table = kernel.pixel_pass(
        p,
        o,
        m,
        day,
        lead_thr,
        cat_thr,
        _threshold_bins(kernel, cat_thr, pr.positives.shape[1]),
        (pr.negatives, pr.positives),
        (daily.negatives, daily.positives, daily.table, daily.n),
    )
    pr.prob_sum += prob_sum
    daily.brier += daily_brier
    per_init = np.count_nonzero(m, axis=-1)  # (N, L) cases
    for lead in range(n_leads):
        table.table[lead] += _contingency(n_le[lead])
        _add_cells(state.fractions, lead, yes_table[lead])
        _add_windows(state, kernel, lead, (p, o, m), per_init, (h, w))


def _threshold_bins(kernel, thresholds: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    return kernel.below_bins(thresholds, n_bins), kernel.ambiguous_bins(thresholds, n_bins)


def add_contingency(state, prob, obs, mask) -> None:
    """Add ``prob`` float (N, L, H, W) against ``obs`` where ``mask`` to ``state`` (a
    :class:`forecast.metrics.categorical.ContingencyState`) in one pass; in place."""
    kernel = scoring_kernel()
    n, n_leads = prob.shape[:2]
    p = np.ascontiguousarray(prob, dtype=np.float32).reshape(n, n_leads, -1)
    o = np.ascontiguousarray(obs, dtype=bool).reshape(p.shape)
    m = np.ascontiguousarray(mask, dtype=bool).reshape(p.shape)
    thr = np.ascontiguousarray(state.thresholds, dtype=np.float64)
    # any bin width gives the same counts (bins only skip thresholds surely below p)
    n_le = kernel.contingency_pass(p, o, m, thr, kernel.below_bins(thr, 1001))
    for lead in range(n_leads):
        state.table[lead] += _contingency(n_le[lead])


def _contingency(n_le: np.ndarray) -> np.ndarray:
    """Table (K, 4) = a, b, c, d from cases counted by event (2, K+1) and thresholds <= p."""
    hits = np.cumsum(n_le[1][::-1])[::-1][1:]
    false_alarms = np.cumsum(n_le[0][::-1])[::-1][1:]
    n_pos, n_neg = int(n_le[1].sum()), int(n_le[0].sum())
    return np.stack([hits, false_alarms, n_pos - hits, n_neg - false_alarms], -1)


def _add_cells(fr, lead: int, table: np.ndarray) -> None:
    """Window sizes of one cell (n <= 1) from the hits, false alarms and misses of one lead:
    fractions are 0 or 1, so their squares sum to whole numbers, exactly in any order."""
    hits, false_alarms, misses = (int(x) for x in table)
    for s in np.flatnonzero(fr.scales <= 1):
        fr.sq_diff[lead, s] += float(false_alarms + misses)
        fr.sq_sum[lead, s] += float(2 * hits + false_alarms + misses)
        fr.counts[lead, s] += [hits, misses, false_alarms]


def _add_windows(state, kernel, lead: int, maps, per_init: np.ndarray, shape) -> None:
    """Brier and log loss sums and the fractions of windows wider than a cell, of one lead;
    ``maps`` = (prob, obs, mask) (N, L, HW), contiguous."""
    offset = np.concatenate([[0], np.cumsum(per_init[:, lead])]).astype(np.int64)
    sq_err, log_term, yes_seen_event, integrals = kernel.map_pass(
        *maps,
        lead,
        offset,
        float(state.thresholds[lead]),
        np.asarray(shape, dtype=np.int64),
    )
    state.prob.brier_sum[lead] += np.sum(sq_err)
    state.prob.log_loss_sum[lead] -= np.sum(log_term)
    fr = state.fractions
    for s in np.flatnonzero(fr.scales > 1):
        sq_diff, sq_sum, counts = kernel.window_pass(
            yes_seen_event, integrals, offset, int(fr.scales[s])
        )
        fr.sq_diff[lead, s] += np.sum(sq_diff)
        fr.sq_sum[lead, s] += np.sum(sq_sum)
        fr.counts[lead, s] += counts
