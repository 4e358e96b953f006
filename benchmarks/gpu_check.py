"""One prepared check of the GPU path: speed, a short training run and CPU-vs-GPU agreement.

    PYTHONPATH=. python benchmarks/gpu_check.py --out gpu.json

Needs only torch, numpy and PyYAML: it imports nothing of the project beyond ``forecast.model``
and ``forecast.config`` and makes its data as tensors, so it runs from the source tree on a GPU
machine without netCDF4, xarray or dask, with that machine's PyTorch and no network. Steps, one
table row each, in this order (``--budget`` seconds in all: a step that may not fit is skipped,
one still running when they run out is stopped; both say so):

1. ``matmul``: the bf16 matmul peak, TFLOP/s (best of 10 runs of 5 products of 8192^2 matrices).
2. ``train``: 200 steps of the quickstart model (``configs/quickstart.yaml``: ConvGRU, encoder
   [16, 32], hidden [32], 7 inputs, 3 leads, grid 32 x 48, batch 16) under bf16 autocast on
   data it can learn (the target is where the last input map is high): the loss must fall and
   stay finite.
3. ``agree``: one forecast of that model on CPU and on the GPU, both float32 with autocast and
   TF32 off (the precision of validation and predict): max abs probability difference, 1e-3 at
   most.
4. ``step``: forward, backward and AdamW of that model at conus-0.25 (104 x 236, batch 64, 6.1
   GFLOP a sample) and conus-0.1 (260 x 590, batch 16, 38 GFLOP a sample) under bf16 autocast,
   eager or compiled, NCHW or channels-last (-cl): samples/s, achieved TFLOP/s (convolution and
   matmul FLOPs of a step counted once per grid by ``FlopCounterMode``; the variants run the
   same operations), the share of the matmul peak, peak memory. 3 warm-up steps, 10 timed.

On CPU (or with ``--tiny``) the same steps run at tiny sizes (grid 16 x 24, 5 training steps,
float32, no compile) in seconds; the tests run it so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from forecast.config import load_experiment
from forecast.model.losses import build_loss
from forecast.model.network import build_model

IN_CHANNELS = 10  # forecast.training.features.N_CHANNELS (that module needs xarray)
QUICKSTART = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"
GRIDS = {"conus-0.25": ((104, 236), 64), "conus-0.1": ((260, 590), 16)}  # (H, W), batch
VARIANTS = ("eager", "eager-cl", "compile-cl", "compile")  # -cl: channels-last
TOLERANCE = 1e-3  # max abs probability difference, CPU vs GPU, float32


@dataclasses.dataclass
class Plan:
    """Sizes of every step: full on a GPU, tiny on CPU or with ``--tiny``."""

    tiny: bool
    matmul_n: int = 8192
    repeats: int = 10
    train_grid: tuple[int, int] = (32, 48)
    train_batch: int = 16
    train_steps: int = 200
    warmup: int = 3
    timed: int = 10
    grids: dict = dataclasses.field(default_factory=lambda: dict(GRIDS))

    @classmethod
    def make(cls, tiny: bool) -> Plan:
        if not tiny:
            return cls(False)
        grids = {name: ((16, 24), 2) for name in GRIDS}
        return cls(True, 256, 2, (16, 24), 4, 5, 1, 2, grids)


def amp(device: torch.device):
    """bf16 autocast on CUDA; float32 on CPU, where bf16 is emulated on most cores and slow."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_tf32(enabled: bool) -> list:
    """TF32 for CUDA float32 matmuls and convolutions on or off (as ``train.tf32``); returns the
    settings before. Newer PyTorch: ``fp32_precision``."""
    new = hasattr(torch.backends.cuda.matmul, "fp32_precision")
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn.conv) if new else (
        torch.backends.cuda.matmul, torch.backends.cudnn)  # fmt: skip
    attr = "fp32_precision" if new else "allow_tf32"
    old = [(b, attr, getattr(b, attr)) for b in backends]
    for b in backends:
        setattr(b, attr, ("tf32" if enabled else "ieee") if new else enabled)
    return old


@contextlib.contextmanager
def full_float32():
    """Float32 without TF32 on CUDA, as ``forecast.training.distributed.inference_precision``."""
    old = set_tf32(False)
    try:
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            yield
    finally:
        for backend, attr, value in old:
            setattr(backend, attr, value)


