"""Known answers, independent implementations and streaming properties of forecast.metrics."""

from __future__ import annotations

import numpy as np
import pytest

from forecast.metrics import (
    THRESHOLDS,
    ContingencyState,
    DailyState,
    FractionsState,
    ProbabilityState,
    best_threshold,
    box_sum,
    categorical_scores,
    confidence_intervals,
    point_estimates,
    resample_weights,
    skill_score,
)


def _random_case(seed: int = 0, shape=(12, 2, 9, 11)):
    """Probabilities, events drawn from them (calibrated), and a mask with ~10 % unobserved."""
    rng = np.random.default_rng(seed)
    prob = rng.random(shape).astype(np.float32) ** 2
    events = rng.random(shape) < prob
    mask = rng.random(shape) > 0.1
    return prob, events, mask


# --------------------------------------------------------------------------------------------
# categorical


def test_finley_table_reproduces_published_scores():
    # Finley (1884) tornado forecasts, as tabulated by Murphy (1996) and the WWRP/WGNE guide.
    s = categorical_scores(28, 72, 23, 2680)
    expected = {
        "pod": 0.549,
        "far": 0.720,
        "csi": 0.228,
        "ets": 0.216,
        "hss": 0.355,
        "pss": 0.523,
        "frequency_bias": 1.961,
    }
    for name, value in expected.items():
        assert s[name] == pytest.approx(value, abs=5e-4), name


def test_sedi_is_zero_for_random_forecasts_antisymmetric_and_known_on_finley():
    # Ferro & Stephenson (2011): SEDI = 0 when H = F (no skill), SEDI(H, F) = -SEDI(F, H)
    assert categorical_scores(20, 180, 80, 720)["sedi"] == pytest.approx(
        0.0, abs=1e-12
    )  # H = F = 0.2
    s, swapped = (
        categorical_scores(30, 10, 20, 40)["sedi"],
        categorical_scores(10, 30, 40, 20)["sedi"],
    )
    assert s > 0 and swapped == pytest.approx(-s)
    # Finley: H = 28/51, F = 72/2752; logs worked by hand: -3.8134 / -5.0656
    assert categorical_scores(28, 72, 23, 2680)["sedi"] == pytest.approx(0.7528, abs=5e-4)


def test_perfect_table_has_csi_one_and_no_false_alarms():
    s = categorical_scores(10, 0, 0, 90)
    assert s["pod"] == s["csi"] == s["hss"] == s["pss"] == s["ets"] == s["frequency_bias"] == 1
    assert s["far"] == 0


def test_contingency_state_matches_direct_count():
    prob, events, mask = _random_case()
    table = ContingencyState.init(2).add(prob, events, mask).table
    for lead in range(2):
        p, o = prob[:, lead][mask[:, lead]], events[:, lead][mask[:, lead]]
        for k, t in enumerate(THRESHOLDS):
            yes = p >= t
            direct = [np.sum(yes & o), np.sum(yes & ~o), np.sum(~yes & o), np.sum(~yes & ~o)]
            assert table[lead, k].tolist() == direct


def test_best_threshold_is_argmax_of_csi():
    csi = np.array([[0.1, 0.4, 0.2], [np.nan, np.nan, np.nan]])
    assert best_threshold(csi, [0.1, 0.2, 0.3]).tolist() == [0.2, 0.5]


# --------------------------------------------------------------------------------------------
# probabilistic


def test_auc_and_average_precision_match_scikit_learn():
    metrics = pytest.importorskip("sklearn.metrics")
    prob, events, mask = _random_case(1)
    s = ProbabilityState.init(2).add(prob, events, mask).compute()
    for lead in range(2):
        p, o = prob[:, lead][mask[:, lead]], events[:, lead][mask[:, lead]]
        binned = np.floor(p.astype(np.float64) * 1000) / 1000  # ties as the bins make them
        assert s["roc_auc"][lead] == pytest.approx(metrics.roc_auc_score(o, binned), abs=1e-12)
        ap = metrics.average_precision_score(o, binned)
        assert s["average_precision"][lead] == pytest.approx(ap, abs=1e-12)
        # and within bin resolution of the unbinned scores
        assert s["roc_auc"][lead] == pytest.approx(metrics.roc_auc_score(o, p), abs=2e-3)
        assert s["average_precision"][lead] == pytest.approx(
            metrics.average_precision_score(o, p), abs=5e-3
        )


