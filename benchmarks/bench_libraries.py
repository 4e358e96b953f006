"""Our Lagrangian baseline against pysteps' dense optical flow, run by hand.

Box sums (``scipy.ndimage.uniform_filter``) and isotonic regression
(``scipy.optimize.isotonic_regression``) moved to scipy after this comparison showed them 1.4-2.3x
and 12-30x faster with identical results (README, dependencies). What stays ours is the
``lagrangian`` baseline: one domain-wide motion vector by phase correlation, a whole-field shift.
This prints, for each pysteps flow (``pysteps.motion.get_method``, semi-Lagrangian extrapolation
``pysteps.extrapolation.semilagrangian.extrapolate``, the same signature as the baselines), its
time per init against ours on conus-0.25-sized maps (one process, interleaved, minimum of
``--repeats``), and the skill of each as a baseline on the quickstart world's test split, scored
by the same ``evaluate`` so the numbers compare.

Needs pysteps (an sdist: a C compiler builds it) and, for its ``lk``/``farneback`` flows,
opencv-python-headless; without pysteps there is nothing to compare. ``--flows darts vet`` also
run, but slowly (~1.8 s per init at 104 x 236); darts fails on grids under 50 x 50 cells.

    python benchmarks/bench_libraries.py --maps runs/quickstart/maps.nc \\
        --config runs/quickstart/config.yaml
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr

from data_prep.io import open_maps
from data_prep.schema import COUNT, COVERAGE
from data_prep.sequences import load_or_build_index
from forecast.config import load_experiment
from forecast.evaluation.baselines import (
    FIXED_WINDOW,
    Lagrangian,
    _window,
    build_baseline,
    neighbourhood_fraction,
    observed_or_mean,
    occurrence,
    read_steps,
)
from forecast.evaluation.scoring import evaluate

HAVE = {m: importlib.util.find_spec(m) is not None for m in ("pysteps", "cv2")}
FLOW_FRAMES = {"constant": 2, "proesmans": 2, "vet": 3, "lk": 0, "farneback": 0, "darts": 0}
NEEDS_CV2 = ("lk", "farneback")
Row = tuple[str, str, str, str, str, str]


def best_times(cases: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Minimum wall time of each case over ``repeats`` rounds; the cases alternate in each round."""
    best = dict.fromkeys(cases, np.inf)
    for _ in range(repeats):
        for name, run in cases.items():
            t0 = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


# --------------------------------------------------------------------------------------------
# motion


@dataclass
class FlowLagrangian:
    """The init step's occurrence moved along a pysteps dense motion field (semi-Lagrangian).

    The motion comes from ``log1p`` counts of the last ``n_in`` steps (fewer where the method
    takes 2 or 3 frames), unobserved cells filled with their map's mean as in ``Lagrangian``.
    """

    n_in: int
    n_out: int
    window: int = FIXED_WINDOW
    method: str = "proesmans"
    fields: dict = field(default_factory=dict, repr=False)  # init -> motion (2, H, W) (cache)

    def forecast(self, ds: xr.Dataset, inits: np.ndarray, n_out: int | None = None) -> np.ndarray:
        """Probability (N, n_out, H, W) in [0, 1]."""
        from pysteps.extrapolation.semilagrangian import extrapolate

        inits = np.asarray(inits)
        n_out = n_out or self.n_out
        last = occurrence(ds, inits).astype(np.float64)  # (N, H, W)
        out = [
            extrapolate(f, self.motion(ds, i), n_out, outval=0.0)
            for i, f in zip(inits.tolist(), last, strict=True)
        ]
        return neighbourhood_fraction(np.clip(np.stack(out), 0, 1), self.window)

    def motion(self, ds: xr.Dataset, init: int) -> np.ndarray:
        """Motion field (2, H, W), pixels per step (x, y), from the steps up to ``init``."""
        from pysteps.motion import get_method

        if init not in self.fields:
            frames = FLOW_FRAMES[self.method] or self.n_in
            steps = np.arange(max(init - frames + 1, 0), init + 1)
            logs = np.log1p(read_steps(ds, COUNT, steps).astype(np.float64))
            logs = np.nan_to_num(observed_or_mean(logs, read_steps(ds, COVERAGE, steps) > 0))
            if len(steps) < 2 or not logs.any():
                flow = np.zeros((2,) + logs.shape[1:])
            else:
                flow = np.nan_to_num(get_method(self.method)(logs, **_quiet(self.method)))
            self.fields[init] = flow
        return self.fields[init]


def _quiet(method: str) -> dict:
    """Keyword arguments that silence a pysteps motion method's progress prints."""
    return {"verbose": False} if method in ("lk", "darts", "vet", "farneback") else {}