def matmul_peak(plan: Plan, device: torch.device) -> dict:
    """Best matmul throughput over ``repeats`` runs of 5 n x n x n products, TFLOP/s: bf16 on
    CUDA, float32 on CPU (the precision of the training steps there)."""
    n, dtype = plan.matmul_n, torch.bfloat16 if device.type == "cuda" else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    a @ b  # warm up (cuBLAS handle, kernel choice)
    best = math.inf
    for _ in range(plan.repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(5):
            a @ b
        sync(device)
        best = min(best, (time.perf_counter() - t0) / 5)
    tflops = 2 * n**3 / best / 1e12
    return {"tflop_s": tflops, "ok": tflops > 0}


def quickstart_model(device: torch.device, seed: int = 0) -> tuple[torch.nn.Module, object]:
    """The model of ``configs/quickstart.yaml`` (7 inputs, 3 leads), seeded, and its ``data``
    config section."""
    cfg = load_experiment(str(QUICKSTART))
    torch.manual_seed(seed)
    return build_model(cfg.model, IN_CHANNELS, cfg.data.n_out).to(device), cfg.data


def learnable_batch(batch: int, grid: tuple[int, int], n_in: int, n_out: int, device, gen):
    """x (B, n_in, C, H, W) uniform in [0, 1), climatology channel 0.1; y (B, n_out, 1, H, W)
    true where the last input's channel 0 exceeds 0.8 (persistence, learnable); mask all ones."""
    H, W = grid
    x = torch.rand(batch, n_in, IN_CHANNELS, H, W, generator=gen, device=device)
    x[:, :, 2] = 0.1  # the climatology channel (model.clim_channel) is a probability
    hot = (x[:, -1, 0] > 0.8).float()  # (B, H, W)
    y = hot[:, None, None].expand(batch, n_out, 1, H, W).contiguous()
    return x, y, torch.ones(batch, n_out, H, W, device=device)


def frames_channels_last(x: torch.Tensor) -> torch.Tensor:
    """As ``forecast.training.data.frames_channels_last``: memory (B, T, H, W, C)."""
    return x.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)


def training_run(plan: Plan, device: torch.device) -> tuple[dict, torch.nn.Module]:
    """``train_steps`` AdamW steps with bf16 autocast; the losses stay on the device to the end
    (no host read in the loop, as in training)."""
    model, data = quickstart_model(device)
    loss_fn = build_loss("bce")
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator(device=device).manual_seed(1)  # made on the device: no copy from the host
    losses = []
    t0 = time.perf_counter()
    for _ in range(plan.train_steps):
        x, y, mask = learnable_batch(
            plan.train_batch, plan.train_grid, data.n_in, data.n_out, device, gen
        )
        with amp(device):
            loss = loss_fn(model(x).float(), y, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.detach())
    sync(device)
    seconds = time.perf_counter() - t0
    values = torch.stack(losses).float().cpu().numpy()
    k = max(1, len(values) // 10)
    first, last = float(values[:k].mean()), float(values[-k:].mean())
    finite, falls = bool(np.isfinite(values).all()), last < first
    # a few steps of the tiny mode need not lower the loss yet: there it must stay finite
    ok = finite and (falls or plan.tiny)
    row = {"loss_first": first, "loss_last": last, "falls": falls, "finite": finite,
           "seconds": seconds, "ok": ok}  # fmt: skip
    return row, model


def agreement(model: torch.nn.Module, plan: Plan, device: torch.device) -> dict:
    """Max |P_cpu - P_device| of one forecast of ``model``, both in full float32."""
    gen = torch.Generator().manual_seed(2)
    x, _, _ = learnable_batch(2, plan.train_grid, 7, 3, "cpu", gen)
    model.eval()
    with torch.inference_mode(), full_float32():
        here = torch.sigmoid(model.to(device)(x.to(device))).cpu()
        cpu = torch.sigmoid(model.to("cpu")(x))
    model.to(device)
    diff = float((here - cpu).abs().max())
    return {"max_abs_diff": diff, "tolerance": TOLERANCE, "ok": diff <= TOLERANCE}


def step_flops(model, batch, device) -> float:
    """FLOPs of one forward + backward (FlopCounterMode, the eager model)."""
    x, y, mask = batch
    with FlopCounterMode(display=False) as counter:
        with amp(device):
            loss = build_loss("bce")(model(x).float(), y, mask)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops())


