"""Calibration: temperature and platt known answers, isotonic monotone map, reliability, safe state."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from data_prep.errors import UserError
from forecast.training.calibration import (
    Calibrator,
    LogitHistogram,
    _isotonic_table,
    fit_calibration,
    fit_platt,
    reliability,
)

DAY = pd.Timedelta("1D")  # the maps' time step


def _overconfident(n=200_000, temperature=2.0, shift=0.0, seed=0, mean=0.0):
    """True logits z, outcomes drawn from sigmoid(z), forecast logits temperature * z + shift."""
    rng = np.random.default_rng(seed)
    z = rng.normal(mean, 2.0, size=n)
    y = rng.random(n) < 1 / (1 + np.exp(-z))
    hist = LogitHistogram(1, 1)
    as5d = lambda a: torch.tensor(a, dtype=torch.float32).view(1, 1, 1, 1, n)  # noqa: E731
    hist.add(as5d(temperature * z + shift), as5d(y), torch.ones(1, 1, 1, n))
    return hist


def _max_gap(rel, stage: str, min_share: float = 0.01) -> float:
    """Largest |observed - forecast| over reliability bins holding >= min_share of the cases."""
    r = rel.sel(stage=stage, lead_time="1D", strikes=1)
    share = r["count"] / r["count"].sum()
    gap = np.abs(r["observed_frequency"] - r["forecast_probability"]).where(share >= min_share)
    return float(gap.max())


def test_temperature_of_a_forecast_miscalibrated_by_two_is_recovered():
    cal = fit_calibration(_overconfident(temperature=2.0), "temperature")
    assert cal.temperature.item() == pytest.approx(2.0, rel=0.03)


def test_underconfident_forecast_gets_a_temperature_below_one():
    cal = fit_calibration(_overconfident(temperature=0.5), "temperature")
    assert cal.temperature.item() == pytest.approx(0.5, rel=0.03)


def test_platt_recovers_the_slope_and_offset_of_a_rare_event_forecast():
    # forecast logits f = 1.5 z + 0.8 for true logits z: sigmoid((f - 0.8) / 1.5) is exact
    cal = fit_calibration(_overconfident(temperature=1.5, shift=0.8, mean=-3.0), "platt")
    assert cal.method == "platt"
    assert 1 / cal.temperature.item() == pytest.approx(1 / 1.5, rel=0.03)
    assert cal.offset.item() == pytest.approx(-0.8 / 1.5, abs=0.03)


def test_platt_calibrates_a_shifted_forecast_that_one_temperature_cannot():
    # rare events, over-confident and biased high: T alone leaves a large gap, platt none
    hist = _overconfident(temperature=1.5, shift=0.8, mean=-3.0)
    gap_t = _max_gap(
        reliability(hist, fit_calibration(hist, "temperature"), (1,), DAY), "calibrated"
    )
    gap_p = _max_gap(reliability(hist, fit_calibration(hist, "platt"), (1,), DAY), "calibrated")
    assert gap_p < 0.02 and gap_t > 0.05


def test_reliability_tables_map_each_threshold_on_its_own():
    # P(>=1) is biased high by 2 logits (platt offset about -2), P(>=10) is calibrated as it is:
    # on a shared logit grid the forecasts' monotone clip would wrongly cap P(>=10) by P(>=1)
    rng = np.random.default_rng(1)
    n = 200_000
    z = rng.normal(-2.0, 2.0, size=(2, n))
    y = rng.random((2, n)) < 1 / (1 + np.exp(-z))
    hist = LogitHistogram(1, 2)
    logits = torch.tensor(np.stack([z[0] + 2.0, z[1]]), dtype=torch.float32).view(1, 1, 2, 1, n)
    hist.add(
        logits, torch.tensor(y, dtype=torch.float32).view(1, 1, 2, 1, n), torch.ones(1, 1, 1, n)
    )
    cal = fit_calibration(hist, "platt")
    assert cal.offset[0, 0].item() == pytest.approx(-2.0, abs=0.05)
    rel = reliability(hist, cal, (1, 10), DAY)
    for thr in (1, 10):
        r = rel.sel(stage="calibrated", lead_time="1D", strikes=thr)
        share = r["count"] / r["count"].sum()
        gap = np.abs(r["observed_frequency"] - r["forecast_probability"]).where(share >= 0.01)
        assert float(gap.max()) < 0.02, thr
    grid = torch.linspace(-6, 6, 13).view(1, 1, 1, 1, 13).expand(1, 1, 2, 1, 13).contiguous()
    p = cal.probability(grid)  # forecasts stay ordered: P(>=10) <= P(>=1)
    assert torch.all(p[:, :, 1] <= p[:, :, 0])


def test_platt_slope_at_its_bound_still_fits_the_base_rate():
    # forecasts with no skill (logits unrelated to outcomes) give slope ~0: the offset alone
    # must then reproduce the base rate (the log loss optimum makes mean p equal it)
    rng = np.random.default_rng(2)
    z = rng.normal(0.0, 3.0, size=100_000)
    y = rng.random(100_000) < 0.1
    a, b = fit_platt(z, y.astype(float), (~y).astype(float))
    p = 1 / (1 + np.exp(-(a * z + b)))
    assert a == 0.01 and p.mean() == pytest.approx(y.mean(), rel=2e-4)


def test_platt_without_both_outcomes_is_the_identity():
    hist = LogitHistogram(1, 1)
    hist.add(torch.zeros(1, 1, 1, 2, 2), torch.zeros(1, 1, 1, 2, 2), torch.ones(1, 1, 2, 2))
    cal = fit_calibration(hist, "platt")
    assert cal.temperature.item() == 1.0 and cal.offset.item() == 0.0


def test_isotonic_map_is_monotone_and_lowers_log_loss():
    hist = _overconfident()
    cal = fit_calibration(hist, "isotonic")
    table = cal.table[0, 0].numpy()
    assert np.all(np.diff(table) >= 0) and table.min() > 0 and table.max() < 1
    rel = reliability(hist, cal, (1,), DAY)
    raw, calibrated = rel["log_loss"].sel(stage="raw"), rel["log_loss"].sel(stage="calibrated")
    assert calibrated.item() < raw.item()


@pytest.mark.parametrize("method", ["platt", "temperature"])
def test_reliability_after_scaling_an_overconfident_forecast_lies_on_the_diagonal(method):
    hist = _overconfident()
    rel = reliability(hist, fit_calibration(hist, method), (1,), DAY, n_bins=10)
    assert rel["observed_frequency"].dims == ("stage", "lead_time", "strikes", "bin")
    after = rel.sel(stage="calibrated", lead_time="1D", strikes=1)
    gap = np.abs(after["observed_frequency"] - after["forecast_probability"]).fillna(0)
    assert float((gap * after["count"]).sum() / after["count"].sum()) < 0.01
    assert float(rel["count"].sel(stage="raw").sum()) == pytest.approx(200_000)


def test_masked_cells_are_not_counted():
    hist = LogitHistogram(2, 1)
    logits, target = torch.zeros(3, 2, 1, 4, 5), torch.ones(3, 2, 1, 4, 5)
    mask = torch.zeros(3, 2, 4, 5)
    mask[:, 1, :2] = 1
    hist.add(logits, target, mask)
    assert hist.counts[0].sum() == 0 and hist.counts[1, 0, :, 1].sum() == 3 * 2 * 5


def test_state_survives_a_weights_only_round_trip_and_keeps_thresholds_ordered():
    cal = Calibrator("temperature", torch.tensor([[1.0, 3.0]]))
    buf = io.BytesIO()
    torch.save(cal.to_state(), buf)
    buf.seek(0)
    back = Calibrator.from_state(torch.load(buf, weights_only=True), 1, 2)
    logits = torch.tensor([-2.0, 2.0]).view(1, 1, 2, 1, 1)  # P(>=3) above P(>=1) after scaling
    p = back.probability(logits)
    assert p[0, 0, 1] <= p[0, 0, 0]
    assert Calibrator.from_state(None, 1, 2).method == "none"


def test_platt_state_round_trips_and_older_states_without_an_offset_load():
    cal = Calibrator("platt", torch.tensor([[2.0]]), offset=torch.tensor([[-1.0]]))
    buf = io.BytesIO()
    torch.save(cal.to_state(), buf)
    buf.seek(0)
    back = Calibrator.from_state(torch.load(buf, weights_only=True), 1, 1)
    z = torch.tensor([0.0, 4.0]).view(1, 1, 1, 1, 2)
    torch.testing.assert_close(back.probability(z), torch.sigmoid(z / 2.0 - 1.0))
    old = {k: v for k, v in Calibrator("temperature", torch.tensor([[2.0]])).to_state().items()}
    old.pop("offset")
    with pytest.raises(UserError, match="calibration method 'beta' is unknown"):
        Calibrator.from_state({**old, "method": "beta"}, 1, 1)
    torch.testing.assert_close(
        Calibrator.from_state(old, 1, 1).probability(z), torch.sigmoid(z / 2.0)
    )


def test_unknown_method_lists_the_valid_ones():
    with pytest.raises(UserError, match="temperature, platt, isotonic, none"):
        fit_calibration(LogitHistogram(1, 1), "beta")


def test_calibration_is_fitted_on_the_logits_predict_computes(tmp_path, monkeypatch):
    """With train.amp=bf16 (on CPU here) the calibration fit still sees the float32 logits that
    predict applies it to, window for window. The head's weights are randomised (a fresh head
    is zero, and its logits then agree in any precision) and the calibration refitted."""
    from data_prep.mock import mock_maps
    from data_prep.sequences import load_or_build_index
    from forecast.config import load_experiment
    from forecast.predict import load_forecaster
    from forecast.training import recalibrate, train
    from forecast.training.checkpoint import load_checkpoint, save_checkpoint

    fitted = []
    add = LogitHistogram.add
    monkeypatch.setattr(
        LogitHistogram, "add", lambda self, z, y, m: fitted.append(z.clone()) or add(self, z, y, m)
    )
    maps = tmp_path / "maps.nc"
    mock_maps(n_steps=80, shape=(8, 12), seed=2).to_netcdf(maps)
    cfg = load_experiment(
        None,
        [
            "model.encoder_channels=[8]", "model.hidden_channels=[8]", "model.norm_groups=4",
            "data.n_in=5", "data.n_out=2", "data.block_steps=20", "train.batch_size=8",
            "train.max_steps=1", "train.progress=false", "train.device=cpu", "train.threads=1",
            "train.amp=bf16", f"train.maps={maps}", f"train.out={tmp_path / 'run'}",
        ],
    )  # fmt: skip
    run = train(cfg)
    best = load_checkpoint(run / "best.pt")
    g = torch.Generator().manual_seed(0)
    for k in ("head.weight", "head.bias"):
        best["model"][k] = torch.randn(best["model"][k].shape, generator=g) * 0.3
    save_checkpoint(best, run / "best.pt")
    fitted.clear()
    recalibrate(cfg)
    index = load_or_build_index(maps, xr.open_dataset(maps), cfg.data)
    fc = load_forecaster(run / "best.pt", "cpu")
    predicted = fc.logits(xr.open_dataset(maps), index.starts["val"] + index.n_in - 1)
    np.testing.assert_allclose(torch.cat(fitted).numpy(), predicted.numpy(), rtol=0, atol=1e-5)


def test_isotonic_table_pools_a_violating_pair_by_hand():
    # bins of 10 cases each with observed shares 0.1, 0.3, 0.2, 0.4; bin 2 is empty.
    # Pooling the violators 0.3 > 0.2 gives 0.25 twice; the empty bin takes its neighbours' value.
    pos = np.array([1, 3, 0, 2, 4])
    neg = np.array([9, 7, 0, 8, 6])
    table = _isotonic_table(pos, neg)
    np.testing.assert_allclose(table, [0.1, 0.25, 0.25, 0.25, 0.4], rtol=1e-6)
