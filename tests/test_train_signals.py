"""Ctrl-C and SIGTERM during training: exit 130 / 143 (not 2, the input was fine), last.pt
saved, one stderr line pointing at --resume and no traceback, whether the signal goes to the
process alone or to its whole process group with loader workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hostile_inputs import TINY, trained_run


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained model and the maps it was trained on."""
    return trained_run(tmp_path_factory.mktemp("hostile"))


@pytest.mark.parametrize(
    "sig, workers, group",
    [
        (signal.SIGTERM, 0, False),
        pytest.param(signal.SIGINT, 0, False, marks=pytest.mark.slow),
        # a batch scheduler or Ctrl-C signals the whole process group, loader workers included
        (signal.SIGTERM, 2, True),
        pytest.param(signal.SIGINT, 2, True, marks=pytest.mark.slow),
    ],
    ids=["SIGTERM", "SIGINT", "SIGTERM-group-with-workers", "SIGINT-group-with-workers"],
)
def test_signal_during_training_exits_128_plus_signal_with_last_pt_saved(
    run, tmp_path, sig, workers, group
):
    out = tmp_path / "run"
    argv = [
        *TINY,
        f"train.maps={run['maps']}",
        f"train.out={out}",
        "train.epochs=1000",
        "train.log_every=1",
        "train.checkpoint_every=0",
        f"train.num_workers={workers}",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "forecast", "train", *argv],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=group,
    )
    log = out / "log.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) > 1:
            break
        time.sleep(0.2)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err  # 143, 130: not 2, the input was fine
    assert (out / "last.pt").is_file() and "Traceback" not in err
    assert err.count("\n") == 1 and "--resume" in err
