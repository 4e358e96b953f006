"""Training losses for the lightning forecaster, chosen by name from :data:`LOSSES`.

Every loss has the signature ``loss(logits, target, mask) -> scalar``:

- ``logits`` (B, n_out, n_thr, H, W): the model's output
- ``target`` (B, n_out, n_thr, H, W): 1 where count >= threshold, else 0
- ``mask``   (B, n_out, H, W): 1 where the target map was observed (coverage), 0 where no data;
  broadcast over thresholds.

The result is the mean over observed (cell, threshold) pairs. Unobserved cells contribute neither
to the value nor to the gradients, whatever the logits or targets hold there (NaN included).
``count`` (keyword) replaces the number of observed pairs in the denominator: under DDP the
training loop passes the mean count over processes, so every observed cell weighs the same
whichever process holds it (see :func:`observed_pairs`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from data_prep.errors import UserError

Loss = Callable[[Tensor, Tensor, Tensor], Tensor]


def observed_pairs(mask: Tensor, n_thr: int) -> Tensor:
    """Observed (cell, threshold) pairs of a batch, the masked mean's denominator; int64 scalar.

    ``mask`` (B, n_out, H, W) is broadcast over ``n_thr`` thresholds.
    """
    return (mask > 0).sum() * n_thr


def _masked_mean(per_cell: Tensor, observed: Tensor, count: Tensor | float | None) -> Tensor:
    """Sum of ``per_cell`` over the True entries of ``observed`` divided by ``count`` (default
    their number; at least 1, so nothing observed gives 0)."""
    total = torch.where(observed, per_cell, torch.zeros_like(per_cell)).sum()
    n = observed.sum() if count is None else torch.as_tensor(count, device=total.device)
    return total / n.clamp(min=1)


def _prepare(logits: Tensor, target: Tensor, mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """float32 logits/targets with unobserved entries made harmless, and the boolean mask."""
    if logits.shape != target.shape or logits.dim() != 5:
        raise ValueError(
            f"loss: logits {tuple(logits.shape)} and target {tuple(target.shape)} "
            "must both be (B, n_out, n_thr, H, W)"
        )
    observed = (mask[:, :, None] > 0).expand_as(logits)  # (B, n_out, n_thr, H, W)
    # Zeros where unobserved so NaNs there cannot reach the loss or its gradient.
    logits = torch.where(observed, logits.float(), torch.zeros((), device=logits.device))
    target = torch.where(observed, target.float(), torch.zeros((), device=target.device))
    return logits, target, observed


def masked_bce(
    logits: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    pos_weight: float = 1.0,
    count: Tensor | float | None = None,
) -> Tensor:
    """Binary cross-entropy on logits, positives weighted by ``pos_weight``, masked mean."""
    logits, target, observed = _prepare(logits, target, mask)
    pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    per_cell = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    return _masked_mean(per_cell, observed, count)


def masked_focal(
    logits: Tensor,
    target: Tensor,
    mask: Tensor,
    *,
    pos_weight: float = 1.0,
    gamma: float = 2.0,
    count: Tensor | float | None = None,
) -> Tensor:
    """Focal loss ``(1 - p_t)**gamma * BCE`` (Lin et al. 2017); gamma 0 is :func:`masked_bce`."""
    logits, target, observed = _prepare(logits, target, mask)
    pw = torch.tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    bce = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * target + (1 - p) * (1 - target)  # probability given to what happened
    per_cell = (1 - p_t).pow(gamma) * bce if gamma != 0 else bce
    return _masked_mean(per_cell, observed, count)


LOSSES: dict[str, Callable[..., Tensor]] = {"bce": masked_bce, "focal": masked_focal}


def build_loss(name: str, *, pos_weight: float = 1.0, gamma: float = 2.0) -> Loss:
    """The loss named ``name`` with its settings bound: ``loss(logits, target, mask) -> scalar``
    (keyword ``count``: the denominator of the masked mean, see :func:`observed_pairs`).

    Parameters
    ----------
    name : str
        A key of :data:`LOSSES` (``bce`` or ``focal``).
    pos_weight : float
        Weight of the positive (strike) class in the cross-entropy.
    gamma : float
        Focusing exponent of ``focal``; ignored by ``bce``.

    Raises
    ------
    UserError
        On an unknown name (the message lists the valid ones) or a bad weight.
    """
    if name not in LOSSES:
        raise UserError(f"config: train.loss {name!r} is unknown; use one of {', '.join(LOSSES)}")
    if not pos_weight > 0:
        raise UserError(f"config: train.pos_weight {pos_weight} must be > 0")
    if name == "focal":
        if gamma < 0:
            raise UserError(f"config: train.focal_gamma {gamma} must be >= 0")
        return partial(masked_focal, pos_weight=pos_weight, gamma=gamma)
    return partial(masked_bce, pos_weight=pos_weight)
