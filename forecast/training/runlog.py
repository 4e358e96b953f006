"""Training log of a run: ``log.csv`` and TensorBoard events, written by the main process only.

``log.csv`` columns: ``step, epoch, lr, train_loss, val_loss, val_brier, val_bss, val_auc,
seconds, gpu_mem_gib``. A row every ``log_every`` steps carries the mean training loss since the previous row;
a row after each validation carries the validation scores (and the mean training loss since the
last validation).
``seconds`` is training wall time over all sessions; ``gpu_mem_gib`` the most GPU memory
PyTorch held for tensors since the previous row (``torch.cuda.max_memory_allocated``), empty on
CPU. A resumed run first drops the rows written
after its checkpoint, so the log reads as one uninterrupted run.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import torch

from data_prep.config import atomic_write_text
from data_prep.progress import duration

COLUMNS = (
    "step", "epoch", "lr", "train_loss", "val_loss", "val_brier", "val_bss", "val_auc", "seconds",
    "gpu_mem_gib",
)  # fmt: skip


class RunLog:
    """Appends rows to ``<run_dir>/log.csv`` and scalars to ``<run_dir>/tensorboard``."""

    def __init__(
        self,
        run_dir: Path,
        *,
        enabled: bool = True,
        after_step: int | None = None,
        device: torch.device | None = None,
    ):
        self.enabled, self.path = enabled, Path(run_dir) / "log.csv"
        self.device = device
        self.last_loss = math.nan
        self._n, self._epoch_sum, self._epoch_n = 0, 0.0, 0
        self._pending = torch.zeros((), device=device)  # on the device: no copy in a step
        if not enabled:
            return
        self._start_csv(after_step)
        from torch.utils.tensorboard import SummaryWriter  # heavy: only where the log is kept

        tb_dir = Path(run_dir) / "tensorboard"
        if after_step is None:  # a fresh run replaces the events of an earlier one
            for old in tb_dir.glob("events.out.tfevents.*"):
                old.unlink()
        self.tb = SummaryWriter(log_dir=str(tb_dir), purge_step=after_step)

    def _start_csv(self, after_step: int | None) -> None:
        """A fresh log, or (resuming) the old one without rows after ``after_step``."""
        rows = []
        if after_step is not None and self.path.is_file():
            with self.path.open(newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= after_step]
        text = (
            ",".join(COLUMNS)
            + "\n"
            + "".join(",".join(r.get(c) or "" for c in COLUMNS) + "\n" for r in rows)
        )
        atomic_write_text(self.path, text)

    def train_loss(
        self, loss: torch.Tensor, state, lr: float, seconds: float, *, every: int
    ) -> None:
        """Accumulate one step's loss; write a row every ``every`` steps (one sync per row)."""
        self._pending = self._pending.to(loss.device) + loss.float()
        self._n += 1
        if state.step % max(every, 1):
            return
        self._flush()
        row = {"step": state.step, "epoch": state.epoch, "lr": lr, "train_loss": self.last_loss}
        self._row({**row, "seconds": seconds})
        if self.enabled:
            self.tb.add_scalar("train/loss", self.last_loss, state.step)
            self.tb.add_scalar("train/lr", lr, state.step)

    def validation(self, scores: dict[str, float], state, lr: float, seconds: float) -> dict:
        """One row with the validation scores and the mean training loss since the last one;
        returns the row."""
        self._flush()
        mean = self._epoch_sum / self._epoch_n if self._epoch_n else math.nan
        self._epoch_sum, self._epoch_n = 0.0, 0
        row = {"step": state.step, "epoch": state.epoch, "lr": lr, "train_loss": mean}
        self._row({**row, "seconds": seconds, **scores})
        if self.enabled:
            for key, value in scores.items():
                self.tb.add_scalar(key.replace("val_", "val/"), value, state.step)
            self.tb.flush()
        return {**row, "seconds": seconds, **scores}

    def _flush(self) -> None:
        """Move the losses summed on the device into the running means (one sync)."""
        if self._n == 0:
            return
        total = float(self._pending)
        self.last_loss = total / self._n
        self._epoch_sum, self._epoch_n = self._epoch_sum + total, self._epoch_n + self._n
        self._pending, self._n = torch.zeros((), device=self._pending.device), 0

    def state_dict(self) -> dict:
        """Running sums not yet written, for the checkpoint (a resumed log then matches)."""
        return {
            "pending": float(self._pending),
            "n": self._n,
            "last_loss": self.last_loss,
            "epoch_sum": self._epoch_sum,
            "epoch_n": self._epoch_n,
        }

    def load_state_dict(self, state: dict) -> None:
        self._pending = torch.tensor(state["pending"], device=self.device)
        self._n = state["n"]
        self.last_loss, self._epoch_sum, self._epoch_n = (
            state["last_loss"],
            state["epoch_sum"],
            state["epoch_n"],
        )

    def _row(self, values: dict) -> None:
        if not self.enabled:
            return
        values = {**values, "gpu_mem_gib": self._peak_memory()}
        with self.path.open("a", newline="") as f:
            f.write(",".join(_fmt(values.get(c, "")) for c in COLUMNS) + "\n")

    def _peak_memory(self) -> float:
        """GiB of GPU memory held for tensors since the previous row (NaN off CUDA); a host
        read of the allocator's counters, no device sync."""
        if self.device is None or self.device.type != "cuda":
            return math.nan
        peak = torch.cuda.max_memory_allocated(self.device) / 2**30
        torch.cuda.reset_peak_memory_stats(self.device)
        return peak

    def close(self) -> None:
        if self.enabled:
            self.tb.close()


def validation_line(row: dict, total: int, saved: str = "") -> str:
    """The line a validation prints, from its log row, e.g. ``train: epoch 2, step 40/60: loss
    0.3120, val loss 0.2987, val BSS 0.114, val AUC 0.861, 14 s; best.pt written``."""
    scores = ", ".join(
        f"{label} {row[key]:{fmt}}"
        for label, key, fmt in (
            ("loss", "train_loss", ".4f"),
            ("val loss", "val_loss", ".4f"),
            ("val BSS", "val_bss", ".3f"),
            ("val AUC", "val_auc", ".3f"),
        )
        if key in row
    )
    where = f"epoch {row['epoch'] + 1}, step {row['step']}/{total}"
    return f"train: {where}: {scores}, {duration(row['seconds'])}{saved}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return str(v)
