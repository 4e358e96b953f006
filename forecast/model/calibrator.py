"""The calibrator: raw logits -> calibrated probabilities, as fitted on validation.

Fitted by :mod:`forecast.training.calibration` and applied by :mod:`forecast.predict`; it travels in
the checkpoint as :meth:`Calibrator.to_state`. The methods are described there.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from data_prep.errors import UserError

METHODS = ("temperature", "platt", "isotonic", "none")
N_LOGIT_BINS = 2001
LOGIT_SPAN = 16.0  # bins cover logits in [-span, span]; beyond that go to the edge bins


@dataclass
class Calibrator:
    """Maps raw logits (B, n_out, n_thr, H, W) to calibrated probabilities of the same shape."""

    method: str
    temperature: torch.Tensor  # (n_out, n_thr); 1 / slope for platt, ones for isotonic and none
    table: torch.Tensor | None = None  # (n_out, n_thr, n_bins) isotonic P on the logit-bin grid
    span: float = LOGIT_SPAN
    offset: torch.Tensor | None = None  # (n_out, n_thr) platt offset b; None is zero

    def probability(self, logits: torch.Tensor, monotone: bool = True) -> torch.Tensor:
        """Calibrated P(count >= threshold), float32.

        ``monotone``: never increasing along the threshold axis (forecasts); ``False`` maps each
        threshold on its own (the reliability tables, where all thresholds get the same logits).
        """
        z = logits.float()
        if self.method == "isotonic":
            p = _interp_table(z, self.table.to(z.device), self.span)
        else:
            t = self.temperature.to(z.device).view(1, *self.temperature.shape, 1, 1)
            b = 0.0 if self.offset is None else self.offset.to(z.device).view_as(t)
            p = torch.sigmoid(z / t + b)
        return torch.cummin(p, dim=2).values if monotone and p.shape[2] > 1 else p

    def to_state(self) -> dict:
        return {
            "method": self.method,
            "temperature": self.temperature.float(),
            "table": None if self.table is None else self.table.float(),
            "span": float(self.span),
            "offset": None if self.offset is None else self.offset.float(),
        }

    @classmethod
    def from_state(cls, state: dict | None, n_out: int, n_thr: int) -> Calibrator:
        """Rebuild from :meth:`to_state`; ``None`` (an uncalibrated checkpoint) gives ``none``."""
        if state is None:
            return identity(n_out, n_thr)
        check_method(state["method"], "the checkpoint's calibration method")
        offset = state.get("offset")  # absent from checkpoints written before platt existed
        return cls(state["method"], state["temperature"], state["table"], state["span"], offset)


def identity(n_out: int, n_thr: int) -> Calibrator:
    """``p = sigmoid(z)``."""
    return Calibrator("none", torch.ones(n_out, n_thr))


def check_method(method: str, what: str = "config: train.calibration") -> None:
    """Refuse a calibration method this version does not know, listing the known ones."""
    if method not in METHODS:
        raise UserError(f"{what} {method!r} is unknown; use one of {', '.join(METHODS)}")


def _interp_table(z: torch.Tensor, table: torch.Tensor, span: float) -> torch.Tensor:
    """Interpolate ``table`` (n_out, n_thr, n_bins) linearly at logits z (B, n_out, n_thr, H, W)."""
    n_bins = table.shape[-1]
    u = ((z + span) / (2 * span) * (n_bins - 1)).clamp(0, n_bins - 1)
    lo = u.floor().long().clamp(max=n_bins - 2)
    frac = u - lo
    B, n_out, n_thr, H, W = z.shape
    tab = table.view(1, n_out, n_thr, n_bins).expand(B, -1, -1, -1)
    lo_flat = lo.reshape(B, n_out, n_thr, H * W)
    y0 = torch.gather(tab, 3, lo_flat).view_as(z)
    y1 = torch.gather(tab, 3, lo_flat + 1).view_as(z)
    return y0 + frac * (y1 - y0)
