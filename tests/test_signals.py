"""Loader workers and signals: a signal to the whole process group is the main process's to
handle, at every instant, and workers that ignore it never keep the process from exiting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import torch
from torch.utils.data import TensorDataset

from forecast.training.loader import _Loader
from forecast.training.signals import ignore_in_worker


def _signalled_before_ignoring(worker_id: int) -> None:
    """A group SIGTERM that reaches a worker in the instant after torch set its killing handler
    and before the worker set the signal to ignore."""
    os.kill(os.getpid(), signal.SIGTERM)
    ignore_in_worker()


def test_worker_signalled_while_starting_survives_and_serves_every_batch():
    data = TensorDataset(torch.arange(12.0))
    loader = _Loader(data, batch_size=3, num_workers=2, worker_init_fn=_signalled_before_ignoring)
    got = torch.cat([b for (b,) in loader])  # a worker killed at start raises RuntimeError here
    assert got.tolist() == list(range(12))


def test_process_exits_while_workers_that_ignore_sigterm_are_still_running():
    # an iterator never shut down (kept alive by a global, as an error's traceback keeps one):
    # multiprocessing's exit would send SIGTERM, which these workers ignore, then wait forever
    script = textwrap.dedent(
        """
        import torch
        from torch.utils.data import TensorDataset
        from forecast.training.loader import make_loader
        loader = make_loader(TensorDataset(torch.arange(64.0)), None, batch_size=2, num_workers=2)
        it = iter(loader)
        next(it)
        print("exiting", flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and proc.stdout == "exiting\n", proc.stderr
    assert "Traceback" not in proc.stderr