def test_brier_and_log_loss_are_exact_means():
    prob, events, mask = _random_case(2)
    s = ProbabilityState.init(2).add(prob, events, mask).compute()
    for lead in range(2):
        p = prob[:, lead][mask[:, lead]].astype(np.float64)
        o = events[:, lead][mask[:, lead]]
        assert s["brier_score"][lead] == pytest.approx(np.mean((p - o) ** 2), rel=1e-12)
        pc = np.clip(p, 1e-6, 1 - 1e-6)
        ll = -np.mean(o * np.log(pc) + (1 - o) * np.log(1 - pc))
        assert s["log_loss"][lead] == pytest.approx(ll, rel=1e-9)


def test_calibrated_forecast_has_small_ece_and_diagonal_reliability():
    prob, events, mask = _random_case(3, shape=(200, 1, 20, 20))
    s = ProbabilityState.init(1).add(prob, events, mask).compute()
    assert s["ece"][0] < 0.01
    np.testing.assert_allclose(
        s["reliability_observed"][0], s["reliability_forecast"][0], atol=0.02
    )
    assert s["reliability_count"][0].sum() == mask.sum()


def test_max_gap_is_the_worst_reliability_gap_among_bins_with_one_percent_of_cases():
    from forecast.metrics.probabilistic import max_calibration_gap

    forecast = np.array([[0.05, 0.15, 0.25, 0.95]])
    observed = np.array([[0.07, 0.10, 0.45, 0.20]])  # gaps 0.02, 0.05, 0.20, 0.75
    count = np.array([[900.0, 95.0, 5.0, 0.0]])  # the 0.25 bin holds 0.5 % of the cases
    gap = max_calibration_gap(forecast, observed, count, min_share=0.01)
    assert gap[0] == pytest.approx(0.05)
    assert max_calibration_gap(forecast, observed, count, min_share=0.001)[0] == pytest.approx(0.2)
    assert np.isnan(max_calibration_gap(forecast, observed, 0 * count)[0])


def test_perfect_forecast_scores_perfectly():
    _, events, mask = _random_case(4)
    prob = events.astype(np.float32)
    s = ProbabilityState.init(2).add(prob, events, mask).compute()
    assert np.all(s["brier_score"] == 0) and np.all(s["ece"] == 0)
    assert np.all(s["reliability_max_gap"] == 0)
    assert np.all(s["roc_auc"] == 1) and np.all(s["average_precision"] == 1)
    csi = ContingencyState.init(2).add(prob, events, mask).compute()["csi"]
    assert np.all(csi == 1)
    f = FractionsState.init(2, (1, 3, 5)).add(prob, events, mask, np.full(2, 0.5)).compute()
    assert np.all(f["fss"] == 1) and np.all(f["csi_neighbourhood"] == 1)


def test_merge_of_two_halves_equals_one_pass():
    prob, events, mask = _random_case(5)
    day = np.arange(len(prob)) // 3
    thr = np.array([0.3, 0.5])
    a, b = slice(0, 5), slice(5, None)

    def states():
        return (
            ProbabilityState.init(2),
            ContingencyState.init(2),
            FractionsState.init(2, (1, 3)),
            DailyState.init(day.max() + 1, 2),
        )

    def add(st, sl):
        st[0].add(prob[sl], events[sl], mask[sl])
        st[1].add(prob[sl], events[sl], mask[sl])
        st[2].add(prob[sl], events[sl], mask[sl], thr)
        st[3].add(prob[sl], events[sl], mask[sl], day[sl], thr)
        return st

    whole = add(states(), slice(None))
    halves = [x.merge(y) for x, y in zip(add(states(), a), add(states(), b), strict=True)]
    for w, h in zip(whole[:3], halves[:3], strict=True):
        for k, v in w.compute().items():
            np.testing.assert_allclose(h.compute()[k], v, rtol=1e-12, err_msg=k)
    for name in ("brier", "n", "positives", "negatives", "table"):
        np.testing.assert_allclose(getattr(halves[3], name), getattr(whole[3], name), rtol=1e-12)


