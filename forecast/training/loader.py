"""Batches of windows for training and validation: worker processes, prefetching, pinned memory.

Each worker process reads maps through a handle of its own (see
:class:`forecast.training.steps.MapSteps`: the handle is opened on the worker's first read), so no
netCDF/HDF5 handle crosses a ``fork``. Workers persist across epochs, so each keeps its handle and
its cache of featurised steps for the whole run. Batches prepared ahead are bounded in bytes as
well as in number: an hourly conus-0.1 window is about 70 MB, and four batches of two ahead in
each of two workers would hold 1.1 GB per loader.
"""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from data_prep.heap import return_large_blocks
from forecast.training.signals import held_while_forking, ignore_in_worker, stop_workers_at_exit

PREFETCH_BATCHES = 4  # most batches each worker prepares ahead
PREFETCH_BYTES = 256 * 2**20  # the batches all workers hold ahead together stay within this


def make_loader(
    dataset: Dataset,
    sampler: Sampler,
    *,
    batch_size: int,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """Batches in ``sampler``'s order; worker processes and pinned memory keep the GPU fed.

    ``device`` only decides whether memory is pinned (on CUDA). Workers persist across epochs
    and prefetch :func:`prefetch_batches` batches each (``dataset.item_bytes()`` sizes them).
    The loader gets its own seeded generator, so making an iterator does not draw from the
    global random state (a resumed run draws what the uninterrupted one drew). ``drop_last``:
    leave out a last batch smaller than ``batch_size``.
    """
    workers = int(num_workers)
    if workers > 0:
        stop_workers_at_exit()
    return _Loader(
        dataset,
        batch_size=int(batch_size),
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.device(device).type == "cuda",
        persistent_workers=workers > 0,
        prefetch_factor=prefetch_batches(_item_bytes(dataset), int(batch_size), workers),
        generator=torch.Generator().manual_seed(int(seed)),
        drop_last=drop_last,
        worker_init_fn=_seed_worker if workers > 0 else None,
    )


def start_workers(loader: DataLoader) -> None:
    """Fork the persistent workers of ``loader`` now rather than at its first pass (they then
    fetch their first batches; a pass begun later sets them back to its start)."""
    if loader.num_workers > 0 and loader.persistent_workers:
        iter(loader)


def prefetch_batches(item_bytes: int, batch_size: int, workers: int) -> int | None:
    """Batches each of ``workers`` prepares ahead: ``PREFETCH_BATCHES``, fewer where the
    batches in flight would pass ``PREFETCH_BYTES``, at least one; None without workers.
    ``item_bytes`` 0 (unknown) gives ``PREFETCH_BATCHES``."""
    if workers <= 0:
        return None
    in_flight = int(item_bytes) * int(batch_size) * workers  # one batch ahead per worker
    if in_flight <= 0:
        return PREFETCH_BATCHES
    return max(1, min(PREFETCH_BATCHES, PREFETCH_BYTES // in_flight))


def _item_bytes(dataset: Dataset) -> int:
    """Bytes of one item of ``dataset`` as it states them (``item_bytes()``), else 0."""
    size = getattr(dataset, "item_bytes", None)
    return int(size()) if callable(size) else 0


class _Loader(DataLoader):
    """A DataLoader whose workers never die of a signal meant for the main process: it forks them
    with SIGTERM and SIGINT held back (see :mod:`forecast.training.signals`)."""

    def __iter__(self):
        with held_while_forking():
            return super().__iter__()


def _seed_worker(worker_id: int) -> None:
    """Seed numpy and random in each worker from torch's per-worker seed, map its large arrays
    (:func:`data_prep.heap.return_large_blocks`: a worker featurising hourly conus-0.1 steps
    otherwise held 870 MB of heap beside a 128 MB step cache), and leave SIGTERM and
    Ctrl-C to the main process: a batch scheduler or a terminal signals the whole process group,
    and a worker killed first would abort training before it saves ``last.pt``. The main process
    stops its workers itself when it leaves."""
    ignore_in_worker()
    return_large_blocks()  # featurised steps freed go back, not into a growing heap
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - code in workers may use the global numpy generator
    random.seed(seed)
