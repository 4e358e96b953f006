"""Interruption of training by signals: SIGTERM (a batch scheduler's preemption) or Ctrl-C finish
the step, write ``last.pt`` and stop; ``--resume`` goes on from there exactly."""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing
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


# --------------------------------------------------------------------------------------------
# loader workers: a signal to the whole process group (a batch scheduler, Ctrl-C in a terminal)
# is the main process's to handle. Workers ignore SIGTERM and SIGINT; to leave no instant in
# which a just-forked worker still dies of them (torch installs a killing SIGTERM handler as a
# worker starts), the main thread holds both signals back while it forks, the workers inherit
# that mask, and each worker drops what is pending when it sets them to ignore. Since workers
# ignore SIGTERM, multiprocessing's exit (terminate, then join with no timeout) cannot stop one
# that was never shut down, e.g. after an error: :func:`stop_workers_at_exit` kills those.

WORKER_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})


@contextlib.contextmanager
def held_while_forking():
    """SIGTERM and SIGINT held back in the calling thread (delivered when the block ends)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, WORKER_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def ignore_in_worker() -> None:
    """In a loader worker: ignore SIGTERM and SIGINT (dropping any already pending), unhold them."""
    for sig in WORKER_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, WORKER_SIGNALS)


_exit_guard = False


def stop_workers_at_exit() -> None:
    """Once per process: at exit, kill loader workers still alive (they ignore SIGTERM), before
    multiprocessing joins them forever. Registered after torch and multiprocessing, so it runs
    before their own exit handlers."""
    global _exit_guard
    if not _exit_guard:
        atexit.register(_kill_workers)
        _exit_guard = True


def _kill_workers() -> None:
    workers = [p for p in multiprocessing.active_children() if p.daemon]
    if workers and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # torch's handler would raise on them
    for p in workers:
        p.kill()
        p.join(timeout=5)
