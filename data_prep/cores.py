"""The cores this process may run on: the one input to every thread count.

Thread counts come from the CPU affinity of the process (a batch scheduler's or ``taskset``'s
share of the machine) and from the configuration, never from the load average: a count that
follows the load changes from one run to the next, so timings and runs stop being comparable.
On a machine shared with other jobs, set the thread count in the configuration (1 is often
fastest there: OpenMP threads waiting on cores held by other programs stall one another).
"""

from __future__ import annotations

import os


def usable_cores() -> int:
    """Cores in this process's CPU affinity mask (``os.cpu_count()`` where there is none), >= 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
