"""One large input cut into pieces that separate workers grid, adding up to the whole file.

A piece is a run of consecutive units of one file: Parquet row groups, ranges of whole lines of
a plain CSV file (:mod:`data_prep.csv_files`), or chunks of steps of a gridded netCDF file. A
reader decodes the same chunks from a piece as from the whole file, so every record is read,
converted and rejected (with its reason) exactly as in a read of the whole file, and the counts,
integers, add up to the same maps. Runs are cut at equal shares of the file's bytes (of its
steps, for a gridded file); in a feed written in time order each piece is a block of time. A
gzip CSV cannot be entered in the middle, and GLM granules are small: those stay one piece.

Two things link the pieces of a file, and are settled when they are joined:

* Repeats (:class:`~data_prep.records.Deduplicator`): each piece is first read on its own. A
  piece whose earliest record comes after the latest record of the pieces before it found the
  same repeats as a read of the whole file; any other piece is read again, seeded with the
  records at that latest time (:func:`seeds`). In a feed in time order, that is a piece whose
  first records share their time with the last records of the piece before it.
* The span a points file observes is its first to its last record, over all its pieces: the
  pieces' spans are joined into one (:func:`data_prep.gridding.finish_file`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.csv_files import is_gzip
from data_prep.readers import csv_ranges
from data_prep.readers_nc import gridded_chunks
from data_prep.records import DedupState, ReadOptions

MIN_PIECE_BYTES = 1 << 25  # a file smaller than this is one piece
MAX_PIECE_BYTES = 1 << 28  # pieces of a large file hold at most this
PIECES_PER_WORKER = 2  # pieces per worker, of all the inputs' bytes, when a file is cut


@dataclass(frozen=True)
class Piece:
    """A piece of one input: ``part`` (None: the whole file) is row-group indices (Parquet), the
    offsets of a run of ranges of whole lines (CSV, ``n + 1`` offsets for ``n`` ranges), or the
    first steps of a run of chunks of a gridded file (and the step after the run)."""

    path: Path
    fmt: str
    part: tuple[int, ...] | None = None
    robust: bool = False  # CSV: read as text (the fast path could not convert a value)
    seed: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # a Deduplicator's start


def plan_pieces(
    plan: list[tuple[Path, str]], workers: int, opts: ReadOptions | None = None
) -> list[list[Piece]]:
    """The pieces of each ``(path, format)`` of ``plan``, in file order.

    A file is cut when it is larger than ``PIECES_PER_WORKER * workers``-th of all the inputs'
    bytes (kept between ``MIN_PIECE_BYTES`` and ``MAX_PIECE_BYTES``): many small files stay one
    task each, one large file becomes about ``PIECES_PER_WORKER`` pieces per worker.
    """
    total = sum(Path(p).stat().st_size for p, _ in plan)
    share = total / max(1, PIECES_PER_WORKER * workers)
    target = min(max(share, MIN_PIECE_BYTES), MAX_PIECE_BYTES)
    out = []
    for path, fmt in plan:
        big = Path(path).stat().st_size > target
        units = _units(Path(path), fmt, opts or ReadOptions()) if big else None
        if units is None or len(units[0]) < 2:
            out.append([Piece(Path(path), fmt)])
            continue
        n = min(len(units[0]), math.ceil(Path(path).stat().st_size / target))
        out.append([Piece(Path(path), fmt, part) for part in _runs(*units, n, fmt)])
    return out


def _units(path: Path, fmt: str, opts: ReadOptions) -> tuple[list[int], list[int]] | None:
    """``(units, their sizes)`` of a file that can be cut: row groups (bytes), CSV ranges by
    their start offsets (bytes), chunks of steps of a gridded file by their first step (steps),
    the end of the last range or chunk appended; None for a file read whole."""
    if fmt == "points-parquet":
        try:
            meta = pq.ParquetFile(path).metadata
        except (pa.ArrowException, OSError, ValueError):  # its reader says what is wrong
            return None
        groups = list(range(meta.num_row_groups))
        return groups, [meta.row_group(g).total_byte_size for g in groups]
    if fmt in ("points-csv", "nldn-tiles") and not is_gzip(path):
        bounds = csv_ranges(path)
        return bounds, list(np.diff(bounds).tolist()) + [0]
    if fmt == "gridded":
        bounds = gridded_chunks(path, opts)
        return bounds, list(np.diff(bounds).tolist()) + [0]
    return None


def _runs(units: list[int], sizes: list[int], n: int, fmt: str) -> list[tuple[int, ...]]:
    """``units`` cut into ``n`` runs of about equal bytes (a CSV run keeps its end offset)."""
    count = len(units) - (fmt != "points-parquet")  # CSV: the last offset ends the last range
    edges = np.cumsum([0, *sizes[:count]])
    cuts = np.searchsorted(edges, np.arange(1, n) * edges[-1] / n)
    cuts = [0, *sorted({int(c) for c in cuts if 0 < c < count}), count]
    extra = fmt != "points-parquet"
    return [tuple(units[a : b + extra]) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def seeds(states: list[DedupState | None]) -> list[tuple | None]:
    """For each piece of one file (in file order, each read on its own): None when its repeats
    are those a read of the whole file finds, else the records to seed its second read with.

    Before a piece, a read of the whole file holds the distinct records at the latest time of
    the records before it: the tails of the pieces whose own latest time is that time.
    """
    out: list[tuple | None] = []
    latest: int | None = None
    tails: list[tuple] = []
    for st in states:
        if st is None or st.first is None:  # no record reached the deduplicator
            out.append(None)
            continue
        stale = latest is not None and st.first <= latest
        out.append(tuple(np.concatenate(a) for a in zip(*tails, strict=True)) if stale else None)
        last = int(st.tail[0][0])
        if latest is None or last > latest:
            latest, tails = last, [st.tail]
        elif last == latest:
            tails.append(st.tail)
    return out
