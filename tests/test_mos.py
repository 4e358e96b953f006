"""MOS: logistic regression on guidance, fitted on the training split, scored like the rest."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import xarray as xr

from data_prep.errors import UserError
from data_prep.io import write_netcdf_atomic
from data_prep.mock import mock_maps
from data_prep.sequences import build_index
from forecast.config import ExperimentConfig, load_experiment
from forecast.evaluation import evaluate_to_files
from forecast.evaluation.baselines import build_baseline, observations, training_steps
from forecast.evaluation.mos import (
    RIDGE,
    build_mos,
    design,
    fit_lead,
    guided_baselines,
    mos_left_out,
    mos_training_inits,
    out_of_fold,
    training_rows,
)
from forecast.evaluation.scorecard import method_order

N_STEPS, SHAPE, LEADS = 360, (10, 12), (1, 2, 3)


def _probability(seed: int = 5, fixed_weight: float = 1.2) -> np.ndarray:
    """Daily occurrence probability (T, H, W): a fixed pattern (what a climatology can learn)
    and a smooth random field per day (what only guidance knows)."""
    rng = np.random.default_rng(seed)
    daily, fixed = _smooth(rng, N_STEPS), _smooth(rng, 1)
    return 1 / (1 + np.exp(-(-1.5 + fixed_weight * fixed + 1.6 * daily)))


def _smooth(rng, n: int) -> np.ndarray:
    """(n, H, W) standardised 5 x 5 box sums of white noise."""
    noise = rng.normal(size=(n, SHAPE[0] + 4, SHAPE[1] + 4))
    out = sum(noise[:, i : i + SHAPE[0], j : j + SHAPE[1]] for i in range(5) for j in range(5))
    return out / out.std()


@pytest.fixture(scope="module")
def world():
    """Maps whose strikes are drawn from a known probability, and that probability."""
    return _world(_probability())


def _world(prob: np.ndarray):
    maps = mock_maps(n_steps=N_STEPS, shape=SHAPE, seed=1)
    strikes = np.random.default_rng(6).random(prob.shape) < prob
    maps["strike_count"].values[:] = strikes.astype(np.int32)
    maps["coverage"].values[:] = 1
    return maps, prob


def _guidance(maps: xr.Dataset, fields: dict[str, np.ndarray], leads=LEADS) -> xr.Dataset:
    """Forecasts issued at the end of each day for leads 1..3 days; ``fields`` give each field's
    value for every map step (T, H, W): the forecast issued on day i holds day i + k at lead k."""
    times = maps.time.values
    lead = np.array([np.timedelta64(k, "D") for k in leads], "timedelta64[ns]")
    out = {}
    for name, per_step in fields.items():
        v = np.full((times.size, len(leads)) + SHAPE, np.nan, np.float32)
        for c, k in enumerate(leads):
            v[: times.size - k, c] = per_step[k:]
        out[name] = (("init_time", "lead_time", "lat", "lon"), v)
    coords = {"init_time": times + np.timedelta64(1, "D"), "lead_time": lead}
    return xr.Dataset(out, coords={**coords, "lat": maps.lat.values, "lon": maps.lon.values})


def _cfg() -> ExperimentConfig:
    cfg = ExperimentConfig()
    cfg.data.block_steps = 28
    cfg.eval.bootstrap = 0
    return cfg


def _write(g: xr.Dataset, path) -> str:
    write_netcdf_atomic(g, path)
    return str(path)


def _fit(maps, fields: dict, path):
    cfg = _cfg()
    index = build_index(maps, cfg.data)
    return build_mos(maps, index, cfg.eval, _write(_guidance(maps, fields), path)), index


def _bss(prob: np.ndarray, clim: np.ndarray, events: np.ndarray, seen: np.ndarray) -> float:
    return 1 - np.mean((prob - events)[seen] ** 2) / np.mean((clim - events)[seen] ** 2)


def _test_scores(maps, index, mos, truth):
    inits = index.inits("test")
    events, seen = observations(maps, inits, len(LEADS))
    clim = mos.climatology.forecast(maps, inits)
    perfect = np.stack([truth[inits + k] for k in LEADS], axis=1)  # (N, L, H, W)
    return _bss(mos.forecast(maps, inits), clim, events, seen), _bss(perfect, clim, events, seen)


def test_exact_occurrence_probability_as_guidance_gives_near_perfect_skill(world, tmp_path):
    maps, prob = world
    mos, index = _fit(maps, {"lightning_probability": prob}, tmp_path / "g.nc")
    got, perfect = _test_scores(maps, index, mos, prob)
    assert perfect > 0.3  # the guidance is worth having
    # linear in log1p(p), not in logit(p): the link costs a little of the perfect skill
    assert got > 0.9 * perfect, (got, perfect)


def test_noise_as_guidance_gives_the_climatology_skill(world, tmp_path):
    maps, prob = world
    noise = np.random.default_rng(9).gamma(2.0, size=prob.shape)
    mos, index = _fit(maps, {"cape": noise}, tmp_path / "g.nc")
    got, _ = _test_scores(maps, index, mos, prob)
    assert abs(got) < 0.01, got


def test_the_climatology_term_is_fitted_out_of_fold(tmp_path):
    # no fixed pattern: the climatology's cell-to-cell differences are noise on new days; fitted
    # on the very days MOS is regressed on, they would look real (in-sample: weight 2 on its
    # logit, Brier skill -0.03 against the climatology)
    maps, prob = _world(_probability(fixed_weight=0.0))
    noise = np.random.default_rng(9).gamma(2.0, size=prob.shape)
    mos, index = _fit(maps, {"cape": noise}, tmp_path / "g.nc")
    got, _ = _test_scores(maps, index, mos, prob)
    assert got > -0.01, got
    assert all(f.coef[3] < 1.5 for f in mos.fits)  # the weight on the climatology's logit


def _two_fields(prob: np.ndarray) -> dict:
    """A useful field with a few lost values, and a weak noisy one."""
    rng = np.random.default_rng(4)
    cape = 1000 * prob * rng.gamma(4.0, 0.25, size=prob.shape)
    cape[rng.random(prob.shape) < 0.1] = np.nan
    return {"cape": cape, "shear": prob + rng.normal(0, 0.5, size=prob.shape)}


@pytest.fixture(scope="module")
def two(world, tmp_path_factory):
    """MOS on two fields, one with lost values, and its window index."""
    maps, prob = world
    return _fit(maps, _two_fields(prob), tmp_path_factory.mktemp("mos") / "g.nc")


def _own_copy(mos):
    """``mos`` with guidance values of its own, to alter without touching the fixture."""
    values = mos.guidance.values.copy()
    return dataclasses.replace(mos, guidance=dataclasses.replace(mos.guidance, values=values))


def test_coefficients_match_scikit_learn_with_the_same_penalty(world, two):
    from sklearn.linear_model import LogisticRegression  # an independent reference

    maps, _ = world
    mos, index = two
    folds = out_of_fold(maps, training_steps(maps, index), len(LEADS))
    rows = training_rows(maps, mos_training_inits(index), mos.guidance, folds, len(LEADS), 0)
    for k, r in enumerate(rows):
        fit = fit_lead(r)
        np.testing.assert_array_equal(fit.coef, mos.fits[k].coef)
        assert fit.log.tolist() == [True, False] and r.raw.shape[1] == 2
        x = design(fit, r.raw, r.clim, r.pos)
        ref = LogisticRegression(
            C=1 / (RIDGE * len(r.y)), solver="newton-cholesky", tol=1e-12, max_iter=1000
        ).fit(x[:, 1:], r.y)
        want = np.concatenate([ref.intercept_, ref.coef_[0]])
        np.testing.assert_allclose(fit.coef, want, atol=1e-6, rtol=0)


def test_fitted_on_the_training_split_only(world, two, tmp_path):
    maps, prob = world
    fields = _two_fields(prob)
    mos, index = two
    rng = np.random.default_rng(11)
    # every step outside the training windows gets new strikes, every forecast issued on a day
    # that is not a training init new values
    other = maps.copy(deep=True)
    off = ~training_steps(maps, index)
    other["strike_count"].values[off] = rng.integers(0, 3, size=(off.sum(),) + SHAPE)
    g = _guidance(maps, fields)
    issued_off = np.setdiff1d(np.arange(N_STEPS), index.inits("train"))
    for name in g.data_vars:
        g[name].values[issued_off] = rng.gamma(2.0, size=g[name].values[issued_off].shape)
    again = build_mos(other, index, _cfg().eval, _write(g, tmp_path / "b.nc"))
    for a, b in zip(mos.fits, again.fits, strict=True):
        np.testing.assert_array_equal(a.coef, b.coef)
        np.testing.assert_array_equal(a.mean, b.mean)


def test_a_forecast_issued_after_the_init_is_not_seen(world, two):
    maps, _ = world
    mos, index = _own_copy(two[0]), two[1]
    init = int(index.inits("test")[5])
    before = mos.forecast(maps, np.array([init]))
    values = mos.guidance.values  # (F, init_time, lead_time, H, W): issue i ends day i
    values[:, init + 1 :] = np.random.default_rng(2).gamma(2.0, size=values[:, init + 1 :].shape)
    np.testing.assert_array_equal(mos.forecast(maps, np.array([init])), before)
    values[:, init] += 5.0  # the forecast issued by the init is seen
    assert not np.array_equal(mos.forecast(maps, np.array([init])), before)


def test_missing_guidance_gets_the_fallback_never_a_value_from_zero(world, two):
    maps, _ = world
    mos, index = _own_copy(two[0]), two[1]
    init = np.array([int(index.inits("test")[3])])
    values = mos.guidance.values  # (F, init_time, lead_time, H, W); lead 1 of issue init
    values[:, init[0], 0, :2, :2] = np.nan  # no guidance at all
    values[0, init[0], 0, 5:7, 5:7] = np.nan  # cape lost, shear there
    got = mos.forecast(maps, init)[0, 0]
    clim = mos.climatology.forecast(maps, init)[0, 0]
    np.testing.assert_array_equal(got[:2, :2], clim[:2, :2])
    assert np.isfinite(got).all()
    values[0, init[0], 0, 5:7, 5:7] = 0.0  # the same cells read as a zero
    zero = mos.forecast(maps, init)[0, 0]
    assert (np.abs(zero[5:7, 5:7] - got[5:7, 5:7]) > 1e-3).all()
    np.testing.assert_array_equal(zero[:5], got[:5])  # other cells untouched


def test_a_lead_no_forecast_reaches_gets_the_climatology(world, tmp_path):
    maps, prob = world
    cfg = _cfg()
    index = build_index(maps, cfg.data)
    path = _write(_guidance(maps, {"p": prob}, leads=(1, 2)), tmp_path / "g.nc")
    mos = build_mos(maps, index, cfg.eval, path)
    inits = index.inits("test")[:4]
    got, clim = mos.forecast(maps, inits), mos.climatology.forecast(maps, inits)
    assert mos.fits[2] is None
    np.testing.assert_array_equal(got[:, 2], clim[:, 2])
    assert not np.array_equal(got[:, 0], clim[:, 0])


def test_evaluate_with_guidance_scores_mos_beside_the_others(world, tmp_path):
    maps, prob = world
    write_netcdf_atomic(maps, tmp_path / "maps.nc")
    path = _write(_guidance(maps, {"lightning_probability": prob}), tmp_path / "g.nc")
    cfg = load_experiment(
        None, [f"data.guidance={path}", "data.block_steps=28", "eval.bootstrap=0"]
    )
    cfg.eval.baselines = ("persistence", "climatology", "mos")
    out, card = evaluate_to_files(
        cfg, maps=tmp_path / "maps.nc", out=tmp_path / "scores.nc", checkpoint=None,
        forecasts={}, baselines=True, device="cpu",
    )  # fmt: skip
    with xr.open_dataset(out) as scores:
        names = scores["forecast"].values.tolist()
        assert "mos" in names
        bss = scores["brier_skill_score"].sel(forecast="mos").values
    assert (bss > 0.3).all(), bss
    assert method_order(names) == ["mos", "persistence", "climatology"]
    assert "| mos |" in card.read_text()
    cfg.data.guidance, cfg.eval.baselines = "", ExperimentConfig().eval.baselines
    with pytest.warns(UserWarning, match="mos: not scored, no guidance"):
        evaluate_to_files(
            cfg, maps=tmp_path / "maps.nc", out=tmp_path / "plain.nc", checkpoint=None,
            forecasts={}, baselines=True, device="cpu",
        )  # fmt: skip
    with xr.open_dataset(tmp_path / "plain.nc") as scores:
        assert "mos" not in scores["forecast"].values.tolist()


def test_mos_without_guidance_is_left_out_by_default_and_refused_when_asked(world):
    cfg = _cfg()
    assert "mos" not in guided_baselines(cfg)
    assert mos_left_out(cfg) == "mos: not scored, no guidance (set data.guidance=GUIDANCE.nc)"
    cfg.eval.baselines = ("climatology", "mos")
    with pytest.raises(UserError, match="'mos' needs guidance; set data.guidance"):
        guided_baselines(cfg)
    cfg.data.guidance = "g.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert guided_baselines(cfg) == ["climatology", "mos"] and not mos_left_out(cfg)


def test_climatology_baseline_is_the_one_mos_starts_from(world, tmp_path):
    maps, prob = world
    mos, index = _fit(maps, {"p": prob}, tmp_path / "g.nc")
    inits = index.inits("test")[:4]
    clim = build_baseline("climatology", maps, index, _cfg().eval)
    np.testing.assert_array_equal(mos.climatology.forecast(maps, inits), clim.forecast(maps, inits))


def test_training_rows_are_a_seeded_sample_bounded_in_size(world, two, monkeypatch):
    import forecast.evaluation.mos as mos_module

    maps, _ = world
    mos, index = two
    monkeypatch.setattr(mos_module, "MAX_ROWS", 2000)
    folds = out_of_fold(maps, training_steps(maps, index), len(LEADS))
    inits = mos_training_inits(index)
    a, b = (training_rows(maps, inits, mos.guidance, folds, len(LEADS), 0) for _ in range(2))
    for ra, rb in zip(a, b, strict=True):
        assert 1500 < ra.y.size < 2300
        np.testing.assert_array_equal(ra.raw, rb.raw)
        np.testing.assert_array_equal(ra.y, rb.y)
