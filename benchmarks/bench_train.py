"""Training and prediction speed of the lightning forecaster's recurrent cores (run by hand).

For every variant, in one run and with the same config: training samples/s, achieved GFLOP/s
(FLOPs of one forward + backward counted by ``torch.utils.flop_counter.FlopCounterMode``:
convolutions and matrix products, not element-wise work), peak memory of training, and the
latency of one CONUS 0.25 deg forecast (104 x 236 cells, batch 1, 7 input steps).

Variants: our cells ``convrnn``, ``convgru``, ``convlstm``, ``flat``, and ``ref-convlstm``: our
model with its core swapped for a plain unfused ConvLSTM written below (four separate gate
convolutions of cat(x, h), stepping with ``x[:, t]``), which has exactly the same parameters as
``convlstm``; the benchmark first checks that both compute the same forecast.

Each variant runs in a fresh subprocess so that its peak memory (CPU: ``ru_maxrss`` delta over
the training loop; CUDA: ``torch.cuda.max_memory_allocated``) is its own.

    python benchmarks/bench_train.py --steps 10 --threads 2
    python benchmarks/bench_train.py --device cuda --amp bf16 --compile --batch 32
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from forecast.config import ModelConfig
from forecast.model.losses import build_loss
from forecast.model.network import build_model, count_parameters

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


def time_training(model, loss_fn, data, args, device) -> tuple[float, float]:
    """(median seconds per training step, peak MB) over ``args.steps`` timed steps.

    Peak memory: CUDA max_memory_allocated, or on CPU the growth of the process's ru_maxrss from
    before the first step (model and batch already built) to the end.
    """
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    step = torch.compile(model) if args.compile else model
    times = []
    for i in range(args.warmup + args.steps):
        sync(device)
        t0 = time.perf_counter()
        train_step(step, opt, loss_fn, data, args, device)
        sync(device)
        if i >= args.warmup:
            times.append(time.perf_counter() - t0)
    seconds = sorted(times)[len(times) // 2]  # median: robust to other work on a shared machine
    if device.type == "cuda":
        return seconds, torch.cuda.max_memory_allocated(device) / 2**20
    return seconds, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024


def time_predict(model, args, device) -> float:
    """Median milliseconds of one CONUS 0.25 forecast (batch 1, n_in steps, 104 x 236)."""
    model.eval()
    run = torch.compile(model) if args.compile else model
    x = torch.rand(1, args.n_in, 7, *CONUS, device=device)
    x[:, :, 2] = 0.1
    times = []
    with torch.inference_mode():
        for i in range(args.predict_repeats + 2):
            sync(device)
            t0 = time.perf_counter()
            with autocast(args, device):
                run(x)
            sync(device)
            if i >= 2:  # the first calls warm up (and compile)
                times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


def run_one(args) -> dict:
    """Benchmark one variant in this process; returns one table row."""
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(0)
    cfg = model_config(args)
    model = make_model(args.only, cfg, args.n_out).to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = build_loss("bce")
    data = batch(args, device)
    seconds, peak_mb = time_training(model, loss_fn, data, args, device)
    flops = count_flops(model, loss_fn, data, args, device)
    return {
        "variant": args.only,
        "params": count_parameters(model),
        "samples_s": args.batch / seconds,
        "ms_step": 1000 * seconds,
        "gflop_step": flops / 1e9,
        "gflop_s": flops / seconds / 1e9,
        "peak_mb": peak_mb,
        "predict_ms": time_predict(model, args, device),
    }


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


def run_all(args, argv: list[str]) -> list[dict]:
    """Every variant in its own subprocess (clean peak memory), rows in order."""
    rows = []
    for variant in args.variants:
        cmd = [sys.executable, __file__, *argv, "--only", variant]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            sys.exit(f"variant {variant} failed:\n{done.stderr[-3000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"  done {variant}", file=sys.stderr)
    return rows


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
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--predict-repeats", type=int, default=5)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    p.add_argument("--only", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.only:
        print(json.dumps(run_one(args)))
        return
    device = pick_device(args.device)
    diff = check_reference(model_config(args), args.n_out)
    print(
        f"torch {torch.__version__}  device {device}  threads {args.threads}  amp {args.amp}  "
        f"compile {args.compile}  channels_last {args.channels_last}"
    )
    print(
        f"train batch {args.batch} x {args.n_in} steps x {args.height}x{args.width}, "
        f"{args.n_out} leads, encoder {args.encoder}, hidden {args.hidden}; "
        f"predict: batch 1 x {args.n_in} steps x {CONUS[0]}x{CONUS[1]}"
    )
    print(f"reference check: our fused convlstm vs ref-convlstm, max |logit diff| = {diff:.2e}")
    if not diff < 1e-4:  # a ratio to a reference that computes something else means nothing
        raise SystemExit(f"ref-convlstm differs from our convlstm by {diff:.2e}: fix the reference")
    load = os.getloadavg()[0]
    rows = run_all(args, argv)
    # Other work on the cores slows small multi-threaded ops many-fold; show it beside the table.
    print(format_table(rows))
    print(f"load average before / after: {load:.1f} / {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
