"""One process per GPU under ``torchrun``, one process otherwise.

``torchrun --nproc_per_node 4 -m forecast train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; :func:`setup` then joins the process group (NCCL on GPUs, gloo on CPU) and each
process takes its own device. Without those variables everything runs in one process and the
helpers below do nothing.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as td
from torch.utils.data import Sampler

from data_prep.cores import usable_cores
from data_prep.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """Where this process stands: ``rank`` of ``world`` processes, on ``device``."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` -> the first CUDA device when present, else CPU; ``cpu``, ``cuda``, ``cuda:N``."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise UserError(
            f"config: device {spec!r} is not a device; use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"config: device {spec!r} asked for, but no CUDA GPU is visible; use device=cpu"
        )
    return device


def setup(device_spec: str = "auto") -> Dist:
    """Join the ``torchrun`` process group when there is one; pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_spec)
    if world == 1:
        return Dist(0, 1, device)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not td.is_initialized():
        td.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world, device)


@contextlib.contextmanager
def session(device_spec: str = "auto", threads: int = 0, tf32: bool = True) -> Iterator[Dist]:
    """:func:`setup`, then :func:`torch_threads` for its device and, on CUDA,
    :func:`cuda_settings`; on leaving, the previous settings and :func:`teardown`."""
    dist = setup(device_spec)
    try:
        with torch_threads(dist.device, threads, dist.world), cuda_settings(dist.device, tf32=tf32):
            yield dist
    finally:
        teardown(dist)


@contextlib.contextmanager
def torch_threads(device: torch.device, threads: int = 0, world: int = 1) -> Iterator[int]:
    """On CPU, ``threads`` torch threads, or with 0 :func:`cpu_threads`; the previous count is
    restored on leaving. Yields the count used (the current one on a GPU)."""
    if threads < 0:
        raise UserError(f"threads {threads}: give 0 (the usable cores) or a count >= 1")
    previous = torch.get_num_threads()
    if torch.device(device).type == "cpu":
        torch.set_num_threads(threads if threads > 0 else cpu_threads(world))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


@contextlib.contextmanager
def cuda_settings(device: torch.device, *, tf32: bool = True) -> Iterator[None]:
    """On CUDA: cuDNN picks the fastest convolution algorithm for each input shape (batches have
    one shape, so it measures once), and float32 matmuls and convolutions run in TF32 (``tf32``,
    ``train.tf32``) on GPUs that have it. Nothing on CPU. The previous settings come back after.
    """
    if device.type != "cuda":
        yield
        return
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = True
    try:
        with tf32_mode(tf32):
            yield
    finally:
        torch.backends.cudnn.benchmark = benchmark


# PyTorch >= 2.9 sets TF32 per backend with ``fp32_precision`` ("tf32" / "ieee"); older ones with
# ``allow_tf32``. The two may not be mixed, so the newer is used where it exists.
_NEW_TF32 = hasattr(torch.backends.cuda.matmul, "fp32_precision")
_TF32_BACKENDS = (
    (torch.backends.cuda.matmul, torch.backends.cudnn.conv, torch.backends.cudnn.rnn)
    if _NEW_TF32
    else (torch.backends.cuda.matmul, torch.backends.cudnn)
)


def tf32_flags() -> tuple:
    """The TF32 settings of CUDA matmuls and cuDNN (on a CPU-only build they do nothing)."""
    attr = "fp32_precision" if _NEW_TF32 else "allow_tf32"
    return tuple(getattr(b, attr) for b in _TF32_BACKENDS)


def _set_tf32_flags(values: tuple) -> None:
    attr = "fp32_precision" if _NEW_TF32 else "allow_tf32"
    for backend, value in zip(_TF32_BACKENDS, values, strict=True):
        setattr(backend, attr, value)


@contextlib.contextmanager
def tf32_mode(enabled: bool) -> Iterator[None]:
    """Float32 matmuls and convolutions on CUDA in TF32 (``enabled``) or in full float32."""
    value = ("tf32" if enabled else "ieee") if _NEW_TF32 else enabled
    previous = tf32_flags()
    _set_tf32_flags((value,) * len(_TF32_BACKENDS))
    try:
        yield
    finally:
        _set_tf32_flags(previous)


def cpu_threads(world: int = 1) -> int:
    """Torch threads per process: the usable cores (CPU affinity) shared among ``world``
    processes. Never chosen from the load average (see :mod:`data_prep.cores`): on a machine
    shared with other jobs, set ``train.threads`` / ``--threads`` (1 is often fastest there: on a
    busy 2-core machine a training step took 6.1 s with 2 threads and 0.37 s with 1)."""
    return max(1, usable_cores() // world)


def teardown(dist: Dist) -> None:
    """Leave the process group that :func:`setup` joined."""
    if dist.world > 1 and td.is_initialized():
        td.destroy_process_group()


def all_sum(x: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Sum of ``x`` over all processes (``x`` itself with one process)."""
    if dist.world == 1:
        return x
    y = x.to(dist.device).clone()
    td.all_reduce(y)
    return y.to(x.device)