def time_variant(plan: Plan, device, grid: str, variant: str, state: State) -> dict:
    """One bench_train-style row: warm-up steps (and compilation), then ``timed`` steps timed
    together (one sync at each end, as a training loop without host reads runs)."""
    compiled, channels_last = variant.startswith("compile"), variant.endswith("-cl")
    if compiled and plan.tiny:
        return {"skipped": "tiny mode: no compile"}
    (H, W), B = plan.grids[grid]
    peak, flops = state.peak, state.flops
    if compiled:
        from torch import _dynamo  # heavy (seconds): only when compiling

        _dynamo.reset()  # a fresh compile, not a dynamic-shape one from the last grid
    model, data = quickstart_model(device)
    gen = torch.Generator(device=device).manual_seed(3)
    batch = learnable_batch(B, (H, W), data.n_in, data.n_out, device, gen)
    if grid not in flops:
        flops[grid] = step_flops(model, batch, device)
    x, y, mask = batch
    if channels_last:
        model, x = model.to(memory_format=torch.channels_last), frames_channels_last(x)
    net = torch.compile(model) if compiled else model
    opt, loss_fn = torch.optim.AdamW(model.parameters(), lr=1e-4), build_loss("bce")

    def step():
        with amp(device):
            loss = loss_fn(net(x).float(), y, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for _ in range(plan.warmup):
        step()
    sync(device)
    t1 = time.perf_counter()
    for _ in range(plan.timed):
        step()
    sync(device)
    seconds = (time.perf_counter() - t1) / plan.timed
    achieved = flops[grid] / seconds / 1e12
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {"batch": B, "grid": [H, W],
            "samples_s": B / seconds, "ms_step": 1000 * seconds, "tflop_step": flops[grid] / 1e12,
            "tflop_s": achieved, "of_peak": achieved / peak if peak > 0 else None, "peak_gib": mem,
            "warmup_s": t1 - t0, "ok": math.isfinite(seconds)}  # fmt: skip


# seconds a step is expected to need at most on a GPU: skipped when the budget has less left
NEEDS = {"matmul": 10, "train": 40, "agree": 10, "eager": 20, "compile": 90}


def plan_steps(plan: Plan, device: torch.device) -> list[tuple[str, str, object]]:
    """(check, variant, callable of the running state) in the order they run."""
    precision = "bf16" if device.type == "cuda" else "fp32"
    steps = [("matmul", f"{precision} {plan.matmul_n}^3", lambda s: matmul_peak(plan, device)),
             ("train", f"{plan.train_steps} steps {precision}", lambda s: s.train()),
             ("agree", f"cpu vs {device.type} fp32", lambda s: agreement(s.model, plan, device))]  # fmt: skip
    for v in VARIANTS:
        for g in plan.grids:
            steps.append(
                ("step", f"{g} {v}", lambda s, g=g, v=v: time_variant(plan, device, g, v, s))
            )
    return steps


@dataclasses.dataclass
class State:
    """What later steps use of earlier ones."""

    plan: Plan
    device: torch.device
    peak: float = math.nan
    model: torch.nn.Module | None = None
    flops: dict = dataclasses.field(default_factory=dict)

    def train(self) -> dict:
        row, self.model = training_run(self.plan, self.device)
        return row


class OverBudget(Exception):
    """The ``--budget`` seconds ran out (SIGALRM) in the middle of a step."""

    @classmethod
    def alarm(cls, signum, frame):
        raise cls("the time budget ran out during this step")


def run_checks(plan: Plan, device: torch.device, budget: float, out: Path) -> dict:
    """Every step in turn (skipped when the budget is short, stopped when it runs out, recorded
    when it fails); the table is written to ``out`` after each row, so a run cut short keeps
    what it measured."""
    state, start = State(plan, device), time.perf_counter()
    report = {"meta": meta(plan, device, budget), "rows": []}
    timer = not plan.tiny and hasattr(signal, "setitimer")
    if timer:  # a hard stop at the budget, even in the middle of a compilation
        signal.signal(signal.SIGALRM, OverBudget.alarm)
        signal.setitimer(signal.ITIMER_REAL, budget)
    try:
        for check, variant, call in plan_steps(plan, device):
            row = {"check": check, "variant": variant, "ok": None}
            row.update(run_step(state, check, variant, call, budget - time.perf_counter() + start))
            state.peak = row.get("tflop_s", math.nan) if check == "matmul" else state.peak
            report["rows"].append(row)
            print(format_row(row), flush=True)
            report["meta"]["seconds"] = time.perf_counter() - start
            out.write_text(json.dumps(report, indent=1))
    except OverBudget:  # between two steps: the rows so far are written
        pass
    finally:
        if timer:
            signal.setitimer(signal.ITIMER_REAL, 0)
    return report


def run_step(state: State, check: str, variant: str, call, left: float) -> dict:
    """One step's result, or why it was skipped or failed."""
    kind = "compile" if "compile" in variant else "eager" if check == "step" else check
    if not state.plan.tiny and left < NEEDS[kind]:
        return {"skipped": f"time budget: {max(left, 0):.0f} s left, {kind} needs {NEEDS[kind]} s"}
    if check == "agree" and state.model is None:
        return {"skipped": "no trained model"}
    t0 = time.perf_counter()
    try:
        return call(state)
    except Exception as e:  # noqa: BLE001 - one failing step must not lose the others
        # torch may wrap the budget's exception in its own (a compile error)
        if isinstance(e, OverBudget) or time.perf_counter() - t0 >= left:
            return {"skipped": "the time budget ran out during this step"}
        first = (str(e).splitlines() or [""])[0][:200]
        return {"error": f"{type(e).__name__}: {first}", "ok": False}


def meta(plan: Plan, device: torch.device, budget: float) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    return {"date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device),
            "gpu": gpu, "tiny": plan.tiny, "budget_s": budget}  # fmt: skip


def format_row(r: dict) -> str:
    """``check  variant  result  ok`` in fixed columns."""
    if "skipped" in r or "error" in r:
        text = f"skipped: {r['skipped']}" if "skipped" in r else f"error: {r['error']}"
    elif r["check"] == "matmul":
        text = f"{r['tflop_s']:.3g} TFLOP/s"
    elif r["check"] == "train":
        text = f"loss {r['loss_first']:.4f} -> {r['loss_last']:.4f}, {r['seconds']:.1f} s"
    elif r["check"] == "agree":
        text = f"max |dP| {r['max_abs_diff']:.2e} (tolerance {r['tolerance']:.0e})"
    else:
        share = "-" if r["of_peak"] is None else f"{r['of_peak']:.1%}"
        mem = "- GiB (no GPU)" if r["peak_gib"] is None else f"{r['peak_gib']:.2f} GiB"
        text = (f"{r['samples_s']:.1f} samples/s, {r['ms_step']:.1f} ms, {r['tflop_s']:.3g} "
                f"TFLOP/s = {share} of peak, {mem}, warm-up {r['warmup_s']:.1f} s")  # fmt: skip
    ok = {True: "ok", False: "FAIL", None: "-"}[r["ok"]]
    return f"{r['check']:<7}{r['variant']:<24}{ok:<6}{text}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default="gpu_check.json", help="JSON file of the table")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    p.add_argument("--tiny", action="store_true", help="tiny sizes (automatic on CPU)")
    p.add_argument("--budget", type=float, default=270, help="seconds for all steps")
    p.add_argument("--train-steps", type=int, help="steps of the training run (200; tiny: 5)")
    args = p.parse_args(argv)
    name = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    plan = Plan.make(args.tiny or device.type != "cuda")
    plan.train_steps = args.train_steps or plan.train_steps
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny tensors; more threads only wait on one another
    if device.type == "cuda":  # as training sets them (forecast.training.distributed)
        torch.backends.cudnn.benchmark = True
        set_tf32(True)
    print(f"gpu_check: torch {torch.__version__}, device {device}, tiny {plan.tiny}")
    if plan.tiny:
        print("tiny sizes: grids 16 x 24, float32, no compile (a test of the steps, no measure)")
    print(f"{'check':<7}{'variant':<24}{'ok':<6}result")
    report = run_checks(plan, device, args.budget, Path(args.out))
    print(f"gpu_check: {report['meta']['seconds']:.0f} s; table written to {args.out}")
    return 1 if any(r["ok"] is False for r in report["rows"]) else 0


if __name__ == "__main__":
    raise SystemExit(main())
