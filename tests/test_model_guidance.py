"""Guidance as model inputs: channels, normalisation fitted on training windows only, the fused
decoder, an unchanged model without guidance, and refusals of checkpoints run without it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import xarray as xr
from prep_files import TINY

from data_prep.mock import mock_maps
from data_prep.schema import COUNT, INIT_TIME, LAT, LEAD_TIME, LON, TIME
from data_prep.sequences import load_or_build_index
from forecast.cli import main
from forecast.config import load_experiment
from forecast.model.network import build_model
from forecast.predict import load_forecaster
from forecast.training import train
from forecast.training.checkpoint import load_checkpoint
from forecast.training.data import build_data
from forecast.training.distributed import Dist
from forecast.training.features import N_CHANNELS
from forecast.training.guided import GuidanceStats, guidance_channels, guidance_for_training

N_OUT = 2
CPU = Dist(0, 1, torch.device("cpu"))


def write_guidance(
    maps: xr.Dataset, path, *, noise: float = 0.0, seed: int = 0, shift=None, holes: float = 0.0
):
    """A guidance file issued at the end of every day with leads 0..N_OUT days: ``occ`` is the
    occurrence of the day described (a perfect forecast plus ``noise``; NaN past the maps' end),
    ``cape`` a non-negative field. ``shift(a, lead)`` -> value added to issue ``a``'s ``occ``;
    a share ``holes`` of the values are missing (NaN)."""
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
    field[rng.random(field.shape) < holes] = np.nan
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


def test_a_guided_item_states_the_bytes_of_its_tensors(files):
    root, maps, guidance = files
    data = build_data(_cfg(root, maps, f"data.guidance={guidance}"), CPU)
    windows = data.train_loader.dataset
    assert windows.item_bytes() == sum(t.nbytes for t in windows[0].values())


def test_has_data_is_zero_exactly_where_guidance_is_missing_and_the_value_zero_there():
    stats = GuidanceStats(("a", "b"), ("1", "1"), (False, True), (5.0, 1.0), (2.0, 0.5))
    v = np.array([[[[7.0, np.nan]], [[np.expm1(2.0), 0.0]]]], np.float32)  # (1, F=2, H=1, W=2)
    ch = guidance_channels(v, stats)  # (1, 4, 1, 2)
    assert ch[0, :, 0].tolist() == [[1.0, 0.0], [1.0, 0.0], [2.0, -2.0], [1.0, 1.0]]


def test_has_data_channels_of_windows_are_zero_exactly_where_the_file_has_no_value(files, tmp_path):
    root, maps, _ = files
    holed = write_guidance(xr.open_dataset(maps), tmp_path / "h.nc", holes=0.2)
    data = build_data(_cfg(root, maps, f"data.guidance={holed}"), CPU)
    windows = data.train_loader.dataset
    for i in (0, 7):
        item = windows[i]
        occ = windows.guidance.window([int(item["init"])])[0, :, 0]  # (n_in + n_out, H, W)
        seen = torch.cat([item["x"][:, N_CHANNELS + 1], item["guide"][:, 1]])
        value = torch.cat([item["x"][:, N_CHANNELS], item["guide"][:, 0]])
        assert torch.equal(seen == 0, torch.from_numpy(np.isnan(occ)))
        assert (value[seen == 0] == 0).all() and np.isnan(occ).any()


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
    # float32 convolutions sum in another order on another CPU (oneDNN's AVX-512 kernels)
    assert float(y.sum()) == pytest.approx(-798.3771934937686, rel=1e-7)
    assert float(y.abs().sum()) == pytest.approx(850.0276427473873, rel=1e-7)
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


LEARN = ["train.max_steps=20", "train.epochs=100", "train.warmup_steps=2", "train.lr=0.01"]


@pytest.fixture(scope="module")
def runs(files):
    """Two tiny models trained alike, with and without guidance equal to the future occurrence."""
    root, maps, guidance = files
    out = {}
    for name, extra in (("plain", []), ("guided", [f"data.guidance={guidance}"])):
        cfg = load_experiment(
            None, [*TINY, *LEARN, f"train.maps={maps}", f"train.out={root / name}", *extra]
        )
        out[name] = train(cfg) / "best.pt"
    return out


def _lead1_val_loss(ckpt, maps, guidance=""):
    fc = load_forecaster(ckpt, "cpu", calibrated=False, guidance=str(guidance))
    ds = xr.open_dataset(maps)
    cfg = load_experiment(None, [*TINY])
    index = load_or_build_index(maps, ds, replace(cfg.data, guidance=str(guidance)))
    inits = index.starts["val"] + index.n_in - 1
    logits = fc.logits(ds, inits)[:, 0, 0]  # (N, H, W) lead 1
    steps = inits + 1
    y = torch.from_numpy((ds[COUNT].values[steps] >= 1).astype(np.float32))
    m = torch.from_numpy(ds["coverage"].values[steps] > 0)
    return float(F.binary_cross_entropy_with_logits(logits[m], y[m]))


def test_informative_guidance_lowers_the_lead_1_validation_loss(files, runs):
    root, maps, guidance = files
    plain = _lead1_val_loss(runs["plain"], maps)
    guided = _lead1_val_loss(runs["guided"], maps, guidance)
    assert guided < 0.8 * plain, (guided, plain)


def test_checkpoint_trained_with_guidance_refuses_to_run_without_it(files, runs, tmp_path, capsys):
    root, maps, guidance = files
    code = main(
        [
            "predict",
            "--checkpoint",
            str(runs["guided"]),
            "--maps",
            str(maps),
            "--out",
            str(tmp_path / "f.nc"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "trained with guidance occ (1), cape (J kg-1)" in err and "--guidance" in err
    # a file lacking a field the model was trained on: the field is named
    g = xr.open_dataset(guidance).drop_vars("cape")
    g.to_netcdf(tmp_path / "no_cape.nc")
    args = [
        "--maps",
        str(maps),
        "--out",
        str(tmp_path / "f.nc"),
        "--guidance",
        str(tmp_path / "no_cape.nc"),
    ]
    assert main(["predict", "--checkpoint", str(runs["guided"]), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no guidance field 'cape'" in err
    # a file whose forecasts stop before the init's targets: the steps are named
    g = xr.open_dataset(guidance).isel(init_time=slice(0, 90))
    g.to_netcdf(tmp_path / "short.nc")
    args[-1] = str(tmp_path / "short.nc")
    assert main(["predict", "--checkpoint", str(runs["guided"]), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no guidance (occ, cape) issued by the init" in err
    # guidance given to a model trained without it
    args[-1] = str(guidance)
    assert main(["predict", "--checkpoint", str(runs["plain"]), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained without guidance" in err


def test_predict_and_evaluate_with_guidance_run_end_to_end(files, runs, tmp_path, capsys):
    root, maps, guidance = files
    out = tmp_path / "f.nc"
    common = ["--maps", str(maps), "--guidance", str(guidance)]
    assert main(["predict", "--checkpoint", str(runs["guided"]), *common, "--out", str(out)]) == 0
    f = xr.open_dataset(out)
    assert f.attrs["guidance"] == str(guidance) and f.attrs["guidance_fields"].startswith("occ")
    assert f["probability"].shape == (1, N_OUT, 16, 24)
    assert np.isfinite(f["probability"].values).all()
    scores = tmp_path / "s.nc"
    args = ["evaluate", "--checkpoint", str(runs["guided"]), *common, "--out", str(scores)]
    assert main([*args, "--no-baselines", "eval.bootstrap=0", "eval.uncalibrated=false"]) == 0
    s = xr.open_dataset(scores)
    assert "model" in s["forecast"].values.tolist()
    assert np.isfinite(s["brier_score"].sel(forecast="model").values).all()
    capsys.readouterr()


def test_calibrate_takes_guidance_and_refuses_to_run_without_it(runs, files, capsys):
    root, maps, guidance = files
    config = str(runs["guided"].parent / "config.yaml")
    args = ["calibrate", "--config", config, "train.calibration=platt"]
    assert main([*args, "--guidance", str(guidance)]) == 0
    assert load_checkpoint(runs["guided"])["calibration"]["method"] == "platt"
    capsys.readouterr()
    assert main([*args, "data.guidance="]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "trained with guidance occ (1), cape" in err


def test_evaluate_a_model_without_guidance_beside_mos_ignores_the_file_for_the_model(
    files, runs, tmp_path, capsys
):
    root, maps, guidance = files
    scores = tmp_path / "s.nc"
    args = ["evaluate", "--checkpoint", str(runs["plain"]), "--maps", str(maps)]
    args += ["--guidance", str(guidance), "--out", str(scores), "eval.baselines=[mos]"]
    assert main([*args, "eval.bootstrap=0", "eval.uncalibrated=false"]) == 0
    err = capsys.readouterr().err
    assert "trained without guidance: the model ignores" in err
    assert xr.open_dataset(scores)["forecast"].values.tolist() == ["model", "mos"]


def test_config_show_documents_the_guidance_key(capsys):
    assert main(["config", "show"]) == 0
    line = next(
        s for s in capsys.readouterr().out.splitlines() if s.strip().startswith("guidance:")
    )
    assert "--guidance" in line and "model" in line
