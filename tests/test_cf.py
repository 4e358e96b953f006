"""Every netCDF file the pipeline writes passes the IOOS compliance-checker's CF-1.8 test.

The files come from the library calls behind the CLI (prep -> train -> predict -> evaluate) on a
tiny record. The checker (``pip install compliance-checker``, in the ``dev`` extra) brings its
own udunits through cf-units; without it the module is skipped.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("compliance_checker.runner", reason="compliance-checker is not installed")

from compliance_checker.runner import CheckSuite  # noqa: E402
from prep_files import TINY, strikes_frame, write_parquet  # noqa: E402

from data_prep.config import PrepConfig  # noqa: E402
from data_prep.prep import prep  # noqa: E402
from data_prep.sequences import index_path  # noqa: E402
from forecast.config import load_experiment  # noqa: E402
from forecast.evaluation import evaluate_to_files  # noqa: E402
from forecast.predict import predict_to_file  # noqa: E402
from forecast.training import train  # noqa: E402

HIGH = 3  # the checker's weight of a "high priority" (error) result


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, Path]:
    """maps, windows, calibration, forecast and scores files of one tiny run."""
    root = tmp_path_factory.mktemp("cf")
    strikes = write_parquet(strikes_frame(n=30_000, days=120, seed=1), root / "strikes.parquet")
    maps, run = root / "maps.nc", root / "run"
    cfg = load_experiment(
        None, [*TINY, "eval.bootstrap=10", f"train.maps={maps}", f"train.out={run}"]
    )
    prep([str(strikes)], maps, PrepConfig(grid="30,38,-104,-92,0.5"), cfg.data)
    train(cfg)
    forecast = predict_to_file(run / "best.pt", maps, "2021-07-01/2021-07-10", root / "fc.nc")
    cfg.eval = dataclasses.replace(cfg.eval, split="test")
    scores, _ = evaluate_to_files(
        cfg, maps=maps, out=root / "scores.nc", checkpoint=run / "best.pt",
        forecasts={}, baselines=True, device="cpu",
    )  # fmt: skip
    return {
        "maps": maps,
        "windows": index_path(maps),
        "calibration": run / "calibration.nc",
        "forecast": forecast,
        "scores": scores,
    }


def cf_errors(path: Path) -> list[str]:
    """The CF-1.8 checker's high-priority messages on ``path``."""
    suite = CheckSuite()
    suite.load_all_available_checkers()
    ds = suite.load_dataset(str(path))
    groups, _ = suite.run_all(ds, ["cf:1.8"], skip_checks=[])["cf:1.8"]
    report = suite.build_structure("cf:1.8", groups, str(path), HIGH)
    return [m for item in report["high_priorities"] for m in item.msgs]


@pytest.mark.parametrize("kind", ["maps", "windows", "calibration", "forecast", "scores"])
def test_every_written_file_has_no_cf18_errors(written, kind):
    assert cf_errors(written[kind]) == []
