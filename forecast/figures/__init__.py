"""Figures drawn from files on disk: lightning maps with borders, the climate of a maps file,
score diagrams, training curves; :func:`plot_files` writes whatever the given files allow."""

from forecast.figures.climate import climate_figure
from forecast.figures.files import plot_files, save_figure
from forecast.figures.maps import forecast_map_figure, observed_map_figure

__all__ = [
    "climate_figure",
    "forecast_map_figure",
    "observed_map_figure",
    "plot_files",
    "save_figure",
]
