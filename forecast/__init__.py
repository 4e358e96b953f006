"""strikecast forecasting: gridded strike maps -> ConvRNN model -> probability forecasts -> scores."""

__version__ = "0.1.0"
