"""Time-blocked train / validation / test splits of the window starts.

Each step belongs to exactly one split, and a window joins a split only when *all* of its steps
(inputs and targets) lie in that split's steps; windows that would touch another split's block
are dropped. So no step seen by a training window is ever seen, as input or target, by a
validation or test window, and no target day leaks across splits.

An embargo of ``n_in`` steps follows every change of split: the first ``n_in`` steps of a block
whose predecessor belongs to another split are used by no window. Windows of different splits
are then at least ``n_in`` steps apart, so no test (or validation) input lies next to, or within
the input span of, a training target; weather persists for days, and an input the day after a
training target would share its storms. A block after an embargo holds windows when
``block_steps >= 2 n_in + n_out``; shorter blocks give windows only where blocks of one split
follow each other.

``split = "blocks"`` cuts the time axis into blocks of ``block_steps`` steps and deals them to
train / val / test in a fixed, interleaved pattern: block by block, the split furthest below its
share (overall, and among blocks at the same time of year) gets the block. Shares follow
``fractions``, every split sees every season once the record spans a few years (each split has
at least 12 % of its days in each season on the 3-year quickstart record, 20-30 % from 6 years
on), and the pattern depends only on the block number, so appending data never reshuffles
earlier blocks. ``split = "contiguous"`` gives the first ``fractions[0]`` of the steps to train,
the next to val and the rest to test.
"""

from __future__ import annotations

import numpy as np

from data_prep.config import SequenceConfig
from data_prep.errors import UserError

SPLITS = ("train", "val", "test")
_DAYS_PER_YEAR = 365.25
_SEASON_KAPPA = 2.0  # width of the time-of-year kernel of the blocks pattern (about +-2 months)
_SEASON_WEIGHT = 2.0  # weight of seasonal balance against overall balance in the pattern


def check_split_config(cfg: SequenceConfig) -> None:
    """Reject split settings that cannot work, naming the ``data.*`` key."""
    if cfg.split not in ("blocks", "contiguous"):
        raise UserError(f"config data.split {cfg.split!r} unknown; use 'blocks' or 'contiguous'")
    f = np.asarray(cfg.fractions, dtype=float)
    if f.shape != (3,) or np.any(f < 0) or f[0] <= 0 or abs(f.sum() - 1.0) > 1e-6:
        raise UserError(
            f"config data.fractions {list(cfg.fractions)} must be 3 shares (train > 0, val, test) "
            "summing to 1; e.g. [0.7, 0.15, 0.15]"
        )
    if cfg.split == "blocks" and cfg.block_steps < cfg.n_in + cfg.n_out:
        raise UserError(
            f"config data.block_steps {cfg.block_steps} is shorter than one window "
            f"(n_in + n_out = {cfg.n_in + cfg.n_out}); use e.g. 56"
        )


def block_pattern(
    n_blocks: int, fractions: tuple[float, float, float], *, block_steps: int, steps_per_year: float
) -> np.ndarray:
    """Split number (0 train, 1 val, 2 test) of each block, int64 (n_blocks,).

    Block by block, the split furthest below its share takes the block. The shortfall is counted
    overall plus, with twice the weight, among the blocks at the same time of year (a smooth
    seasonal kernel, so no calendar boundaries matter); the seasonal part starts once every
    split had a turn, so short records get all splits early. Earlier blocks never change.
    """
    f = np.asarray(fractions, dtype=float)
    phase = ((np.arange(n_blocks) + 0.5) * block_steps / steps_per_year) % 1.0  # (n_blocks,)
    first_cycle = int(np.ceil(1.0 / f[f > 0].min()))  # blocks until every split had its turn
    out = np.empty(n_blocks, dtype=np.int64)
    total = np.zeros(3)
    for b in range(n_blocks):
        near = np.exp(_SEASON_KAPPA * (np.cos(2 * np.pi * (phase[: b + 1] - phase[b])) - 1))
        seasonal = np.bincount(out[:b], weights=near[:b], minlength=3)  # (3,) per split
        weight = _SEASON_WEIGHT if b >= first_cycle else 0.0  # short records: all splits first
        deficit = (f * (b + 1) - total) + weight * (f * near.sum() - seasonal)
        out[b] = int(np.argmax(deficit))  # ties: train, then val
        total[out[b]] += 1
    return out


def split_of_each_step(
    n_steps: int, cfg: SequenceConfig, *, steps_per_year: float | None = None
) -> np.ndarray:
    """Split number (0 train, 1 val, 2 test) of every step, int64 (T,)."""
    check_split_config(cfg)
    if cfg.split == "contiguous":
        edges = np.round(np.cumsum(cfg.fractions)[:2] * n_steps).astype(np.int64)
        return np.searchsorted(edges, np.arange(n_steps), side="right").astype(np.int64)
    spy = _DAYS_PER_YEAR if steps_per_year is None else float(steps_per_year)
    n_blocks = -(-n_steps // cfg.block_steps)
    pattern = block_pattern(
        n_blocks, cfg.fractions, block_steps=cfg.block_steps, steps_per_year=spy
    )
    return np.repeat(pattern, cfg.block_steps)[:n_steps]


def split_windows(
    starts: np.ndarray, n_steps: int, cfg: SequenceConfig, *, steps_per_year: float | None = None
) -> dict[str, np.ndarray]:
    """Deal windows to train / val / test; a window whose steps touch two splits is dropped.

    Parameters
    ----------
    starts : int (N,) window starts from :func:`window_starts` (windows of n_in + n_out steps).
    n_steps : T, the number of steps of the maps.
    cfg : sequence config (``split``, ``block_steps``, ``fractions``, ``n_in``, ``n_out``).
    steps_per_year : steps in a year (365.25 for daily maps, the default), to place each block
        in its part of the year.

    Returns
    -------
    dict ``{"train", "val", "test"}`` -> int64 starts, ascending; windows of different splits
    are at least ``n_in`` steps apart (see :func:`embargoed`).
    """
    starts = np.asarray(starts, dtype=np.int64)
    length = cfg.n_in + cfg.n_out
    if starts.size and (starts.min() < 0 or starts.max() + length > n_steps):
        raise UserError(
            f"window starts run past the {n_steps} steps of the maps; rebuild the index"
        )
    label = embargoed(split_of_each_step(n_steps, cfg, steps_per_year=steps_per_year), cfg.n_in)
    out = {}
    for k, name in enumerate(SPLITS):
        inside = np.concatenate([[0], np.cumsum(label == k)])  # (T+1,) steps of split k before i
        whole = inside[starts + length] - inside[starts] == length
        out[name] = starts[whole]
    return out


def embargoed(label: np.ndarray, n_steps: int) -> np.ndarray:
    """``label`` int (T,) with the first ``n_steps`` steps after each change of split set to -1.

    Runs shorter than the embargo end up wholly embargoed; the embargo runs from the change, so
    a short run never shortens the gap before the next split.
    """
    label = np.asarray(label, dtype=np.int64).copy()
    change = np.flatnonzero(np.diff(label) != 0) + 1  # first step of each new run
    for first in change:
        label[first : first + n_steps] = -1
    return label


def steps_in_windows(starts: np.ndarray, n_steps: int, length: int) -> np.ndarray:
    """Bool (T,): steps used (as input or target) by windows of ``length`` steps at ``starts``."""
    hits = np.zeros(n_steps + 1, dtype=np.int64)
    np.add.at(hits, np.asarray(starts, dtype=np.int64), 1)
    np.add.at(hits, np.asarray(starts, dtype=np.int64) + length, -1)
    return np.cumsum(hits[:-1]) > 0
