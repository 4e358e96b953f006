"""Interruption of training by signals: SIGTERM (a batch scheduler's preemption) or Ctrl-C finish
the step, write ``last.pt`` and stop; ``--resume`` goes on from there exactly."""

from __future__ import annotations

import signal
import threading

from data_prep.errors import Interrupted


class TrainingInterrupted(Interrupted):
    """Training stopped on a signal after writing ``last.pt``; ``--resume`` goes on. The CLI
    exits with 130 (SIGINT) or 143 (SIGTERM), not 2: nothing was wrong with the input."""


class Interruption:
    """SIGTERM and SIGINT while training: ``requested`` names the signal, and the loop stops
    after the step it is in, writing ``last.pt``. A second signal stops at once.

    Handlers are installed only in the main thread (Python's rule) and restored on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = ""
        self._old: dict = {}

    def __enter__(self) -> Interruption:
        if threading.current_thread() is threading.main_thread():
            self._old = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name

    @property
    def signum(self) -> int:
        """The signal asked for (SIGTERM when another process of a DDP run was asked)."""
        return getattr(signal, self.requested, signal.SIGTERM)

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)
