"""Checkpoint + recent observed maps -> calibrated lightning probability forecasts (no truth).

- :mod:`.forecaster`: :func:`load_forecaster` rebuilds the trained model from ``best.pt`` (model
  args, weights, feature statistics and calibration travel in the checkpoint);
  ``Forecaster.forecast(ds, inits)`` gives P(count >= 1) for windows ending at the init steps,
  the signature the baselines share.
- :mod:`.inits`: the init steps asked for (latest, one time, an ISO 8601 interval).
- :mod:`.output`: :func:`predict_to_file` writes the forecast netCDF, batch by batch.

A checkpoint trained with guidance (:mod:`forecast.training.guided`) needs a guidance file with
its fields (``guidance=``, the CLI's ``--guidance``) and refuses to run without it; one trained
without guidance refuses one (``evaluate`` ignores it for the model with a warning, since the
file also feeds the ``mos`` baseline). The forecast file records the guidance file used.
"""

from forecast.predict.forecaster import Forecaster, load_forecaster
from forecast.predict.inits import day_label, inits_within, select_inits
from forecast.predict.output import forecast_dataset, predict_to_file, write_forecasts

__all__ = [
    "Forecaster",
    "day_label",
    "forecast_dataset",
    "inits_within",
    "load_forecaster",
    "predict_to_file",
    "select_inits",
    "write_forecasts",
]
