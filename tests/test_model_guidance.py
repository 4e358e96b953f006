"""Guidance as model inputs: channels, normalisation fitted on training windows only, the fused
decoder, an unchanged model without guidance, and refusals of checkpoints run without it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import xarray as xr
from prep_files import TINY

from data_prep.mock import mock_maps
from data_prep.schema import COUNT, INIT_TIME, LAT, LEAD_TIME, LON, TIME
from forecast.config import load_experiment
from forecast.model.network import build_model
from forecast.training.data import build_data
from forecast.training.dataset import N_CHANNELS
from forecast.training.distributed import Dist
from forecast.training.guided import GuidanceStats, guidance_channels, guidance_for_training

N_OUT = 2
CPU = Dist(0, 1, torch.device("cpu"))


def write_guidance(maps: xr.Dataset, path, *, noise: float = 0.0, seed: int = 0, shift=None):
    """A guidance file issued at the end of every day with leads 0..N_OUT days: ``occ`` is the
    occurrence of the day described (a perfect forecast plus ``noise``; NaN past the maps' end),
    ``cape`` a non-negative field. ``shift(a, lead)`` -> value added to issue ``a``'s ``occ``."""
    rng = np.random.default_rng(seed)
    occ = (maps[COUNT].values >= 1).astype(np.float32)  # (T, H, W)
    t, h, w = occ.shape
    field = np.full((t, N_OUT + 1, h, w), np.nan, np.float32)
    for lead in range(N_OUT + 1):
        field[: t - lead, lead] = occ[lead:]
        if shift is not None:
            for a in range(t):
                field[a, lead] += shift(a, lead)
    field += noise * rng.standard_normal(field.shape).astype(np.float32)
    cape = rng.gamma(2.0, 300.0, field.shape).astype(np.float32)
    issued = maps[TIME].values + np.timedelta64(1, "D")
    leads = np.arange(N_OUT + 1) * np.timedelta64(1, "D")
    dims = (INIT_TIME, LEAD_TIME, LAT, LON)
    g = xr.Dataset(
        {"occ": (dims, field, {"units": "1"}), "cape": (dims, cape, {"units": "J kg-1"})},
        coords={INIT_TIME: issued, LEAD_TIME: leads, LAT: maps[LAT].values, LON: maps[LON].values},
        attrs={"strikecast_kind": "guidance"},
    )
    g.to_netcdf(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("guided")
    maps = mock_maps(n_steps=100, shape=(16, 24), seed=5)
    maps.to_netcdf(root / "maps.nc")
    return root, root / "maps.nc", write_guidance(maps, root / "guidance.nc")


def _cfg(root, maps, *extra):
    return load_experiment(None, [*TINY, f"train.maps={maps}", f"train.out={root / 'r'}", *extra])


def test_inputs_gain_a_value_and_a_has_data_channel_per_field(files):
    root, maps, guidance = files
    data = build_data(_cfg(root, maps, f"data.guidance={guidance}"), CPU)
    assert data.in_channels == N_CHANNELS + 4 and data.guide_channels == 4
    assert data.guidance.fields == ("occ", "cape") and data.guidance.units == ("1", "J kg-1")
    item = data.train_loader.dataset[0]
    assert item["x"].shape == (5, N_CHANNELS + 4, 16, 24)
    assert item["guide"].shape == (N_OUT, 4, 16, 24)
    plain = build_data(_cfg(root, maps), CPU)
    assert plain.in_channels == N_CHANNELS and plain.guide_channels == 0
    base = plain.train_loader.dataset[0]
    assert "guide" not in base
    torch.testing.assert_close(item["x"][:, :N_CHANNELS], base["x"], rtol=0, atol=0)


def test_has_data_is_zero_exactly_where_guidance_is_missing_and_the_value_zero_there():
    stats = GuidanceStats(("a", "b"), ("1", "1"), (False, True), (5.0, 1.0), (2.0, 0.5))
    v = np.array([[[[7.0, np.nan]], [[np.expm1(2.0), 0.0]]]], np.float32)  # (1, F=2, H=1, W=2)
    ch = guidance_channels(v, stats)  # (1, 4, 1, 2)
    assert ch[0, :, 0].tolist() == [[1.0, 0.0], [1.0, 0.0], [2.0, -2.0], [1.0, 1.0]]


def _train_inits(data):
    return data.index.starts["train"] + data.index.n_in - 1


def test_normalisation_is_fitted_on_training_windows_only(files, tmp_path):
    root, maps, guidance = files
    ds = xr.open_dataset(maps)
    data = build_data(_cfg(root, maps), CPU)
    g, stats = guidance_for_training(str(guidance), ds, data.index)
    # known answer: log1p (cape >= 0) then mean/std of the values the training windows see
    cape = g.window(_train_inits(data))[:, :, 1]
    logged = np.log1p(cape[np.isfinite(cape)].astype(np.float64))
    assert stats.log == (True, True)  # occurrence 0/1 and cape are never negative
    np.testing.assert_allclose(stats.mean[1], logged.mean(), rtol=1e-9)
    np.testing.assert_allclose(stats.std[1], logged.std(), rtol=1e-9)
    # other values for every (issue, lead) no training window sees: the same statistics
    rows = _train_inits(data)
    seen = set(
        zip(g.picks.init[rows].ravel().tolist(), g.picks.lead[rows].ravel().tolist(), strict=True)
    )
    unseen = write_guidance(ds, tmp_path / "u.nc", shift=lambda a, k: 9.0 * ((a, k) not in seen))
    assert replace(guidance_for_training(str(unseen), ds, data.index)[1], path="") == replace(
        stats, path=""
    )
    # and the test would see a change of the training values
    moved = write_guidance(ds, tmp_path / "m.nc", shift=lambda a, k: 9.0 * ((a, k) in seen))
    assert guidance_for_training(str(moved), ds, data.index)[1].mean[0] != stats.mean[0]


TINY_MODEL = ["model.encoder_channels=[8]", "model.hidden_channels=[8]", "model.norm_groups=4"]


def test_a_model_without_guidance_is_the_model_of_before():
    """Parameter count and sums, and the output of a fixed input, as computed before guidance
    existed (same seed, same draws)."""
    cfg = load_experiment(None, TINY_MODEL).model
    torch.manual_seed(0)
    m = build_model(cfg, N_CHANNELS, 2)
    assert sum(p.numel() for p in m.parameters()) == 6138
    assert sum(float(p.detach().double().sum()) for p in m.parameters()) == pytest.approx(
        20.978071591944172, abs=1e-9
    )
    x = torch.rand(2, 5, N_CHANNELS, 12, 20, generator=torch.Generator().manual_seed(1))
    x[:, :, 2] = x[:, :, 2] * 0.5 + 0.1
    with torch.no_grad():
        torch.manual_seed(2)
        for p in m.head.parameters():
            p.add_(torch.randn_like(p) * 0.1)
        y = m.eval()(x).double()
    assert float(y.sum()) == pytest.approx(-798.3771934937686, abs=1e-6)
    assert float(y.abs().sum()) == pytest.approx(850.0276427473873, abs=1e-6)
    # with guidance: the same draws for every part the model without it has, then the fusion
    torch.manual_seed(0)
    guided = build_model(cfg, N_CHANNELS, 2, guide_channels=4).state_dict()
    torch.manual_seed(0)
    plain = build_model(cfg, N_CHANNELS, 2).state_dict()
    assert set(guided) - set(plain) == {k for k in guided if k.startswith("fusion.")}
    assert all(torch.equal(guided[k], v) for k, v in plain.items())


def test_guided_model_starts_at_climatology_and_needs_its_guidance():
    cfg = load_experiment(None, TINY_MODEL).model
    torch.manual_seed(0)
    m = build_model(cfg, N_CHANNELS + 4, 2, guide_channels=4).eval()
    x = torch.rand(1, 5, N_CHANNELS + 4, 12, 20)
    guide = torch.rand(1, 2, 4, 12, 20)
    with torch.no_grad():
        a, b = m(x, guide), m(x, torch.zeros_like(guide))
    torch.testing.assert_close(a, b)  # the fusion adds nothing before training
    with pytest.raises(Exception, match="guidance of shape none"):
        m(x)
