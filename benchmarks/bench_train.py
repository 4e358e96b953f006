"""Training and prediction speed of the lightning forecaster's recurrent cores (run by hand).

For every variant, in one run and with the same config: training samples/s, achieved GFLOP/s
(FLOPs of one forward + backward counted by ``torch.utils.flop_counter.FlopCounterMode``:
convolutions and matrix products, not element-wise work), peak memory of training, and the
latency of one CONUS 0.25 deg forecast (104 x 236 cells, batch 1, 7 input steps).

Variants: our cells ``convrnn``, ``convgru``, ``convlstm``, ``flat``, and ``ref-convlstm``: our
model with its core swapped for a plain unfused ConvLSTM written below (four separate gate
convolutions of cat(x, h), stepping with ``x[:, t]``), which has exactly the same parameters as
``convlstm``; the benchmark first checks that both compute the same forecast.

All variants are timed in this one process, interleaved (A B C A B C ...), and each keeps the
fastest of ``--repeats`` (>= 3) rounds (a round's time is the median of its ``--steps`` steps):
another job on the cores then slows every variant alike and the ratios hold. The thread count
comes from ``--threads`` or the usable cores (CPU affinity), never from the load; the load average
is printed with the table. Peak memory on CPU is measured apart, each variant in a fresh
subprocess (growth of its own ``VmHWM`` over a few training steps; CUDA: ``max_memory_allocated`` in
this process), as it does not depend on the load.

    python benchmarks/bench_train.py --steps 10 --threads 2
    python benchmarks/bench_train.py --quick      # tiny sizes: checks that it runs
    python benchmarks/bench_train.py --device cuda --amp bf16 --compile --batch 32
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import math
import os
import subprocess
import sys
import time

import torch
from peak_memory import own_peak_mb
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from data_prep.cores import usable_cores
from forecast.config import ModelConfig
from forecast.model.losses import build_loss
from forecast.model.network import build_model, count_parameters
from forecast.training.distributed import cpu_threads

VARIANTS = ("convrnn", "convgru", "convlstm", "ref-convlstm", "flat")
CONUS = (104, 236)


class RefConvLSTMCore(nn.Module):
    """Plain unfused ConvLSTM stack: one conv per gate on cat(x, h), time indexed with x[:, t]."""

    def __init__(self, in_channels: int, hidden: tuple[int, ...], k: int):
        super().__init__()
        widths = (in_channels, *hidden)
        self.layers = nn.ModuleList(
            nn.ModuleDict({g: nn.Conv2d(a + b, b, k, padding=k // 2) for g in "ifog"})
            for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        self.hidden = hidden
        self.out_channels = hidden[-1]

    def forward(self, z: Tensor) -> Tensor:
        """z (B, T, C, h, w) -> last hidden of the top layer (B, hidden[-1], h, w)."""
        for gates, hid in zip(self.layers, self.hidden, strict=True):
            h = z.new_zeros(z.shape[0], hid, *z.shape[3:])
            c = torch.zeros_like(h)
            outs = []
            for t in range(z.shape[1]):
                xh = torch.cat([z[:, t], h], dim=1)
                i, f = torch.sigmoid(gates["i"](xh)), torch.sigmoid(gates["f"](xh))
                o, g = torch.sigmoid(gates["o"](xh)), torch.tanh(gates["g"](xh))
                c = f * c + i * g
                h = o * torch.tanh(c)
                outs.append(h)
            z = torch.stack(outs, dim=1)
        return h

    def load_fused(self, fused: nn.Module) -> None:
        """Copy the weights of our fused ConvLSTM core (gate order i, f, o, g)."""
        for gates, cell in zip(self.layers, fused.cells, strict=True):
            for conv, w, b in zip(
                gates.values(), cell.conv.weight.chunk(4), cell.conv.bias.chunk(4), strict=True
            ):
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(b)


def make_model(variant: str, cfg: ModelConfig, n_out: int) -> nn.Module:
    """Our model for ``variant``; ``ref-convlstm`` is ``convlstm`` with the reference core."""
    cell = "convlstm" if variant == "ref-convlstm" else variant
    model = build_model(dataclasses.replace(cfg, cell=cell), 7, n_out)
    if variant == "ref-convlstm":
        model.core = reference_core(model.core, cfg)
    return model


def reference_core(fused: nn.Module, cfg: ModelConfig) -> RefConvLSTMCore:
    """The reference ConvLSTM core holding the weights of our fused one."""
    ref = RefConvLSTMCore(cfg.encoder_channels[-1], tuple(cfg.hidden_channels), cfg.kernel_size)
    ref.load_fused(fused)
    return ref


def check_reference(cfg: ModelConfig, n_out: int) -> float:
    """Max |logit difference| between our convlstm and the reference holding the same weights."""
    torch.manual_seed(0)
    ours = make_model("convlstm", cfg, n_out)
    nn.init.normal_(ours.head.weight, std=0.1)
    ref = copy.deepcopy(ours)
    ref.core = reference_core(ours.core, cfg)
    x = torch.rand(2, 5, 7, 29, 45)
    with torch.no_grad():
        return (ours(x) - ref(x)).abs().max().item()


def batch(args, device) -> tuple[Tensor, Tensor, Tensor]:
    """Random x (B, T, 7, H, W), y (B, n_out, n_thr, H, W), mask (B, n_out, H, W)."""
    B, H, W = args.batch, args.height, args.width
    x = torch.rand(B, args.n_in, 7, H, W, device=device)
    x[:, :, 2] = 0.02 + 0.3 * x[:, :, 2]  # climatology channel is a probability
    y = (torch.rand(B, args.n_out, len(args.thresholds), H, W, device=device) < 0.1).float()
    return x, y, torch.ones(B, args.n_out, H, W, device=device)


def autocast(args, device):
    enabled = args.amp != "off"
    dtype = torch.float16 if args.amp == "fp16" else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=enabled)


def train_step(model, opt, loss_fn, data, args, device) -> None:
    x, y, mask = data
    with autocast(args, device):
        loss = loss_fn(model(x), y, mask)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def count_flops(model, loss_fn, data, args, device) -> float:
    """FLOPs of one training forward + backward (FlopCounterMode, uncompiled model)."""
    x, y, mask = data
    with FlopCounterMode(display=False) as counter:
        with autocast(args, device):
            loss = loss_fn(model(x), y, mask)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def median_seconds(fn, n: int, device) -> float:
    """Median wall seconds of ``n`` calls of ``fn``."""
    times = []
    for _ in range(n):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


class Variant:
    """One variant's model, optimizer and compiled step, ready to be timed again and again."""

    def __init__(self, name: str, args, device, data):
        torch.manual_seed(0)
        self.name, self.args, self.device, self.data = name, args, device, data
        self.model = make_model(name, model_config(args), args.n_out).to(device)
        if args.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.loss_fn = build_loss("bce")
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=1e-3)
        self.run = torch.compile(self.model) if args.compile else self.model
        self.flops = count_flops(self.model, self.loss_fn, data, args, device)
        self.x_predict = torch.rand(1, args.n_in, 7, *args.predict_shape, device=device)
        self.x_predict[:, :, 2] = 0.1

    def train_step(self) -> None:
        self.model.train()
        train_step(self.run, self.opt, self.loss_fn, self.data, self.args, self.device)

    def predict(self) -> None:
        self.model.eval()
        with torch.inference_mode(), autocast(self.args, self.device):
            self.run(self.x_predict)


