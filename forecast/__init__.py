"""strikecast forecasting: gridded strike maps -> ConvRNN model -> probability forecasts -> scores."""

from data_prep import __version__  # one version for the whole package

__all__ = ["__version__"]