def flow_methods(wanted: list[str]) -> list[str]:
    """The pysteps flows of ``wanted`` that run here (lk and farneback need opencv)."""
    if not HAVE["pysteps"]:
        return []
    return [m for m in wanted if HAVE["cv2"] or m not in NEEDS_CV2]


def conus_like(maps: xr.Dataset, shape: tuple[int, int], n_steps: int) -> xr.Dataset:
    """The first ``n_steps`` of ``maps`` blown up (nearest cell) to ``shape``: conus-0.25 sizes
    with the storm structure of the synthetic world."""
    from scipy import ndimage

    small = maps.isel(time=slice(0, n_steps))
    h, w = small.sizes["lat"], small.sizes["lon"]
    zoom = (1, shape[0] / h, shape[1] / w)
    data = {
        v: (("time", "lat", "lon"), ndimage.zoom(small[v].values, zoom, order=0))
        for v in (COUNT, COVERAGE)
    }
    coords = {"time": small["time"].values, "lat": np.arange(shape[0]), "lon": np.arange(shape[1])}
    return xr.Dataset(data, coords=coords, attrs=small.attrs)


def motion_speed_rows(maps, n_in, n_out, flows, n_inits, repeats) -> list[Row]:
    """Seconds per init of each motion baseline on conus-0.25-sized maps, ``n_inits`` at a time,
    fresh caches per round (as ``evaluate`` builds them per run)."""
    ds = conus_like(maps, (104, 236), n_in + n_inits)
    inits = np.arange(n_in - 1, n_in - 1 + n_inits)
    cases = {"lagrangian": lambda: Lagrangian(n_in, n_out).forecast(ds, inits)}
    for m in flows:
        cases[m] = lambda m=m: FlowLagrangian(n_in, n_out, method=m).forecast(ds, inits)
    t = best_times(cases, repeats)
    per = {k: v / n_inits for k, v in t.items()}
    return [
        (
            "motion speed",
            f"{m} per init, 104x236",
            f"{per['lagrangian'] * 1e3:.1f} ms",
            f"{per[m] * 1e3:.1f} ms",
            f"{per['lagrangian'] / per[m]:.3f}",
            "",
        )
        for m in flows
    ]


def skill_rows(maps_path: Path, config: Path, flows: list[str]) -> list[Row]:
    """BSS vs climatology and ROC AUC, leads 1..n_out, of each motion baseline on the test split."""
    cfg = load_experiment(str(config), ["eval.bootstrap=0"])
    ds = open_maps(maps_path)
    index = load_or_build_index(maps_path, ds, cfg.data)
    methods = {"lagrangian": build_baseline("lagrangian", ds, index, cfg.eval)}
    for m in flows:
        cache: dict = {}

        def make(n: int, m=m, cache=cache) -> FlowLagrangian:
            return FlowLagrangian(index.n_in, index.n_out, n, m, cache)

        methods[f"flow_{m}"] = make(_window(make, ds, index, cfg.eval))
    scores = evaluate(cfg, ds, index, methods, "test")
    rows = []
    for name, method in methods.items():
        pick = {"forecast": name}
        bss = scores["brier_skill_score"].sel(pick).squeeze().values
        auc = scores["roc_auc"].sel(pick).squeeze().values
        rows.append(
            (
                "motion skill",
                f"{name} (window {method.window})",
                "BSS " + _leads(bss),
                "AUC " + _leads(auc),
                "",
                f"test split, {scores.attrs['n_inits']} inits",
            )
        )
    return rows


def _leads(values: np.ndarray) -> str:
    return " ".join(f"{v:+.3f}" for v in np.atleast_1d(values))


# --------------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    """One aligned text table."""
    head = ("item", "case", "ours", "library", "ours/lib time", "agreement")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    for r in [head, tuple("-" * w for w in widths), *rows]:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--maps", type=Path, default=Path("runs/quickstart/maps.nc"))
    p.add_argument("--config", type=Path, default=Path("runs/quickstart/config.yaml"))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--flows", nargs="*", default=["constant", "lk", "proesmans", "farneback"])
    p.add_argument("--skip", nargs="*", default=[], choices=["speed", "skill"])
    args = p.parse_args()
    flows = flow_methods(args.flows)
    cfg = load_experiment(str(args.config), [])
    rows: list[Row] = []
    if flows and "speed" not in args.skip:
        maps = open_maps(args.maps)
        rows += motion_speed_rows(maps, cfg.data.n_in, cfg.data.n_out, flows, 8, args.repeats)
    if flows and "skill" not in args.skip:
        rows += skill_rows(args.maps, args.config, flows)
    print_table(rows)


if __name__ == "__main__":
    main()
