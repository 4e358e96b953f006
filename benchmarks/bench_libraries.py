"""Hand-written kernels against the libraries of the field that do the same job, run by hand.

Prints one table: for each job, our implementation and the library's, timed in one process,
interleaved, the minimum of ``--repeats`` runs, with their largest difference (or, for motion,
the skill of each as a baseline on the quickstart world's test split):

- box sums and neighbourhood fractions: ``forecast.metrics.box_sum`` and
  ``forecast.baselines.neighbourhood_fraction`` against ``scipy.ndimage.uniform_filter`` with
  ``mode="constant"`` (zero outside the domain, as ours);
- isotonic regression of the calibration histograms: ``forecast.calibration._isotonic_table``
  against ``scipy.optimize.isotonic_regression`` and ``sklearn.isotonic.isotonic_regression``;
- motion: the ``lagrangian`` baseline (one domain-wide vector by phase correlation, whole-field
  shift) against pysteps dense optical flow (``pysteps.motion.get_method``) with semi-Lagrangian
  extrapolation (``pysteps.extrapolation.semilagrangian.extrapolate``), same signature as the
  baselines, scored by ``forecast.evaluate.evaluate`` so the numbers compare.

Needs scipy (>= 1.12), scikit-learn and pysteps (sdist: a C compiler builds it; its
``lk``/``farneback`` flows need opencv-python-headless). Missing libraries skip their rows.
``--flows darts vet`` also run, but slowly (~1.8 s per init at 104 x 236); darts fails on
grids under 50 x 50 cells (its default spectral sizes), such as the quickstart's.

    python benchmarks/bench_libraries.py --maps runs/quickstart/maps.nc \\
        --config runs/quickstart/config.yaml

Imports to update after the issue-13 layout move: ``forecast.baselines`` (build_baseline,
neighbourhood_fraction, observations helpers, ``_window``), ``forecast.calibration``
(``_isotonic_table``, ``N_LOGIT_BINS``, ``_P_EPS``), ``forecast.evaluate.evaluate``,
``forecast.metrics.box_sum``, ``forecast.config.load_experiment``.
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
from forecast.baselines import (
    FIXED_WINDOW,
    Lagrangian,
    _window,
    build_baseline,
    neighbourhood_fraction,
    observed_or_mean,
    occurrence,
    read_steps,
)
from forecast.calibration import _P_EPS, N_LOGIT_BINS, _isotonic_table
from forecast.config import load_experiment
from forecast.evaluate import evaluate
from forecast.metrics import box_sum

HAVE = {m: importlib.util.find_spec(m) is not None for m in ("scipy", "sklearn", "pysteps", "cv2")}
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


def timed_row(item: str, case: str, ours, lib, repeats: int) -> Row:
    """Time ``ours`` against ``lib`` (no-argument callables) and compare their results."""
    t = best_times({"ours": ours, "lib": lib}, repeats)
    diff = np.nanmax(np.abs(np.asarray(ours(), np.float64) - np.asarray(lib(), np.float64)))
    ms = f"{t['ours'] * 1e3:.1f} ms", f"{t['lib'] * 1e3:.1f} ms"
    return item, case, *ms, f"{t['ours'] / t['lib']:.2f}", f"max |diff| {diff:.1e}"


# --------------------------------------------------------------------------------------------
# box sums


def scipy_box_sum(x: np.ndarray, n: int) -> np.ndarray:
    """``box_sum`` by ``scipy.ndimage.uniform_filter``: same window, zero outside, same dtype."""
    from scipy import ndimage

    x = np.asarray(x)
    exact = x.dtype == bool or np.issubdtype(x.dtype, np.integer)
    out = x.astype(np.float64)
    if n > 1:
        size = (1,) * (x.ndim - 2) + (n, n)
        origin = -1 if n % 2 == 0 else 0  # ours spans -(n-1)//2 .. n//2
        out = ndimage.uniform_filter(out, size, mode="constant", origin=origin) * (n * n)
    return np.rint(out).astype(np.int32) if exact else out


def scipy_fraction(x: np.ndarray, n: int) -> np.ndarray:
    """``neighbourhood_fraction`` by ``uniform_filter``: the means of x and of in-domain ones."""
    from scipy import ndimage

    if n <= 1:
        return x.astype(np.float32)
    size = (1,) * (x.ndim - 2) + (n, n)
    origin = -1 if n % 2 == 0 else 0
    mean = ndimage.uniform_filter(x.astype(np.float64), size, mode="constant", origin=origin)
    ones = ndimage.uniform_filter(np.ones(x.shape[-2:]), n, mode="constant", origin=origin)
    return (mean / ones).astype(np.float32)


def box_rows(shape: tuple[int, ...], scales: list[int], repeats: int) -> list[Row]:
    """Box sums of a float and a boolean field, and neighbourhood fractions, at each scale."""
    rng = np.random.default_rng(0)
    prob = rng.random(shape)
    yes = prob > 0.8
    rows = []
    for n in scales:
        for what, x in (("float64", prob), ("bool", yes)):
            rows.append(
                timed_row(
                    "box_sum",
                    f"{what} {shape} n={n}",
                    lambda x=x, n=n: box_sum(x, n),
                    lambda x=x, n=n: scipy_box_sum(x, n),
                    repeats,
                )
            )
        rows.append(
            timed_row(
                "neighbourhood_fraction",
                f"float {shape} n={n}",
                lambda n=n: neighbourhood_fraction(prob, n),
                lambda n=n: scipy_fraction(prob, n),
                repeats,
            )
        )
    return rows


# --------------------------------------------------------------------------------------------
# isotonic regression


def scipy_isotonic_table(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``_isotonic_table`` with the pooling done by ``scipy.optimize.isotonic_regression``."""
    from scipy.optimize import isotonic_regression

    w = pos + neg
    keep = np.flatnonzero(w > 0)
    if keep.size == 0:
        return np.full(pos.shape, 0.5, dtype=np.float32)
    fitted = isotonic_regression(pos[keep] / w[keep], weights=w[keep]).x
    table = np.interp(np.arange(pos.size), keep, fitted)
    return np.clip(table, _P_EPS, 1 - _P_EPS).astype(np.float32)