def time_variants(args, device) -> list[dict]:
    """Every variant timed in this process, interleaved; the fastest round of each is kept."""
    data = batch(args, device)
    variants = [Variant(v, args, device, data) for v in args.variants]
    for v in variants:  # warm up (and compile) every variant before any is timed
        for _ in range(args.warmup):
            v.train_step()
        for _ in range(2):
            v.predict()
    train_s = dict.fromkeys(args.variants, math.inf)
    predict_s = dict.fromkeys(args.variants, math.inf)
    for _ in range(args.repeats):
        for v in variants:
            train_s[v.name] = min(train_s[v.name], median_seconds(v.train_step, args.steps, device))
        for v in variants:
            predict_s[v.name] = min(
                predict_s[v.name], median_seconds(v.predict, args.predict_repeats, device)
            )
    return [
        {
            "variant": v.name,
            "params": count_parameters(v.model),
            "samples_s": args.batch / train_s[v.name],
            "ms_step": 1000 * train_s[v.name],
            "gflop_step": v.flops / 1e9,
            "gflop_s": v.flops / train_s[v.name] / 1e9,
            "predict_ms": 1000 * predict_s[v.name],
            "peak_mb": cuda_peak_mb(v, args, device) if device.type == "cuda" else math.nan,
        }
        for v in variants
    ]


def cuda_peak_mb(v: Variant, args, device) -> float:
    """Peak CUDA memory of a few training steps of ``v``."""
    torch.cuda.reset_peak_memory_stats(device)
    for _ in range(2):
        v.train_step()
    return torch.cuda.max_memory_allocated(device) / 2**20


def cpu_peak_mb(args) -> float:
    """Growth of this process's own peak resident memory (``VmHWM``, :mod:`peak_memory`) over
    the warm-up and one training step of ``args.only`` (run in a fresh subprocess, so that the
    peak is this variant's own)."""
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    data = batch(args, device)
    rss0 = own_peak_mb()
    v = Variant(args.only, args, device, data)
    for _ in range(args.warmup + 1):
        v.train_step()
    return own_peak_mb() - rss0


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def model_config(args) -> ModelConfig:
    return ModelConfig(
        encoder_channels=tuple(args.encoder),
        hidden_channels=tuple(args.hidden),
        thresholds=tuple(args.thresholds),
    )


