"""Training of the lightning forecaster: data and loaders, the loop, checkpoints, run log,
calibration fitting, processes (DDP) and interruption by signals."""

from forecast.training.checkpoint import load_checkpoint
from forecast.training.loop import train
from forecast.training.recalibrate import recalibrate

__all__ = ["load_checkpoint", "recalibrate", "train"]
