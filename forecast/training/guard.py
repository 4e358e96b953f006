"""The training loop's divergence and stop checks, without a host sync on every step.

Reading a value back from a GPU (``.item()``, ``float(t)``, ``if t:``) waits for every kernel
queued before it, so the GPU idles while the host catches up and queues the next step. Each step
therefore only adds to tensors on the device: how many losses were NaN or infinite, and the first
step that had one, with its value. :meth:`StepGuard.look` reads them back (with several processes
after one all-reduce, which also tells every process whether any of them was asked to stop) every
``train.log_every`` steps and at the end of every pass over the data (an epoch's end, a
checkpoint, the last step of the run or the session), before anything is validated or saved. A
diverged run is reported with the step its loss first went non-finite.

A signal (SIGTERM, Ctrl-C) sets a flag on the host: one process stops after the step in which it
arrived; several processes agree at the next look (up to ``train.log_every`` steps later).
"""

from __future__ import annotations

import math

import torch

from data_prep.errors import UserError
from forecast.training import distributed
from forecast.training.distributed import Dist
from forecast.training.signals import Interruption


class StepGuard:
    """Non-finite losses counted on the device since the last :meth:`look`, and whether the
    processes agreed to stop."""

    def __init__(self, dist: Dist, step: int = 0):
        self.dist, self.device = dist, dist.device
        self.agreed = False  # at a look, some process had been asked to stop
        self._clear(step)

    def _clear(self, step: int) -> None:
        self.since = step  # the last step looked at
        self.bad = torch.zeros((), dtype=torch.float64, device=self.device)
        self.first = torch.full((), math.inf, dtype=torch.float64, device=self.device)
        self.value = torch.zeros((), device=self.device)  # the loss at step ``first``

    def add(self, loss: torch.Tensor, step: int) -> None:
        """Count the loss of step ``step`` (1-based) when it is NaN or infinite (no host read)."""
        loss = loss.detach().float()
        bad = ~torch.isfinite(loss)
        self.bad += bad
        newly = bad & torch.isinf(self.first)
        self.first = torch.where(newly, step, self.first)
        self.value = torch.where(newly, loss, self.value)

    def halted(self, interrupt: Interruption) -> bool:
        """Whether to stop now: one process, when it was asked (a host flag, no sync); several,
        when they agreed so at a :meth:`look`, so that all of them stop after the same step."""
        return bool(interrupt.requested) if self.dist.world == 1 else self.agreed

    def stop_agreed(self, interrupt: Interruption) -> bool:
        """Whether any process was asked to stop, agreed now (one all-reduce of the flag with
        several processes; every process must call it at the same point) and then kept as
        :meth:`look` keeps it; for passes without training steps (validation)."""
        if self.dist.world == 1:
            return bool(interrupt.requested)
        asked = torch.tensor([float(bool(interrupt.requested))])
        return self._agree(distributed.all_max(asked, self.dist).item() > 0, interrupt)

    def _agree(self, stop: bool, interrupt: Interruption) -> bool:
        """Keep an agreed stop: named on a process that was not asked itself, and held."""
        if stop and not interrupt.requested:
            interrupt.requested = "another process"
        self.agreed = self.agreed or stop
        return stop

    def look(self, step: int, interrupt: Interruption, *, epoch: int, lr_at) -> bool:
        """Read the counts back (one all-reduce, one host read); raise a one-line
        :class:`UserError` when a loss of steps ``since + 1 .. step`` on any process was NaN or
        infinite; return whether any process was asked to stop. ``lr_at(step)``: the rate then.
        """
        asked = float(bool(interrupt.requested))
        flags = torch.stack([self.bad.clamp(max=1), -self.first, self.bad.new_tensor(asked)])
        bad, minus_first, stop = distributed.all_max(flags, self.dist).tolist()
        since = self.since
        if bad > 0:
            first = int(-minus_first)
            mine = self.first.item() == first  # this process saw the first one
            value = f"{self.value.item()}" if mine else "not finite"
            raise UserError(
                f"training diverged: the loss is {value} at step {first} (the first non-finite "
                f"one of steps {since + 1}-{step}; epoch {epoch + 1}, lr {lr_at(first - 1):.3g}); "
                "lower train.lr, keep train.grad_clip > 0, or check the maps for bad values"
            )
        self._clear(step)
        self._agree(stop > 0, interrupt)
        return self.halted(interrupt)