def sklearn_isotonic_table(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``_isotonic_table`` with the pooling done by ``sklearn.isotonic.isotonic_regression``."""
    from sklearn.isotonic import isotonic_regression

    w = pos + neg
    keep = np.flatnonzero(w > 0)
    if keep.size == 0:
        return np.full(pos.shape, 0.5, dtype=np.float32)
    fitted = isotonic_regression(pos[keep] / w[keep], sample_weight=w[keep])
    table = np.interp(np.arange(pos.size), keep, fitted)
    return np.clip(table, _P_EPS, 1 - _P_EPS).astype(np.float32)


def logit_histogram(n_bins: int, cells: float = 3e7, seed: int = 0) -> tuple[np.ndarray, ...]:
    """(pos, neg) counts per logit bin of a miscalibrated model: most cells at low logits, empty
    tail bins, a wiggle that makes the raw frequencies violate monotonicity."""
    rng = np.random.default_rng(seed)
    z = np.linspace(-16, 16, n_bins)
    dens = np.exp(-0.5 * ((z + 4) / 3) ** 2)
    expected = cells * dens / dens.sum()
    p = 1 / (1 + np.exp(-(0.7 * z + 0.4 * np.sin(3 * z))))
    return rng.poisson(expected * p).astype(float), rng.poisson(expected * (1 - p)).astype(float)


def isotonic_rows(bins: list[int], repeats: int) -> list[Row]:
    """Our pooled adjacent violators against scipy's and scikit-learn's, per histogram size."""
    rows = []
    libs = {"scipy": scipy_isotonic_table, "sklearn": sklearn_isotonic_table}
    for n in bins:
        pos, neg = logit_histogram(n)
        for name, lib in libs.items():
            if HAVE[name]:
                rows.append(
                    timed_row(
                        f"isotonic ({name})",
                        f"{n} bins, {int((pos + neg > 0).sum())} non-empty",
                        lambda pos=pos, neg=neg: _isotonic_table(pos, neg),
                        lambda pos=pos, neg=neg, lib=lib: lib(pos, neg),
                        repeats,
                    )
                )
    return rows


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
        pick = {"method": name}
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
    p.add_argument("--skip", nargs="*", default=[], choices=["box", "isotonic", "speed", "skill"])
    args = p.parse_args()
    flows = flow_methods(args.flows)
    cfg = load_experiment(str(args.config), [])
    rows: list[Row] = []
    if HAVE["scipy"] and "box" not in args.skip:
        rows += box_rows((64, 104, 236), [3, 9, 27], args.repeats)
    if "isotonic" not in args.skip:
        rows += isotonic_rows([N_LOGIT_BINS, 100_000], args.repeats)
    if flows and "speed" not in args.skip:
        maps = open_maps(args.maps)
        rows += motion_speed_rows(maps, cfg.data.n_in, cfg.data.n_out, flows, 8, args.repeats)
    if flows and "skill" not in args.skip:
        rows += skill_rows(args.maps, args.config, flows)
    print_table(rows)


if __name__ == "__main__":
    main()
