"""Scores of forecasts against observed maps: baselines with the model's signature, motion, one
streaming scoring loop into one scores Dataset, the scorecard, and forecast files as methods."""

from forecast.evaluation.baselines import BASELINES, build_baseline
from forecast.evaluation.files import evaluate_to_files
from forecast.evaluation.scorecard import format_score_table, scorecard_markdown
from forecast.evaluation.scoring import all_steps_index, evaluate

__all__ = [
    "BASELINES",
    "all_steps_index",
    "build_baseline",
    "evaluate",
    "evaluate_to_files",
    "format_score_table",
    "scorecard_markdown",
]
