"""Peak memory of a benchmark stage: this process's own high-water mark, and the proportional
set size (PSS) of its whole process tree, sampled.

``getrusage(RUSAGE_SELF).ru_maxrss`` is not a process's own peak when it was started by a large
parent: Linux keeps the parent's high-water mark across ``vfork`` + ``exec`` (Python's
``subprocess`` uses ``vfork``), so a 500 MB stage started from a 1 GB parent reads 1 GB.
``VmHWM`` in ``/proc/self/status`` belongs to the memory map made at ``exec`` and reads true.
Loader workers forked from a stage map its pages copy-on-write, so their resident sizes count
those shared pages again; PSS shares each page among the processes that map it, so the sum over
the tree is the memory the stage holds.
"""

from __future__ import annotations

import os
import resource
import threading
from pathlib import Path

PROC = Path("/proc")


def _status_kb(field: str, pid: int | str = "self") -> int | None:
    """One ``kB`` field of ``/proc/PID/status``; None where there is no such file."""
    try:
        with open(PROC / str(pid) / "status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def own_peak_mb() -> float:
    """This process's peak resident MB since it was started (``VmHWM``; off Linux the
    ``ru_maxrss`` of ``getrusage``, which may hold a parent's peak)."""
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (children of each of its threads, recursively)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            tasks = os.listdir(PROC / str(p) / "task")
        except OSError:
            continue
        for t in tasks:
            try:
                todo += [
                    int(c) for c in (PROC / str(p) / "task" / t / "children").read_text().split()
                ]
            except OSError:
                continue
    return found


def tree_pss_mb(pid: int) -> float | None:
    """Sum of the PSS of ``pid`` and its descendants, MB; None where ``smaps_rollup`` is absent."""
    total, seen = 0, False
    for p in descendants(pid):
        try:
            with open(PROC / str(p) / "smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        seen = True
                        break
        except OSError:
            continue
    return total / 1024 if seen else None


class TreePeak:
    """Context manager sampling :func:`tree_pss_mb` of this process every ``interval`` s on a
    thread; ``peak_mb`` is the largest sum seen (None off Linux). A spike shorter than the
    interval can be missed: the stage's own ``VmHWM`` is exact, this one is the tree's."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> None:
        mb = tree_pss_mb(os.getpid())
        if mb is not None:
            self.peak_mb = max(self.peak_mb or 0.0, mb)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self) -> TreePeak:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()