# --------------------------------------------------------------------------------------------
# spatial


def test_box_sum_matches_loops():
    x = np.random.default_rng(6).random((2, 7, 8))
    for n in (1, 2, 3, 4):
        out = box_sum(x, n)
        lo, hi = (n - 1) // 2, n // 2
        for i in range(7):
            for j in range(8):
                window = x[:, max(i - lo, 0) : i + hi + 1, max(j - lo, 0) : j + hi + 1]
                np.testing.assert_allclose(out[:, i, j], window.sum((1, 2)))


def _brute_force_fss(yes, obs, mask, n):
    """Direct loops over pixels: fractions over the observed cells of each window."""
    num = den = 0.0
    h = (n - 1) // 2
    for t in range(yes.shape[0]):
        for i in range(yes.shape[1]):
            for j in range(yes.shape[2]):
                if not mask[t, i, j]:
                    continue
                win = (t, slice(max(i - h, 0), i + h + 1), slice(max(j - h, 0), j + h + 1))
                m = mask[win]
                ff, fo = yes[win][m].mean(), obs[win][m].mean()
                num += (ff - fo) ** 2
                den += ff**2 + fo**2
    return 1 - num / den


def test_fss_matches_brute_force():
    prob, events, mask = _random_case(7, shape=(3, 1, 8, 9))
    thr = np.array([0.4])
    f = FractionsState.init(1, (1, 3, 5)).add(prob, events, mask, thr).compute()["fss"]
    yes, obs, m = (prob[:, 0] >= 0.4) & mask[:, 0], events[:, 0] & mask[:, 0], mask[:, 0]
    for s, n in enumerate((1, 3, 5)):
        assert f[0, s] == pytest.approx(_brute_force_fss(yes, obs, m, n), rel=1e-10)


def test_neighbourhood_csi_at_scale_one_is_csi_and_grows_with_scale():
    prob, events, mask = _random_case(8)
    thr = np.array([0.5, 0.5])
    f = FractionsState.init(2, (1, 3, 5)).add(prob, events, mask, thr).compute()
    table = ContingencyState.init(2, [0.5]).add(prob, events, mask).compute()
    np.testing.assert_allclose(f["csi_neighbourhood"][:, 0], table["csi"][:, 0])
    assert np.all(np.diff(f["csi_neighbourhood"], axis=1) >= 0)


def test_displaced_forecast_gains_fss_with_scale():
    obs = np.zeros((1, 1, 20, 20), dtype=bool)
    obs[0, 0, 8:11, 8:11] = True
    prob = np.roll(obs, 2, axis=-1).astype(np.float32)  # right shape, 2 px off
    mask = np.ones_like(obs)
    f = FractionsState.init(1, (1, 3, 5, 9)).add(prob, obs, mask, np.array([0.5])).compute()
    assert f["csi_neighbourhood"][0, 0] < 0.5 and f["csi_neighbourhood"][0, 2] == 1
    assert np.all(np.diff(f["fss"][0]) > 0)


# --------------------------------------------------------------------------------------------
# bootstrap


def test_bootstrap_interval_brackets_the_estimate_and_is_seeded():
    prob, events, mask = _random_case(9, shape=(30, 1, 6, 6))
    day = np.arange(30)
    thr = np.array([0.3])
    state = DailyState.init(30, 1).add(prob, events, mask, day, thr)
    ref = DailyState.init(30, 1).add(np.full_like(prob, events.mean()), events, mask, day, thr)
    ci = confidence_intervals(state, ref, n_resamples=200, seed=1)
    again = confidence_intervals(state, ref, n_resamples=200, seed=1)
    full = ProbabilityState.init(1, 101).add(prob, events, mask).compute()["roc_auc"][0]
    lo, hi = ci["roc_auc"]
    assert lo[0] < full < hi[0]
    for name in ci:
        np.testing.assert_array_equal(ci[name][0], again[name][0])
    nan = confidence_intervals(state, ref, n_resamples=0, seed=1)["csi"][0]
    assert np.isnan(nan).all()


