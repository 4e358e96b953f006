"""The model before and after calibration from one forward pass per init.

``evaluate`` scores the model as ``model`` and, beside it, as ``model_uncalibrated`` (reliability
before and after calibration). Both are the same network on the same inputs, so
:func:`calibration_pair` gives two forecasters that share their logits: whichever of the two asks
for a batch of inits first runs the network and keeps the logits, the other takes them and
applies its own calibration (identity for ``model_uncalibrated``). Their forecasts are those of
two separately loaded forecasters, bit for bit: the same logits of the same batches of inits go
through the same calibration.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import xarray as xr

from forecast.predict import Forecaster
from forecast.training.calibration import identity

MAX_KEPT = 16  # batches of logits kept for the twin (it takes each one back at once)


class SharedForward(Forecaster):
    """A :class:`Forecaster` whose logits are computed once for it and its twin."""

    _kept: OrderedDict  # (maps, inits) -> logits, shared with the twin

    @torch.inference_mode()
    def logits(self, ds: xr.Dataset, inits: np.ndarray) -> torch.Tensor:
        """Raw logits (N, n_out, n_thr, H, W): the twin's, when it ran the network on these
        inits of these maps, else the network's, kept for the twin."""
        key = (id(ds), np.asarray(inits, dtype=np.int64).tobytes())
        kept = self._kept.pop(key, None)
        if kept is not None:
            return kept
        out = super().logits(ds, inits)
        self._kept[key] = out
        while len(self._kept) > MAX_KEPT:  # a twin that never asks: keep memory bounded
            self._kept.popitem(last=False)
        return out


def calibration_pair(model: Forecaster) -> tuple[SharedForward, SharedForward]:
    """(calibrated, uncalibrated) forecasters of ``model`` sharing one forward pass per init."""
    kept: OrderedDict = OrderedDict()
    pair = []
    for calibrated in (True, False):
        fc = SharedForward.__new__(SharedForward)
        fc.__dict__.update(model.__dict__)
        fc._kept = kept
        if not calibrated:
            fc.calibrator = identity(model.n_out, len(model.thresholds))
            fc.source = model.source + " (uncalibrated)"
        pair.append(fc)
    return pair[0], pair[1]