def all_max(x: torch.Tensor, dist: Dist) -> torch.Tensor:
    """Elementwise maximum of ``x`` over all processes (``x`` itself with one process)."""
    if dist.world == 1:
        return x
    y = x.to(dist.device).clone()
    td.all_reduce(y, op=td.ReduceOp.MAX)
    return y.to(x.device)


def autocast(device: torch.device, dtype: torch.dtype | None):
    """Mixed precision in ``dtype`` (bf16 / fp16) on ``device``; a no-op context for ``None``."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def inference_precision(device: torch.device) -> Iterator[None]:
    """The precision of every forward pass outside training: float32, autocast off, TF32 off.

    Validation, the calibration fit and ``predict`` (and so ``evaluate``) all run the model in
    this context, whatever ``train.amp`` and ``train.tf32`` say, so the calibration is fitted on
    the very logits it is applied to (bf16 logits differ from float32 ones by about 1e-2, TF32
    ones by about 1e-3; ``predict`` runs in a process of its own, where PyTorch's defaults
    would give cuDNN convolutions TF32 but matmuls not).
    """
    with torch.autocast(device.type, enabled=False), tf32_mode(False):
        yield


def barrier(dist: Dist) -> None:
    if dist.world > 1:
        td.barrier()


def broadcast_object(obj, dist: Dist):
    """The main process's ``obj`` (any picklable object) on every process."""
    if dist.world == 1:
        return obj
    box = [obj]
    td.broadcast_object_list(box, src=0)
    return box[0]


def on_main(dist: Dist, fn: Callable[[], T]) -> T:
    """``fn()`` run once, on the main process; its result on every process.

    For work that writes a shared file or costs a pass over the data (the window index, the
    feature statistics): the processes wait for it instead of all doing it at once. A
    :class:`UserError` of ``fn`` is raised on every process, so none is left waiting.
    """
    if dist.world == 1:
        return fn()
    outcome = None
    if dist.is_main:
        try:
            outcome = (fn(), None)
        except UserError as e:
            outcome = (None, e)
    value, error = broadcast_object(outcome, dist)
    if error is not None:
        raise error
    return value


class ShardSampler(Sampler[int]):
    """This process's share of a dataset, reshuffled per epoch as a pure function of (seed, epoch).

    With ``shuffle`` the order is a permutation seeded by ``seed + epoch``, padded by wrapping so
    every process gets ``ceil(n / world)`` items (equal step counts keep DDP in lockstep). ``skip``
    drops the first items of the epoch: resuming mid-epoch sees exactly the remaining ones.
    Without ``shuffle`` (validation) each process gets ``range(rank, n, world)``, unpadded.
    """

    def __init__(
        self, n: int, *, rank: int = 0, world: int = 1, shuffle: bool = True, seed: int = 0
    ):
        self.n, self.rank, self.world, self.shuffle, self.seed = n, rank, world, shuffle, seed
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def indices(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self.rank, self.n, self.world)
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        per = math.ceil(self.n / self.world)
        order = np.resize(order, per * self.world)  # wrap-around padding
        return order[self.rank :: self.world][self.skip :]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return len(self.indices())
