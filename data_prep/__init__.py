"""strikecast data preparation: strike records and gridded maps -> CF netCDF count maps -> sequences.

Nothing in this package imports ``forecast``: data flows one way, data_prep -> forecast.
"""

__version__ = "0.1.0"