def cpu_peaks(args, argv: list[str]) -> dict[str, float]:
    """Peak MB of each variant, each in its own subprocess (its own ``VmHWM``)."""
    peaks = {}
    for variant in args.variants:
        cmd = [sys.executable, __file__, *argv, "--only", variant, "--threads", str(args.threads)]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
        peaks[variant] = json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"]
    return peaks


def format_table(rows: list[dict]) -> str:
    """One row per variant; the last two columns are speed ratios to the unfused reference
    ConvLSTM (training samples/s and predict latency) measured in the same run."""
    ref = next((r for r in rows if r["variant"] == "ref-convlstm"), None)
    head = (
        f"{'variant':<13}{'params':>9}{'samples/s':>11}{'ms/step':>9}{'GFLOP/step':>12}"
        f"{'GFLOP/s':>9}{'peak MB':>9}{'predict ms':>12}{'train vs ref':>14}{'predict vs ref':>16}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        train_x = f"{r['samples_s'] / ref['samples_s']:.2f}x" if ref else "-"
        predict_x = f"{ref['predict_ms'] / r['predict_ms']:.2f}x" if ref else "-"
        lines.append(
            f"{r['variant']:<13}{r['params']:>9,d}{r['samples_s']:>11.1f}{r['ms_step']:>9.1f}"
            f"{r['gflop_step']:>12.2f}{r['gflop_s']:>9.1f}{r['peak_mb']:>9.0f}{r['predict_ms']:>12.1f}"
            f"{train_x:>14}{predict_x:>16}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    p.add_argument("--compile", action="store_true", help="torch.compile the model (slow start)")
    p.add_argument("--steps", type=int, default=10, help="timed training steps per variant")
    p.add_argument("--warmup", type=int, default=2, help="untimed training steps first")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--height", type=int, default=32)
    p.add_argument("--width", type=int, default=48)
    p.add_argument("--n-in", type=int, default=7)
    p.add_argument("--n-out", type=int, default=3)
    p.add_argument("--encoder", type=int, nargs="+", default=list(ModelConfig.encoder_channels))
    p.add_argument("--hidden", type=int, nargs="+", default=list(ModelConfig.hidden_channels))
    p.add_argument("--thresholds", type=int, nargs="+", default=[1])
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads; 0 = usable cores")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--predict-repeats", type=int, default=5, help="timed forecasts per round")
    p.add_argument("--repeats", type=int, default=3, help="interleaved rounds, fastest kept")
    p.add_argument("--no-memory", action="store_true", help="skip the CPU peak-memory runs")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks that it runs")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--only", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeats < 3 and not args.quick:
        p.error("--repeats must be at least 3: the fastest of fewer rounds still carries the load")
    args.threads = args.threads or cpu_threads(1)
    args.predict_shape = CONUS
    if args.quick:
        args.height, args.width, args.batch, args.steps, args.warmup = 16, 24, 2, 2, 1
        args.predict_repeats, args.predict_shape, args.no_memory = 2, (16, 24), True
        args.encoder, args.hidden = [4, 8], [8]
    return args


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.only:
        print(json.dumps({"peak_mb": cpu_peak_mb(args)}))
        return
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    diff = check_reference(model_config(args), args.n_out)
    print(
        f"torch {torch.__version__}  device {device}  threads {args.threads} of "
        f"{usable_cores()} usable cores  amp {args.amp}  compile {args.compile}  "
        f"channels_last {args.channels_last}"
    )
    h, w = args.predict_shape
    print(
        f"train batch {args.batch} x {args.n_in} steps x {args.height}x{args.width}, "
        f"{args.n_out} leads, encoder {args.encoder}, hidden {args.hidden}; "
        f"predict: batch 1 x {args.n_in} steps x {h}x{w}; variants interleaved in one process, "
        f"fastest of {args.repeats} rounds (median of {args.steps} steps each)"
    )
    print(f"reference check: our fused convlstm vs ref-convlstm, max |logit diff| = {diff:.2e}")
    if not diff < 1e-4:  # a ratio to a reference that computes something else means nothing
        raise SystemExit(f"ref-convlstm differs from our convlstm by {diff:.2e}: fix the reference")
    load = os.getloadavg()[0]
    rows = time_variants(args, device)
    after = os.getloadavg()[0]
    if device.type == "cpu" and not args.no_memory:
        peaks = cpu_peaks(args, argv)
        for r in rows:
            r["peak_mb"] = peaks[r["variant"]]
    print(format_table(rows))
    # Other work on the cores slows every variant alike here; the load says how much there was.
    print(f"load average before / after timing: {load:.2f} / {after:.2f}")


if __name__ == "__main__":
    main()
