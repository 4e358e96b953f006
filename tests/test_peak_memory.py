"""benchmarks/peak_memory.py: a stage's own peak is not its parent's, and the tree's PSS counts
its workers' private memory."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
from peak_memory import TreePeak, own_peak_mb  # noqa: E402

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/smaps_rollup").exists(), reason="needs Linux /proc"
)
MB = 2**20


def touched(mb: int) -> np.ndarray:
    """``mb`` MB of memory, every page written."""
    return np.ones(mb * MB // 8)


def test_child_peak_excludes_the_parents_peak():
    held = touched(300)  # this process's high-water mark is now >= 300 MB above a bare interpreter
    code = f"import sys; sys.path.insert(0, {str(BENCH)!r}); from peak_memory import own_peak_mb; print(own_peak_mb())"
    child = float(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout
    )
    del held
    assert child < 150, f"a bare child read {child:.0f} MB: its parent's peak"


def test_own_peak_grows_by_what_is_touched():
    before = own_peak_mb()
    held = touched(120)
    grown = own_peak_mb() - before
    del held
    # the peak may already sit above the current size (earlier tests), so growth is at most 120
    assert grown <= 125
    fresh = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import sys, json, numpy as np; sys.path.insert(0, {str(BENCH)!r}); "
            "from peak_memory import own_peak_mb; a = own_peak_mb(); x = np.ones(120 * 2**20 // 8); "
            "print(json.dumps(own_peak_mb() - a))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert 115 <= json.loads(fresh.stdout) <= 135


def test_tree_peak_counts_a_childs_private_memory():
    code = "import numpy as np, time; x = np.ones(150 * 2**20 // 8); print('ready', flush=True); time.sleep(30)"
    with TreePeak(interval=0.05) as tree:
        base = tree.peak_mb
        child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            assert child.stdout.readline().strip() == "ready"
            time.sleep(0.3)
        finally:
            child.kill()
            child.wait()
    assert base is not None and tree.peak_mb is not None
    assert tree.peak_mb - base >= 140, f"tree peak {tree.peak_mb:.0f} MB from {base:.0f} MB"
