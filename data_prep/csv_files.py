"""CSV files as text: the header, gzip detection, and ranges of whole lines.

A plain (not gzip) CSV file is read in ranges of about ``block`` bytes, each cut at the start of
a line: range ``k`` ends at the first line start at or after ``data_start + k * block``. The
cuts depend only on the file and ``block``, so a read of the whole file and reads of runs of its
ranges (pieces gridded by separate workers, :mod:`data_prep.pieces`) decode the very same
chunks. A gzip file cannot be entered in the middle: it is read from its start, as one stream.
"""

from __future__ import annotations

import csv
import gzip
import zlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from data_prep.errors import UserError
from data_prep.records import first_line

HEAD_LINES = 64  # lines read to find the header (after comment lines)


def csv_header(path: Path) -> tuple[int, list[str]]:
    """``(comment lines before the header, header names)``; NLDN's header is a ``#`` line."""
    lines = head_lines(path, HEAD_LINES)
    skip = 0
    while skip < len(lines) and lines[skip].startswith("#"):
        skip += 1
    if skip and "," in lines[skip - 1] and not lines[skip - 1][1:2].isdigit():
        return skip - 1, _fields(lines[skip - 1].lstrip("#"))
    if skip >= len(lines) or not lines[skip].strip():
        raise UserError(f"{path}: empty CSV file (no header line); give a file with a header row")
    return skip, _fields(lines[skip])


def _fields(line: str) -> list[str]:
    """Header names of one CSV line (quotes removed)."""
    return [c.strip() for c in next(csv.reader([line.strip()]))]


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def head_lines(path: Path, n: int = 8) -> list[str]:
    """The first ``n`` lines of a CSV(.gz) file as text ("" past its end)."""
    try:
        opener = gzip.open if is_gzip(path) else open
        with opener(path, "rt", errors="replace") as f:
            return [f.readline() for _ in range(n)]
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(
            f"{path}: cannot read ({first_line(e)}); the file may be truncated"
        ) from None


def data_start(path: Path, skip: int) -> int:
    """Byte offset of the first data line: after ``skip`` comment lines and the header."""
    with open(path, "rb") as f:
        for _ in range(skip + 1):
            f.readline()
        return f.tell()


def range_bounds(path: Path, start: int, block: int) -> list[int]:
    """Offsets ``[start, c1, ..., size]`` cutting the data of a plain CSV file into ranges of
    whole lines of about ``block`` bytes (fewer when lines are long); empty ranges are left out."""
    size = path.stat().st_size
    bounds = [start]
    with open(path, "rb") as f:
        k = 1
        while start + k * block < size:
            cut = _line_start(f, start + k * block, size)
            if cut > bounds[-1] and cut < size:
                bounds.append(cut)
            k = max(k + 1, (cut - start) // block + 1)  # the cuts inside a long line: this one
    if size > bounds[-1] or len(bounds) == 1:
        bounds.append(size)
    return bounds


def first_range(path: Path, start: int, block: int) -> tuple[int, int]:
    """The first range of :func:`range_bounds` (without cutting the rest of the file)."""
    size = path.stat().st_size
    if start + block >= size:
        return start, size
    with open(path, "rb") as f:
        return start, _line_start(f, start + block, size)


def _line_start(f, offset: int, size: int) -> int:
    """The first line start at or after ``offset`` (``size`` when no line starts there)."""
    f.seek(offset - 1)
    f.readline()  # to the end of the line holding byte offset - 1 (its newline included)
    return min(f.tell(), size)


class SlowPath(Exception):
    """Raised by the fast CSV path on a value it cannot convert; the file is re-read robustly."""


def read_range(path: Path, a: int, b: int) -> bytes:
    """Bytes ``a .. b`` of a file."""
    with open(path, "rb") as f:
        f.seek(a)
        return f.read(b - a)


def range_batches(path, opts, bounds, first, names, cols, bad_rows) -> Iterator[pa.RecordBatch]:
    """One batch per range ``bounds[i] .. bounds[i + 1]``; ``first``: the file's first range,
    whose column types every range keeps on the fast path."""
    types, head, head_bad = csv_types(cols, opts.robust), None, []
    if not opts.robust and first[1] > first[0]:  # the first range's types hold for every range
        head = _parse_range(path, *first, names, cols, types, head_bad, opts)
        types = {**{f.name: f.type for f in head.schema}, **types}
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if b <= a:  # no data line (a header only)
            continue
        if head is not None and a == first[0]:
            table = head
            bad_rows.extend(head_bad)
        else:
            table = _parse_range(path, a, b, names, cols, types, bad_rows, opts)
        yield table.combine_chunks().to_batches()[0] if table.num_rows else _empty(table)


def _parse_range(path, a, b, names, cols, types, bad_rows, opts) -> pa.Table:
    """Rows of bytes ``a .. b`` (whole lines) of a plain CSV file."""

    def on_bad_row(row):
        bad_rows.append(row.number)
        return "skip"

    data = read_range(path, a, b)
    # types to infer: from the whole range (one block); else blocks parsed on threads
    block = len(data) + 1 if set(cols.values()) - set(types) else 1 << 20
    try:
        return pacsv.read_csv(
            pa.py_buffer(data),
            read_options=pacsv.ReadOptions(column_names=names, block_size=block),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_bad_row),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(cols.values()), column_types=types, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as e:
        raise_csv(path, e, opts)


def csv_types(cols: dict[str, str], robust: bool) -> dict:
    """Column types the fast path fixes (coordinates float64, geometry text); all text when
    ``robust`` (the slow path)."""
    if robust:
        return dict.fromkeys(cols.values(), pa.string())
    types = {cols[r]: pa.float64() for r in ("lat", "lon") if r in cols}
    if "geometry" in cols:
        types[cols["geometry"]] = pa.string()
    return types


def _empty(table: pa.Table) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=table.schema)


def raise_csv(path, e, opts):
    if not opts.robust and ("conver" in str(e).lower() or "parse" in str(e).lower()):
        raise SlowPath(str(e)) from None
    raise UserError(
        f"{path}: cannot read CSV ({first_line(e)}); the file may be truncated"
    ) from None
