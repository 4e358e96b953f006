"""The forecaster: shapes for every cell, padding, thresholds, climatology start, determinism."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from data_prep.errors import UserError
from forecast.config import ModelConfig
from forecast.model.cells import CORES, ConvLSTMCell, ConvRNNCell
from forecast.model.losses import build_loss
from forecast.model.network import build_model, count_parameters

C = 7  # input channels of forecast.training.dataset
TINY = ModelConfig(encoder_channels=(8, 16), hidden_channels=(16,), flat_hidden=32)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny grids gain nothing from a second thread and lose much when the cores are busy."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _tiny(**changes) -> ModelConfig:
    return dataclasses.replace(TINY, **changes)


def _inputs(b=2, t=4, h=16, w=16, seed=0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, t, C, h, w, generator=g)
    x[:, :, 2] = 0.05 + 0.5 * x[:, :, 2]  # climatology channel: a probability
    return x


@pytest.mark.parametrize("cell", sorted(CORES))
@pytest.mark.parametrize("hw", [(16, 16), (29, 45), (5, 7)])
def test_every_cell_gives_logits_on_any_grid_size(cell, hw):
    model = build_model(_tiny(cell=cell, thresholds=(1, 10)), C, 3)
    out = model(_inputs(h=hw[0], w=hw[1]))
    assert out.shape == (2, 3, 2, *hw)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


@pytest.mark.parametrize("cell", ["convgru", "convlstm"])
def test_stacked_layers_and_three_stages_work(cell):
    cfg = _tiny(cell=cell, encoder_channels=(8, 8, 16), hidden_channels=(16, 8))
    assert build_model(cfg, C, 2)(_inputs(h=29, w=45)).shape == (2, 2, 1, 29, 45)


@pytest.mark.parametrize("flat_rnn", ["rnn", "gru", "lstm"])
def test_flat_cell_works_with_every_torch_rnn(flat_rnn):
    model = build_model(_tiny(cell="flat", flat_rnn=flat_rnn, hidden_channels=(16, 16)), C, 3)
    out = model(_inputs(h=20, w=30))
    out.sum().backward()
    assert out.shape == (2, 3, 1, 20, 30)
    assert model.core.rnn.weight_ih_l0.grad is not None


def test_unknown_cell_name_lists_valid_ones():
    with pytest.raises(UserError, match="'transformer' is unknown; use one of .*convlstm.*flat"):
        build_model(_tiny(cell="transformer"), C, 3)


def test_bad_config_and_input_are_user_errors():
    with pytest.raises(UserError, match="flat_rnn"):
        build_model(_tiny(cell="flat", flat_rnn="mamba"), C, 3)
    with pytest.raises(UserError, match="thresholds"):
        build_model(_tiny(thresholds=(10, 1)), C, 3)
    with pytest.raises(UserError, match=r"expected \(B, T, 7, H, W\)"):
        build_model(TINY, C, 3)(torch.zeros(2, 4, 5, 16, 16))


@pytest.mark.parametrize("cell", ["convgru", "flat"])
def test_threshold_probabilities_never_increase_with_threshold(cell):
    torch.manual_seed(0)
    model = build_model(_tiny(cell=cell, thresholds=(1, 10, 100)), C, 3)
    with torch.no_grad():  # the head starts at zero; give it arbitrary weights
        model.head.weight.normal_(0, 3.0)
        model.head.bias.normal_(0, 3.0)
    p = torch.sigmoid(model(_inputs()))
    assert torch.all(p[:, :, 1:] <= p[:, :, :-1])


def test_convrnn_cell_is_tanh_of_separate_input_and_hidden_convolutions():
    torch.manual_seed(0)
    cell = ConvRNNCell(3, 4, 3)
    x, h = torch.randn(2, 3, 6, 5), torch.randn(2, 4, 6, 5)
    w_x, w_h = cell.conv.weight[:, :3], cell.conv.weight[:, 3:]
    b = cell.conv.bias[:, None, None]
    expected = torch.tanh(F.conv2d(x, w_x, padding=1) + F.conv2d(h, w_h, padding=1) + b)
    torch.testing.assert_close(cell(x, (h,))[0], expected)


def test_fused_convlstm_equals_one_convolution_per_gate():
    torch.manual_seed(0)
    cell = ConvLSTMCell(3, 4, 3)
    x, h, c = torch.randn(2, 3, 6, 5), torch.randn(2, 4, 6, 5), torch.randn(2, 4, 6, 5)
    xh = torch.cat([x, h], dim=1)
    i, f, o, g = (
        F.conv2d(xh, w, b, padding=1)
        for w, b in zip(cell.conv.weight.chunk(4), cell.conv.bias.chunk(4), strict=True)
    )
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_new, (h_state, c_state) = cell(x, (h, c))
    torch.testing.assert_close(c_state, c_new)
    torch.testing.assert_close(h_new, torch.sigmoid(o) * torch.tanh(c_new))
    assert h_state is h_new


def test_untrained_model_forecasts_the_climatology_channel():
    x = _inputs()
    p = torch.sigmoid(build_model(TINY, C, 3)(x))  # (B, 3, 1, H, W)
    clim = x[:, -1, 2][:, None, None].expand_as(p)
    torch.testing.assert_close(p, clim)


def test_forward_is_deterministic_on_cpu_with_a_seed():
    outs = []
    for _ in range(2):
        torch.manual_seed(123)
        model = build_model(_tiny(cell="convlstm"), C, 3)
        with torch.no_grad():
            model.head.weight.normal_()
        outs.append(model(_inputs()))
    assert torch.equal(outs[0], outs[1])


@pytest.mark.parametrize("cell", sorted(CORES))
def test_forecast_depends_on_the_first_input_step(cell):
    torch.manual_seed(0)
    model = build_model(_tiny(cell=cell), C, 2)
    with torch.no_grad():
        model.head.weight.normal_()
    x = _inputs()
    x2 = x.clone()
    x2[:, 0] = torch.rand_like(x2[:, 0])
    assert not torch.allclose(model(x), model(x2))


def test_channels_last_and_bf16_autocast_give_close_logits():
    torch.manual_seed(0)
    model = build_model(TINY, C, 3)
    with torch.no_grad():
        model.head.weight.normal_(0, 0.1)
    x = _inputs()
    ref = model(x)
    model = model.to(memory_format=torch.channels_last)
    torch.testing.assert_close(model(x), ref, atol=1e-4, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, ref, atol=0.1, rtol=0.05)


def test_default_model_is_small():
    assert 30_000 < count_parameters(build_model(ModelConfig(), C, 3)) < 150_000


@pytest.mark.parametrize("cell", ["convgru", "flat"])
def test_tiny_model_overfits_four_samples(cell):
    torch.manual_seed(0)
    model = build_model(_tiny(cell=cell), C, 2)
    g = torch.Generator().manual_seed(0)
    x = _inputs(b=4)
    y = (torch.rand(4, 2, 1, 16, 16, generator=g) < 0.3).float()
    mask = torch.ones(4, 2, 16, 16)
    loss_fn = build_loss("bce")
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = loss_fn(model(x), y, mask).item()
    for _ in range(500):
        loss = loss_fn(model(x), y, mask)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if loss.item() < 0.08 * first:
            break
    assert loss.item() < 0.1 * first