def test_block_length_one_is_the_iid_bootstrap_of_days():
    rng = np.random.default_rng(7)  # the i.i.d. draws of days, as before blocks existed
    iid = np.stack([np.bincount(r, minlength=25) for r in rng.integers(0, 25, size=(50, 25))])
    np.testing.assert_array_equal(resample_weights(25, 50, seed=7, block=1), iid)


@pytest.mark.parametrize("block", [1, 7, 30])
def test_moving_blocks_draw_every_day_once_on_average(block):
    w = resample_weights(30, 4000, seed=0, block=block)
    assert w.shape == (4000, 30) and np.all(w.sum(axis=1) == 30)
    # circular blocks: the first and last days are drawn as often as the middle ones
    np.testing.assert_allclose(w.mean(axis=0), 1.0, atol=0.08)


def _regime_days(n_days: int = 120, run: int = 12, seed: int = 0) -> tuple[DailyState, DailyState]:
    """Per-day states of a forecast good on runs of ``run`` days and poor on others (one lead),
    and a constant reference: strongly autocorrelated daily scores."""
    good = np.repeat(np.random.default_rng(seed).random(n_days // run) < 0.5, run)[:, None]
    n = np.full((n_days, 1), 100)
    pos, neg = np.zeros((n_days, 1, 11), np.int64), np.zeros((n_days, 1, 11), np.int64)
    pos[:, 0, 5], neg[:, 0, 5] = np.where(good[:, 0], 0, 10), np.where(good[:, 0], 0, 90)
    pos[:, 0, 8], neg[:, 0, 2] = np.where(good[:, 0], 10, 0), np.where(good[:, 0], 90, 0)
    table = np.where(good[..., None], [8, 2, 2], [2, 5, 5])  # (D, 1, 3) hits, false alarms, misses
    state = DailyState(np.where(good, 5.0, 20.0), n, pos, neg, table)
    ref = DailyState(np.full((n_days, 1), 15.0), n, pos, neg, table)
    return state, ref


def test_blocks_widen_the_interval_of_autocorrelated_days():
    state, ref = _regime_days()

    def width(block):
        ci = confidence_intervals(state, ref, n_resamples=400, seed=0, block=block)
        return {k: float(hi[0] - lo[0]) for k, (lo, hi) in ci.items()}

    iid, blocks = width(1), width(12)
    for name in ("brier_skill_score", "roc_auc", "csi"):
        assert blocks[name] > 1.8 * iid[name], (name, iid[name], blocks[name])


def test_point_estimate_is_the_bootstrap_state_with_every_day_drawn_once():
    prob, events, mask = _random_case(4, shape=(20, 2, 6, 7))
    day, thr = np.arange(20) // 2, np.array([0.3, 0.5])
    clim = np.full_like(prob, 0.3)
    daily = DailyState.init(10, 2, 1001).add(prob, events, mask, day, thr)
    ref = DailyState.init(10, 2, 1001).add(clim, events, mask, day, thr)
    est = point_estimates(daily, ref)
    whole = ProbabilityState.init(2, 1001).add(prob, events, mask).compute()
    whole_ref = ProbabilityState.init(2, 1001).add(clim, events, mask).compute()
    np.testing.assert_array_equal(est["roc_auc"], whole["roc_auc"])  # the same 1001 bins
    csi = ContingencyState.init(2).add(prob, events, mask).compute()["csi"]
    np.testing.assert_array_equal(est["csi"], csi[[0, 1], np.searchsorted(THRESHOLDS, thr)])
    bss = skill_score(whole["brier_score"], whole_ref["brier_score"])
    np.testing.assert_allclose(est["brier_skill_score"], bss, rtol=1e-12)
    ci = confidence_intervals(daily, ref, n_resamples=200, seed=0, block=3)
    for name, (lo, hi) in ci.items():
        assert np.all(lo <= est[name]) and np.all(est[name] <= hi), name
