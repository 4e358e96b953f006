"""The lightning forecaster's network: recurrent cells, encoder -> core -> decoder, losses, and the
calibrator that maps its logits to probabilities. Imports nothing of forecast above the config."""

from forecast.model.calibrator import Calibrator
from forecast.model.losses import LOSSES, build_loss
from forecast.model.network import build_model, count_parameters

__all__ = ["LOSSES", "Calibrator", "build_loss", "build_model", "count_parameters"]
