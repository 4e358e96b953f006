"""Losses: known answers against torch's reference, masking, focal/BCE consistency, registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from data_prep.errors import UserError
from forecast.model.losses import LOSSES, build_loss


def _batch(seed: int = 0, shape=(2, 3, 2, 5, 6)):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g) * 2
    target = (torch.rand(shape, generator=g) < 0.3).float()
    mask = (torch.rand(shape[:2] + shape[3:], generator=g) < 0.7).float()
    return logits, target, mask


@pytest.mark.parametrize("pos_weight", [1.0, 4.0])
def test_bce_equals_torch_reference_on_unmasked_data(pos_weight):
    logits, target, _ = _batch()
    mask = torch.ones(logits.shape[:2] + logits.shape[3:])
    ours = build_loss("bce", pos_weight=pos_weight)(logits, target, mask)
    ref = F.binary_cross_entropy_with_logits(logits, target, pos_weight=torch.tensor(pos_weight))
    torch.testing.assert_close(ours, ref)


def test_bce_is_mean_over_observed_cells_only():
    logits, target, mask = _batch()
    ours = build_loss("bce")(logits, target, mask)
    keep = mask[:, :, None].expand_as(logits).bool()
    ref = F.binary_cross_entropy_with_logits(logits[keep], target[keep])
    torch.testing.assert_close(ours, ref)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_masked_cells_change_neither_loss_nor_gradients(name):
    logits, target, mask = _batch()
    loss = build_loss(name, pos_weight=2.0)
    hidden = (mask == 0)[:, :, None].expand_as(logits)
    a = logits.clone().requires_grad_()
    b_data = logits.clone()
    b_data[hidden] = float("nan")  # garbage where there is no data
    b = b_data.requires_grad_()
    target_b = target.clone()
    target_b[hidden] = 1 - target_b[hidden]
    la, lb = loss(a, target, mask), loss(b, target_b, mask)
    la.backward()
    lb.backward()
    torch.testing.assert_close(la, lb)
    torch.testing.assert_close(a.grad, b.grad)
    assert torch.all(b.grad[hidden] == 0)


def test_focal_with_gamma_zero_equals_bce():
    logits, target, mask = _batch(1)
    bce = build_loss("bce", pos_weight=3.0)(logits, target, mask)
    focal = build_loss("focal", pos_weight=3.0, gamma=0.0)(logits, target, mask)
    torch.testing.assert_close(focal, bce)


def test_focal_matches_hand_computed_value():
    logits = torch.tensor([2.0, -1.0]).reshape(1, 1, 1, 1, 2)
    target = torch.tensor([1.0, 1.0]).reshape(1, 1, 1, 1, 2)
    mask = torch.ones(1, 1, 1, 2)
    p = [1 / (1 + math.exp(-2.0)), 1 / (1 + math.exp(1.0))]
    expected = sum((1 - q) ** 2 * -math.log(q) for q in p) / 2
    got = build_loss("focal", gamma=2.0)(logits, target, mask)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_focal_down_weights_easy_cells_below_bce():
    logits, target, mask = _batch(2)
    assert build_loss("focal", gamma=2.0)(logits, target, mask) < build_loss("bce")(
        logits, target, mask
    )


def test_fully_masked_batch_gives_zero_loss_not_nan():
    logits, target, mask = _batch()
    x = logits.clone().requires_grad_()
    value = build_loss("bce")(x, target, torch.zeros_like(mask))
    value.backward()
    assert value.item() == 0.0
    assert torch.all(x.grad == 0)


def test_unknown_loss_name_lists_valid_ones():
    with pytest.raises(UserError, match="train.loss 'dice' is unknown; use one of bce, focal"):
        build_loss("dice")


def test_nonpositive_pos_weight_is_rejected():
    with pytest.raises(UserError, match="pos_weight"):
        build_loss("bce", pos_weight=0.0)
