"""The common strike-record table every reader yields, and the accounting of what became of it.

A :class:`Records` chunk holds N strike records as plain numpy arrays (all of length N)::

    time          int64    nanoseconds since 1970-01-01 UTC
    lat, lon      float64  degrees
    count         int64    strikes the record carries (None = one each: a point feed)
    stroke_type   int8     STROKE_CODES value, optional (None when the source has none)
    peak_current  float32  kA, optional

A :class:`Tally` counts records and strikes read, gridded and rejected by reason, so that
``read == gridded + sum(rejected)`` holds for every input, for records and strikes alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from data_prep.errors import UserError
from data_prep.fov import FieldOfView

REASONS = (
    "unparseable",
    "nan_coordinate",
    "out_of_range_coordinate",
    "outside_domain",
    "outside_time_range",
    "duplicate",
    "quality_flag",
    "outside_field_of_view",  # GLM: a flash farther from the sub-point than the instrument sees
)
STROKE_CODES = {"": 0, "CG": 1, "IC": 2}  # 0 = unknown
MAX_COUNT = int(np.iinfo(np.int32).max)  # the most strikes a record (or a map cell) may carry


@dataclass
class Records:
    """A chunk of strike records (see the module docstring for fields and dtypes)."""

    time: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    count: np.ndarray | None = None
    stroke_type: np.ndarray | None = None
    peak_current: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.time.size)

    def strikes(self) -> int:
        """Total strikes the chunk carries."""
        return len(self) if self.count is None else int(self.count.sum())

    def take(self, keep: np.ndarray) -> Records:
        """The records where boolean ``keep`` (N,) is True (or at integer positions ``keep``)."""
        opt = {k: None if v is None else v[keep] for k, v in self._optional().items()}
        return Records(self.time[keep], self.lat[keep], self.lon[keep], **opt)

    def strikes_where(self, mask: np.ndarray) -> int:
        """Strikes carried by the records where boolean ``mask`` (N,) is True."""
        return int(mask.sum()) if self.count is None else int(self.count[mask].sum())

    def _optional(self) -> dict:
        return {
            "count": self.count,
            "stroke_type": self.stroke_type,
            "peak_current": self.peak_current,
        }


@dataclass
class Tally:
    """Records and strikes read, gridded and rejected (by reason); sums merge tallies."""

    read_records: int = 0
    read_strikes: int = 0
    gridded_records: int = 0
    gridded_strikes: int = 0
    rejected_records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    rejected_strikes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    files_read: int = 0
    files_empty: int = 0  # files read that hold no record (0 bytes, or a header only)

    def read(self, records: int, strikes: int) -> None:
        self.read_records += int(records)
        self.read_strikes += int(strikes)

    def reject(self, reason: str, records: int, strikes: int) -> None:
        """Count ``records`` carrying ``strikes`` as rejected for ``reason`` (one of REASONS)."""
        if reason not in self.rejected_records:
            raise ValueError(f"unknown rejection reason {reason!r}; valid: {', '.join(REASONS)}")
        self.rejected_records[reason] += int(records)
        self.rejected_strikes[reason] += int(strikes)

    def merge(self, other: Tally) -> Tally:
        """Add ``other`` into this tally and return it."""
        self.read(other.read_records, other.read_strikes)
        self.gridded_records += other.gridded_records
        self.gridded_strikes += other.gridded_strikes
        self.files_read += other.files_read
        self.files_empty += other.files_empty
        for r in REASONS:
            self.reject(r, other.rejected_records[r], other.rejected_strikes[r])
        return self

    def balanced(self) -> bool:
        """True when every record and strike read was gridded or rejected."""
        return self.read_records == self.gridded_records + sum(
            self.rejected_records.values()
        ) and self.read_strikes == self.gridded_strikes + sum(self.rejected_strikes.values())

    def to_attrs(self, prefix: str = "") -> dict[str, int]:
        """Flat netCDF attributes: ``records_read``, ``strikes_rejected_outside_domain``, ...,
        ``files_read``, ``files_empty``."""
        out = {f"{prefix}files_read": self.files_read, f"{prefix}files_empty": self.files_empty}
        for kind in ("records", "strikes"):
            out[f"{prefix}{kind}_read"] = getattr(self, f"read_{kind}")
            out[f"{prefix}{kind}_gridded"] = getattr(self, f"gridded_{kind}")
            for r, n in getattr(self, f"rejected_{kind}").items():
                out[f"{prefix}{kind}_rejected_{r}"] = n
        return out

    @classmethod
    def from_attrs(cls, attrs: dict, prefix: str = "") -> Tally:
        """Inverse of :meth:`to_attrs`; missing keys count as zero."""
        t = cls()
        t.files_read = int(attrs.get(f"{prefix}files_read", 0))
        t.files_empty = int(attrs.get(f"{prefix}files_empty", 0))
        for kind in ("records", "strikes"):
            setattr(t, f"read_{kind}", int(attrs.get(f"{prefix}{kind}_read", 0)))
            setattr(t, f"gridded_{kind}", int(attrs.get(f"{prefix}{kind}_gridded", 0)))
            rej = getattr(t, f"rejected_{kind}")
            for r in REASONS:
                rej[r] = int(attrs.get(f"{prefix}{kind}_rejected_{r}", 0))
        return t

    def table(self) -> str:
        """A small text table: one row per outcome, columns records and strikes."""
        rows = [("read", self.read_records, self.read_strikes)]
        rows.append(("gridded", self.gridded_records, self.gridded_strikes))
        for r in REASONS:
            if self.rejected_records[r] or self.rejected_strikes[r]:
                rows.append((f"rejected: {r}", self.rejected_records[r], self.rejected_strikes[r]))
        total_rec = sum(self.rejected_records.values())
        total_str = sum(self.rejected_strikes.values())
        rows.append(("rejected (all reasons)", total_rec, total_str))
        w = max(28, 2 + max(len(name) for name, _, _ in rows))  # long reason names fit
        lines = [f"{'':<{w}}{'records':>14}{'strikes':>14}"]
        lines += [f"{name:<{w}}{a:>14,}{b:>14,}" for name, a, b in rows]
        for name, n in (("files read", self.files_read), ("files empty", self.files_empty)):
            lines.append(f"{name:<{w}}{n:>14,}{'':>14}")
        return "\n".join(lines)


def check_count_limit(path: Path | str, name: str, values: np.ndarray) -> None:
    """Raise :class:`UserError` naming ``path`` and ``name`` (a column or variable) when a
    value of ``values`` exceeds :data:`MAX_COUNT`: no map cell holds it, and sums of such counts
    overflow int64."""
    with np.errstate(invalid="ignore"):
        big = values > MAX_COUNT
    if big.any():
        raise UserError(
            f"{path}: {name!r} gives {values[big][0]:.6g} strikes to one record "
            f"({int(big.sum())} value(s) above {MAX_COUNT}, the most one map cell holds); check "
            f"that {name!r} is a strike count"
        )


def check_coordinates(rec: Records, tally: Tally) -> Records:
    """Reject NaN and out-of-range coordinates (lat outside [-90, 90], lon outside [-180, 360]).

    Counts the rejections in ``tally`` and returns the remaining records.
    """
    lat, lon = rec.lat, rec.lon
    if not len(rec) or (
        lat.min() >= -90 and lat.max() <= 90 and lon.min() >= -180 and lon.max() <= 360
    ):  # the usual clean chunk: four reductions, no temporaries (a NaN min/max fails them)
        return rec
    ok = (rec.lat >= -90) & (rec.lat <= 90) & (rec.lon >= -180) & (rec.lon <= 360)  # False for NaN
    if ok.all():
        return rec
    nan = ~(np.isfinite(rec.lat) & np.isfinite(rec.lon))
    bad = ~ok & ~nan
    tally.reject("nan_coordinate", nan.sum(), rec.strikes_where(nan))
    tally.reject("out_of_range_coordinate", bad.sum(), rec.strikes_where(bad))
    return rec.take(ok)


class Deduplicator:
    """Rejects repeated (time, lat, lon) records across the chunks of one file, keeping the first.

    Cheap when times are sorted, as in most feeds: only records sharing a time are compared. In
    a file in time order a repeat in a later chunk shares the latest time of the chunks before
    it, so the records at that time are carried over (a few) and compared with the next chunk:
    every repeat in the file is found. In a file out of time order, repeats are found within
    each chunk (``PrepConfig.chunk_records`` records; a whole NLDN month file) and across
    neighbouring chunks at their boundary time only.
    """

    def __init__(self, seed: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        self.tail = seed  # time, lat, lon of the kept records at the latest time seen
        self.first: int | None = None  # the earliest time of the records given

    def __call__(self, rec: Records, tally: Tally) -> Records:
        """``rec`` without the repeats of records seen before in it or in earlier chunks."""
        if not len(rec):
            return rec
        t, la, lo = rec.time, rec.lat, rec.lon
        t_min = int(t.min())
        self.first = t_min if self.first is None else min(self.first, t_min)
        if self.tail is not None and t_min <= self.tail[0][0]:
            t, la, lo = (
                np.concatenate([a, b]) for a, b in zip(self.tail, (t, la, lo), strict=True)
            )
        mask = duplicate_mask(t, la, lo)[t.size - len(rec) :]  # carried rows come first: kept
        if mask.any():
            tally.reject("duplicate", mask.sum(), rec.strikes_where(mask))
            rec = rec.take(~mask)
        self._carry(rec)
        return rec

    def _carry(self, rec: Records) -> None:
        """Keep the records at the latest time seen (joined to the old ones at that time)."""
        if not len(rec):
            return
        last = rec.time.max()
        at = rec.time == last
        new = (rec.time[at], rec.lat[at], rec.lon[at])
        if self.tail is not None and self.tail[0][0] == last:
            new = tuple(np.concatenate([a, b]) for a, b in zip(self.tail, new, strict=True))
        if self.tail is None or last >= self.tail[0][0]:
            self.tail = new

    def state(self) -> DedupState:
        """What the records given so far leave for the records after them (see
        :class:`DedupState`)."""
        return DedupState(self.first, self.tail)


@dataclass(frozen=True)
class DedupState:
    """What a piece of a file gave its :class:`Deduplicator`: the earliest time (None: no
    record) and the distinct records at the latest time (``tail``). A piece read after others
    finds the same repeats as in a read of the whole file when its earliest time is after the
    latest time before it; otherwise it is read again with the records at that latest time
    (the tails of the pieces before it that reach it) as ``seed``."""

    first: int | None
    tail: tuple[np.ndarray, np.ndarray, np.ndarray] | None


def duplicate_mask(time: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """(N,) bool: True for each record repeating the (time, lat, lon) of an earlier record."""
    n = time.size
    mask = np.zeros(n, dtype=bool)
    if n < 2:
        return mask
    order = None if bool(np.all(time[1:] >= time[:-1])) else np.argsort(time, kind="stable")
    t = time if order is None else time[order]
    tie = t[1:] == t[:-1]
    if not tie.any():
        return mask
    pos = np.flatnonzero(np.r_[tie, False] | np.r_[False, tie])  # records sharing their time
    idx = pos if order is None else order[pos]
    srt = idx[np.argsort(_row_hash(time, lat, lon, idx))]  # equal rows end up adjacent
    same = (
        (time[srt[1:]] == time[srt[:-1]])
        & (lat[srt[1:]] == lat[srt[:-1]])
        & (lon[srt[1:]] == lon[srt[:-1]])
    )
    if not same.any():
        return mask
    starts = np.flatnonzero(np.r_[True, ~same])  # runs of equal rows
    first = np.minimum.reduceat(srt, starts)  # the earliest row of each run is kept
    mask[srt] = srt != np.repeat(first, np.diff(np.r_[starts, srt.size]))
    return mask


def _row_hash(time: np.ndarray, lat: np.ndarray, lon: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """A 64-bit hash (uint64) of (time, lat, lon) of rows ``idx``; equal rows hash equal."""
    h = time[idx].view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    h ^= (lat[idx] + 0.0).view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)  # + 0.0: -0 -> 0
    h ^= (lon[idx] + 0.0).view(np.uint64) * np.uint64(0x165667B19E3779F9)
    return h


@dataclass(frozen=True)
class ReadOptions:
    """What readers need besides the path (picklable, for dask workers)."""

    columns: dict[str, str] = field(default_factory=dict)  # role -> column name, user-given
    chunk_records: int = 5_000_000
    variable: str | None = None  # gridded netCDF: the count variable (None = detect)
    robust: bool = False  # CSV: read every column as text and coerce (slow path for dirty files)
    extra: bool = False  # also read stroke type and peak current (gridding does not need them)
    time_unit: str = "s"  # epoch-number times: s, ms, us or ns since 1970 (data_prep.feeds)
    timezone: str | None = None  # zone of naive times (IANA name or +09:00); None = UTC
    file_days: str | None = None  # file-name pattern of the day each points file covers
    empty_file: str = "no-data"  # what a points file without records observes: no-data, zero
    fov_radius_deg: float | None = None  # GLM field of view (arc degrees); None: as stated
    part: tuple[int, ...] | None = None  # a piece of the file only (data_prep.pieces)
    seed: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # Deduplicator seed of a piece


@dataclass(frozen=True)
class Span:
    """A time interval ``[t0, t1)`` (int64 ns UTC) observed over the whole domain, or only
    inside ``fov`` when given."""

    t0: int
    t1: int
    fov: FieldOfView | None = None


@dataclass(frozen=True)
class Cells:
    """Observed source points (N,) of a gridded input: step-start times and cell centres."""

    time: np.ndarray
    lat: np.ndarray
    lon: np.ndarray


def first_line(e: BaseException) -> str:
    """The first line of an exception's message (for one-line user errors)."""
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__
