"""Score the model, forecast files and baselines through one loop into one scores Dataset.

:func:`evaluate` runs every method over the same init steps, a batch of inits at a time, and
streams each method's forecasts into the states of :mod:`forecast.metrics`:

1. Threshold selection, one rule for a model, a forecast file or a baseline: contingency tables
   on the validation inits the method covers give each method and lead the probability
   threshold of highest CSI. A method covering no validation init (or scores without a
   validation split) is tuned on the scored cases, which the scores file and a warning say.
2. Scoring: probability, categorical, spatial and per-day states on the scored split; the
   categorical and spatial scores at the selected threshold.
3. Brier skill scores against the climatology and persistence methods on the same cases (scored
   as hidden references when not asked for), moving-block bootstrap intervals over forecast
   days (``eval.bootstrap_block`` days per block).

:func:`forecast.evaluation.files.evaluate_to_files` scores files on disk with it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch
import xarray as xr

from data_prep.errors import ConfigError, UserError
from data_prep.progress import bar
from data_prep.schema import LAT, LON, TIME
from data_prep.sequences import WindowIndex, time_step
from forecast.evaluation.baselines import build_baseline, observations, valid_steps
from forecast.metrics import ContingencyState, best_threshold
from forecast.metrics.suite import REFERENCES, MethodState, scores_dataset
from forecast.predict import day_label, inits_within

__all__ = ["all_steps_index", "evaluate", "stream"]

SCORE_BYTES = 1 << 25  # one method's forecasts of a scoring batch of inits (float32)


def scoring_threads() -> int:
    """Threads scoring the methods of a batch at once (the fused kernels run without the GIL):
    torch's CPU thread count, which ``evaluate --threads`` sets (the usable cores by default;
    see :mod:`data_prep.cores`)."""
    return max(1, torch.get_num_threads())


# --------------------------------------------------------------------------------------------
# the loop


def scoring_batch(batch_inits: int, n_out: int, h: int, w: int, limit: int | None = None) -> int:
    """Inits forecast and scored at a time: ``batch_inits``, fewer where one method's forecasts
    of them would take more than ``limit`` bytes (default ``SCORE_BYTES``; every method's, the
    observations and the scoring temporaries are held at once), at least one. Hourly conus-0.1
    with 6 leads takes 3.7 MB an init: 9 inits, not 32."""
    limit = SCORE_BYTES if limit is None else limit
    return inits_within(4 * n_out * h * w, limit, most=batch_inits)


def stream(
    ds: xr.Dataset,
    inits: np.ndarray,
    methods: dict[str, object],
    n_out: int,
    batch: int,
    add: Callable[[str, np.ndarray, np.ndarray, np.ndarray, np.ndarray], None],
    desc: str = "",
) -> None:
    """Forecast every method on batches of ``inits``; call ``add(name, rows, prob, events, mask)``.

    ``rows`` are the positions of the batch in ``inits``; ``prob`` (n, L, H, W), ``events`` and
    ``mask`` bool (n, L, H, W); ``mask`` holds the observed cells where every method's forecast
    is finite, so all methods are scored on the same cases. The calls of one batch run on
    :func:`scoring_threads` threads at once, one per method: ``add`` must touch only the
    method's own state. ``desc`` names a progress bar over
    the (init, method) forecasts; none without it.
    """
    done = bar(total=len(inits) * len(methods), desc=desc, unit="forecast", enabled=bool(desc))
    with ThreadPoolExecutor(max_workers=scoring_threads()) as pool:
        for lo in range(0, len(inits), batch):
            rows = np.arange(lo, min(lo + batch, len(inits)))
            events, mask = observations(ds, inits[rows], n_out)
            probs = {}
            for name, method in methods.items():
                probs[name] = _leads(method.forecast(ds, inits[rows]), n_out)
                mask &= np.isfinite(probs[name])
                done.update(len(rows))
            # each method's states on a thread of their own: the same sums in the same order
            scored = [pool.submit(add, n, rows, p, events, mask) for n, p in probs.items()]
            for future in scored:
                future.result()
    done.close()


def _leads(prob: np.ndarray, n_out: int) -> np.ndarray:
    """Forecast (N, L', H, W) cut or NaN-padded to ``n_out`` lead times."""
    prob = np.asarray(prob, dtype=np.float32)
    if prob.shape[1] >= n_out:
        return prob[:, :n_out]
    pad = np.full((prob.shape[0], n_out - prob.shape[1]) + prob.shape[2:], np.nan, np.float32)
    return np.concatenate([prob, pad], axis=1)


def select_thresholds(ds, inits, methods, n_out: int, batch: int) -> dict[str, np.ndarray]:
    """Threshold of highest CSI per method and lead on ``inits``: {name: (L,)}."""
    tables = {name: ContingencyState.init(n_out) for name in methods}
    add = lambda n, r, p, e, m: tables[n].add(p, e, m)  # noqa: E731
    stream(ds, inits, methods, n_out, batch, add, desc="evaluate: thresholds")
    return {name: best_threshold(t.compute()["csi"], t.thresholds) for name, t in tables.items()}


# --------------------------------------------------------------------------------------------
# evaluate


def evaluate(cfg, ds: xr.Dataset, index, methods: dict[str, object], split: str = "test"):
    """Score ``methods`` on the init steps of ``split`` of ``index``; one scores Dataset.

    Parameters
    ----------
    cfg : ExperimentConfig (uses ``cfg.eval``).
    ds : maps Dataset.
    index : WindowIndex; ``split`` may be any of its splits ("all" when built by
        :func:`all_steps_index`).
    methods : name -> object with ``forecast(ds, inits) -> (N, L, H, W)`` probabilities.
        Methods with ``covers(ds, inits) -> bool (N,)`` restrict the cases to the inits they
        cover (all methods are scored on the same cases).
    split : split of ``index`` to score.

    Lead times 1 .. n are scored, n the smallest ``n_out`` of the index and the methods.

    Returns
    -------
    xr.Dataset with dims forecast, lead_time, probability_threshold, scale, bin, curve_threshold
    (lead_time: durations; lead_step: the same in map steps).
    """
    ecfg = cfg.eval
    _check_bootstrap_block(ecfg.bootstrap_block)
    # every method must reach every scored lead: a file or model with fewer leads shortens all
    n_out = min([index.n_out] + [int(m.n_out) for m in methods.values() if hasattr(m, "n_out")])
    inits, notes = _cases(ds, index.inits(split), methods, f"split {split!r}")
    if inits.size == 0:
        raise UserError(f"evaluate: no init of split {split!r} to score; {notes}")
    scored = _with_references(methods, ds, index, ecfg)
    batch = scoring_batch(ecfg.batch_inits, n_out, ds.sizes[LAT], ds.sizes[LON])
    thresholds, how = _thresholds(ds, index, split, inits, scored, n_out, batch)
    day_of, days = _days(ds, inits)
    states = {n: MethodState.init(n_out, days.size, ecfg, thresholds[n]) for n in scored}
    stream(
        ds,
        inits,
        scored,
        n_out,
        batch,
        lambda n, rows, p, e, m: states[n].add(p, e, m, day_of[rows]),
        desc=f"evaluate: scoring {split}",
    )
    scores = scores_dataset(states, list(methods), ecfg, time_step(ds))
    times = ds[TIME].values[inits]
    scores.attrs.update(
        split=split,
        time_step=str(ds.attrs.get("time_step", "")),
        n_inits=int(inits.size),
        n_days=int(days.size),
        init_start=str(pd.Timestamp(times.min())),
        init_end=str(pd.Timestamp(times.max())),
        cases=notes,
        threshold_selection=how,
        references="brier_skill_score vs climatology, brier_skill_score_vs_persistence vs "
        "persistence, both on the same cases",
    )
    scores.attrs.update(_baseline_notes(scored, index))
    return scores


def _check_bootstrap_block(days: int) -> None:
    if days < 1:
        raise ConfigError(
            f"config key 'eval.bootstrap_block': {days} is not a number of days "
            "per bootstrap block; use 1 or more (e.g. 10)"
        )


def _with_references(methods: dict, ds: xr.Dataset, index, ecfg) -> dict:
    """``methods`` and the reference baselines of the skill scores, scored hidden if not asked."""
    scored = dict(methods)
    for ref in REFERENCES:
        if ref not in scored:
            scored[ref] = build_baseline(ref, ds, index, ecfg)
    return scored


def _cases(
    ds, inits: np.ndarray, methods: dict, what: str, strict: bool = True
) -> tuple[np.ndarray, str]:
    """Inits covered by every method that says what it covers, and a note.

    With ``strict``, a method covering none of ``inits`` is a UserError naming its file.
    """
    inits = np.asarray(inits, dtype=np.int64)
    n_all = inits.size
    notes = [f"{n_all} inits of {what}"]
    for name, method in methods.items():
        if hasattr(method, "covers") and inits.size:
            keep = method.covers(ds, inits)
            if strict and not keep.any():
                raise UserError(_uncovered(name, method, ds, inits, what))
            if not keep.all():
                notes.append(f"{name} covers {int(keep.sum())} of them")
            inits = inits[keep]
    if len(notes) > 1:
        notes.append(f"scored on the intersection: {inits.size} inits")
    return inits, "; ".join(notes)


def _uncovered(name: str, method, ds: xr.Dataset, inits: np.ndarray, what: str) -> str:
    times = ds[TIME].values[inits]
    have = getattr(method, "init_times", np.zeros(0, "datetime64[ns]"))
    span = f"{day_label(have.min())}..{day_label(have.max())}" if have.size else "none"
    return (
        f"{getattr(method, 'path', name)}: covers none of the {inits.size} inits of {what} "
        f"({day_label(times.min())}..{day_label(times.max())}; its init_time: {span}); pass maps that "
        "cover its period, or score all the steps it covers with eval.split=all"
    )


def _thresholds(ds, index, split, inits, methods, n_out, batch):
    """Selected thresholds {name: (L,)} and a note saying where they were selected.

    Each method is tuned on the validation inits it covers (all of them, for a model or a
    baseline), whatever else is scored beside it; methods covering the same inits stream
    together. Methods covering none are tuned on the scored ``inits``: in-sample, so the note
    says so, and a warning too when a validation split exists.
    """
    has_val = "val" in index.starts and split != "val"
    val = np.asarray(index.inits("val") if has_val else [], dtype=np.int64)
    groups: dict[bytes, list[str]] = {}
    for name, m in methods.items():
        keep = m.covers(ds, val) if hasattr(m, "covers") and val.size else np.ones(val.size, bool)
        groups.setdefault(np.asarray(keep, bool).tobytes(), []).append(name)
    thresholds, notes, unseen = {}, [], []
    for key, names in groups.items():
        sel = val[np.frombuffer(key, dtype=bool)]
        if not sel.size:
            unseen += names
            continue
        thresholds.update(select_thresholds(ds, sel, _pick(methods, names), n_out, batch))
        whose = f" ({', '.join(names)})" if len(groups) > 1 else ""
        notes.append(f"max CSI on {sel.size} val inits{whose}")
    if unseen:
        thresholds.update(select_thresholds(ds, inits, _pick(methods, unseen), n_out, batch))
        if not val.size:
            notes.append(f"max CSI on the scored {split!r} inits (no validation inits; in-sample)")
        else:
            notes.append(
                f"{', '.join(unseen)}: max CSI on the scored {split!r} inits (no forecast for "
                f"any of the {val.size} val inits; in-sample, optimistic)"
            )
            warnings.warn(f"CSI threshold of {notes[-1]}", stacklevel=3)
    return thresholds, "; ".join(notes)


def _pick(methods: dict, names: list[str]) -> dict:
    return {n: methods[n] for n in names}


def _days(ds, inits) -> tuple[np.ndarray, np.ndarray]:
    """Forecast day (UTC calendar day of the init) of each init: index (N,) and days (D,)."""
    day = ds[TIME].values[inits].astype("datetime64[D]")
    days, day_of = np.unique(day, return_inverse=True)
    return day_of.astype(np.int64), days


def _baseline_notes(methods: dict, index) -> dict:
    notes = {}
    for name, m in methods.items():
        if hasattr(m, "window"):
            notes[f"{name}_window"] = int(m.window)
    if not len(index.starts.get("train", ())):
        notes["climatology_fit"] = "all steps of the maps (no training split): in-sample"
    else:
        notes["climatology_fit"] = "training split"
    return notes


def all_steps_index(ds: xr.Dataset, *, n_in: int, n_out: int, first: int = 0):
    """A WindowIndex whose split "all" holds every init step from ``first`` with a valid time
    in the maps."""
    n_steps = ds.sizes[TIME]
    inits = np.arange(first, n_steps)
    inits = inits[(valid_steps(ds, inits, n_out) >= 0).any(axis=1)]
    empty = np.zeros(0, np.int64)
    starts = {"train": empty, "val": empty, "test": empty, "all": inits - n_in + 1}
    return WindowIndex(n_in, n_out, starts, n_steps)
