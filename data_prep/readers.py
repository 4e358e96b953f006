"""One reader per source format -> chunks of the common strike-record table.

A reader is a generator ``read(path, opts, tally)`` that counts every record it reads in
``tally`` (rejecting unparseable rows, NaN or out-of-range coordinates, flagged flashes and
duplicates there, with a reason) and yields :class:`~data_prep.records.Records` chunks of clean
records, plus what the input observed: :class:`Span` (a time interval seen over the whole
domain: a GLM granule) or :class:`Cells` (observed source cells of a gridded input).
``coverage = "span"`` readers (point feeds) observe every cell of every step from their first to
their last record (``--start``/``--end`` reach back from the earliest feed and forward from the
latest, never across the days between two feeds); ``coverage = "days"`` readers (NLDN
tiles) observe every cell of each step they list, so a day missing from a month file is no data,
never a day of zeros.

``READERS`` maps format names to readers; :func:`get_reader` rejects unknown names, listing the
valid ones, and a file whose first bytes do not fit the format named (a netCDF file given as
CSV); :func:`detect_format` picks one from a file's content.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import netCDF4
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from data_prep.csv_files import (  # SlowPath: raised by the CSV readers, caught by prep
    SlowPath,  # noqa: F401
    csv_header,
    csv_types,
    data_start,
    first_range,
    head_lines,
    is_gzip,
    raise_csv,
    range_batches,
    range_bounds,
)
from data_prep.errors import UserError, quote
from data_prep.readers_nc import read_glm, read_gridded
from data_prep.records import (
    Cells,
    Deduplicator,
    DedupState,
    ReadOptions,
    Records,
    Span,
    Tally,
    check_coordinates,
    first_line,
)
from data_prep.tables import batch_records, column_map, prefetched

# Roles of point-record columns and the names tried when the user names none.
DEFAULT_COLUMNS = {
    "time": ("time", "timestamp", "datetime", "ts"),
    "lat": ("lat", "latitude"),
    "lon": ("lon", "longitude", "lng"),
    "stroke_type": ("stroke_type", "type"),
    "peak_current": ("peak_current_kA", "peak_current", "current"),
    "count": ("count",),
    "geometry": ("geometry", "geom", "wkt", "wkb", "the_geom"),  # WKT/WKB/GeoArrow points
}
REQUIRED = ("time", "lat", "lon")
EXTRA_ROLES = ("stroke_type", "peak_current")


@dataclass(frozen=True)
class Reader:
    """A registered reader: its generator, what it observes, and a one-line description."""

    read: Callable[[Path, ReadOptions, Tally], Iterator[Records | Span | Cells]]
    coverage: str  # "span", "days", "granules" or "cells" (see the module docstring)
    description: str


def read_points_parquet(
    path: Path, opts: ReadOptions, tally: Tally
) -> Iterator[Records | DedupState]:
    """Point records from Parquet, streamed by row batches, reading only the needed columns.

    Batches never cross a row group, so a piece of the file (``opts.part``: row-group indices)
    decodes the same chunks as a read of the whole file. Float64 and timestamp[ns] columns
    without nulls reach numpy (and the kernel) without copies.
    """
    pf = _open_parquet(path)
    cols = point_columns(path, pf.schema_arrow.names, opts)
    groups = range(pf.metadata.num_row_groups) if opts.part is None else opts.part
    batches = _parquet_batches(path, pf, groups, opts.chunk_records, list(cols.values()))
    dedup = Deduplicator(opts.seed)
    for batch in prefetched(batches):  # decode the next batch while this one is gridded
        rec = batch_records(path, batch, cols, tally, unit=opts.time_unit, timezone=opts.timezone)
        yield dedup(check_coordinates(rec, tally), tally)
    if opts.part is not None:
        yield dedup.state()


def _parquet_batches(
    path: Path, pf: pq.ParquetFile, groups, batch_size: int, columns: list[str]
) -> Iterator[pa.RecordBatch]:
    """Record batches of ``columns``, row group by row group; a corrupt page or footer entry
    raises :class:`UserError`.

    pyarrow reports damage found while decoding as ``OSError`` (a page header or compressed
    page that does not decode) or ``ArrowInvalid`` (inconsistent column chunks).
    """
    for g in groups:
        batches = pf.iter_batches(
            batch_size=batch_size, row_groups=[g], columns=columns, use_threads=True
        )
        rows, expected = 0, pf.metadata.row_group(g).num_rows
        while rows < expected or expected == 0:
            try:
                batch = next(batches)
            except StopIteration:
                break
            except (pa.ArrowException, OSError, ValueError) as e:
                _corrupt(path, first_line(e))
            rows += batch.num_rows
            yield batch
        if rows != expected:  # a column chunk's count damaged in the footer
            _corrupt(path, f"row group {g} holds {rows} of its {expected} rows")


def _corrupt(path: Path, why: str):
    raise UserError(
        f"{path}: cannot read Parquet data ({why}); the file is corrupt: "
        "re-export or re-download it"
    ) from None


def read_points_csv(path: Path, opts: ReadOptions, tally: Tally) -> Iterator[Records]:
    """Point records from CSV (or .csv.gz), streamed in blocks by pyarrow."""
    skip, names = csv_header(path)
    cols = point_columns(path, names, opts)
    yield from _read_csv(path, opts, tally, skip=skip, names=names, cols=cols)


def point_columns(path: Path, names: list[str], opts: ReadOptions) -> dict[str, str]:
    """Role -> column of a point file: time and lat/lon, or time and a geometry column (named
    with ``--columns geometry=<col>``, or found when the file has no lat and lon columns).

    Gridding needs time, position and count: stroke type and peak current are read only when
    asked (``opts.extra``), which saves decoding two columns of every record.
    """
    lower = {n.lower() for n in names}
    found = {r for r in ("lat", "lon", "geometry") for a in DEFAULT_COLUMNS[r] if a in lower}
    geometry = "geometry" in opts.columns or (
        "geometry" in found and not ({"lat", "lon"} & (found | set(opts.columns)))
    )
    drop = {"lat", "lon"} if geometry else {"geometry"}
    if drop & set(opts.columns):
        raise UserError(
            "--columns names both a geometry column and lat/lon columns; give one: "
            "geometry=<col> or lat=<col>,lon=<col>"
        )
    defaults = {k: v for k, v in DEFAULT_COLUMNS.items() if k not in drop}
    required = ("time", "geometry") if geometry else REQUIRED
    cols = column_map(path, names, opts.columns, defaults, required)
    return cols if opts.extra else {k: v for k, v in cols.items() if k not in EXTRA_ROLES}


CSV_BLOCK_BYTES = 1 << 24  # CSV text decoded per batch (16 MiB)
NLDN_COLUMNS = {"time": "ZDAY", "lon": "CENTERLON", "lat": "CENTERLAT", "count": "TOTAL_COUNT"}


def read_nldn_tiles(path: Path, opts: ReadOptions, tally: Tally) -> Iterator[Records]:
    """NCEI NLDN tiles (``ZDAY,CENTERLON,CENTERLAT,TOTAL_COUNT``): one record per tile-day.

    A record carries TOTAL_COUNT strikes at the tile centre at the start of its UTC day; a
    repeated tile-day is a duplicate. Tiles absent from a listed day had no strikes (the network
    observed them); a day the file does not list at all is not observed (a month file cut short,
    a month missing from the archive).
    """
    skip, names = csv_header(path)
    names = [n.lstrip("#").strip() for n in names]
    missing = [c for c in NLDN_COLUMNS.values() if c not in names]
    if missing:
        raise UserError(
            f"{path}: NLDN tiles header lacks {', '.join(missing)} (found {', '.join(names)}); "
            "expected ZDAY,CENTERLON,CENTERLAT,TOTAL_COUNT or use --format points"
        )
    yield from _read_csv(
        path, opts, tally, skip=skip, names=names, cols=NLDN_COLUMNS, time_format="yyyymmdd"
    )


def _read_csv(path, opts, tally, *, skip, names, cols, time_format=None) -> Iterator:
    """Decode batches; the fast path types coordinates as float64 and lets pyarrow parse
    times; a value it cannot convert raises :class:`SlowPath` (the file is read again as text).

    A plain file is read in ranges of whole lines (:mod:`data_prep.csv_files`; ``opts.part``:
    the offsets of a run of them), typed as its first range is; a gzip file as one stream,
    typed by its first block.
    """
    bad_rows: list[int] = []
    if is_gzip(path):
        batches = _stream_batches(path, opts, skip, names, cols, bad_rows)
    else:
        batches = _range_batches(path, opts, skip, names, cols, bad_rows)
    dedup = Deduplicator(opts.seed)
    for batch in batches:
        if bad_rows:  # rows with a wrong number of fields
            tally.read(len(bad_rows), len(bad_rows))
            tally.reject("unparseable", len(bad_rows), len(bad_rows))
            bad_rows.clear()
        rec = batch_records(
            path, batch, cols, tally, time_format, unit=opts.time_unit, timezone=opts.timezone
        )
        yield dedup(check_coordinates(rec, tally), tally)
    if opts.part is not None:
        yield dedup.state()


def csv_ranges(path: Path) -> list[int]:
    """Offsets cutting a plain CSV file's data into the ranges its reader decodes one by one."""
    skip, _ = csv_header(path)
    return range_bounds(path, data_start(path, skip), CSV_BLOCK_BYTES)


def _range_batches(path, opts, skip, names, cols, bad_rows) -> Iterator[pa.RecordBatch]:
    bounds = csv_ranges(path) if opts.part is None else list(opts.part)
    first = first_range(path, data_start(path, skip), CSV_BLOCK_BYTES)
    return range_batches(path, opts, bounds, first, names, cols, bad_rows)


def _stream_batches(path, opts, skip, names, cols, bad_rows) -> Iterator[pa.RecordBatch]:
    reader = _open_csv(path, opts, skip, names, cols, bad_rows)
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return
        except pa.ArrowInvalid as e:
            raise_csv(path, e, opts)


def _open_csv(path, opts, skip, names, cols, bad_rows):
    types = csv_types(cols, opts.robust)

    def on_bad_row(row):
        bad_rows.append(row.number)
        return "skip"

    try:
        return pacsv.open_csv(
            str(path),
            read_options=pacsv.ReadOptions(
                skip_rows=skip + 1, column_names=names, block_size=CSV_BLOCK_BYTES
            ),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_bad_row),
            convert_options=pacsv.ConvertOptions(
                include_columns=list(cols.values()), column_types=types, strings_can_be_null=True
            ),
        )
    except pa.ArrowInvalid as e:
        raise_csv(path, e, opts)
    except (OSError, EOFError, zlib.error) as e:
        raise UserError(
            f"{path}: cannot read ({first_line(e)}); the file may be truncated"
        ) from None


def _open_parquet(path: Path) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(str(path))
    except (pa.ArrowException, OSError, ValueError) as e:  # a damaged footer: UnicodeDecodeError
        raise UserError(
            f"{path}: not a readable Parquet file ({first_line(e)}); re-export it"
        ) from None


READERS: dict[str, Reader] = {
    "nldn-tiles": Reader(
        read_nldn_tiles, "days", "NCEI NLDN tiles CSV(.gz): ZDAY,CENTERLON,CENTERLAT,TOTAL_COUNT"
    ),
    "points-csv": Reader(read_points_csv, "span", "point records in CSV(.gz): time, lat, lon, ..."),
    "points-parquet": Reader(
        read_points_parquet, "span", "point records in Parquet: time, lat, lon, ..."
    ),
    "glm": Reader(read_glm, "granules", "GOES GLM L2 LCFA granules (netCDF flashes)"),
    "gridded": Reader(
        read_gridded, "cells", "gridded netCDF counts with (time, lat, lon) dimensions"
    ),
}
ALIASES = {
    "nldn": "nldn-tiles",
    "lcfa": "glm",
    "netcdf": "gridded",
    "parquet": "points-parquet",
    "csv": "points-csv",
}


# What a file's first bytes say it is, what each reader takes, and the formats to suggest.
MAGIC = ((b"\x89HDF", "hdf5"), (b"CDF", "netcdf"), (b"PAR1", "parquet"), (b"\x1f\x8b", "gzip"))
KINDS = {
    "hdf5": ("a netCDF-4/HDF5 file", "glm or gridded"),
    "netcdf": ("a netCDF (classic) file", "glm or gridded"),
    "parquet": ("a Parquet file", "points-parquet"),
    "gzip": ("a gzip file (compressed CSV)", "points-csv or nldn-tiles"),
    "text": ("CSV text", "points-csv or nldn-tiles"),
    "binary": ("a binary file of unknown type", None),
}
TAKES = {
    "nldn-tiles": ("text", "gzip"),
    "points-csv": ("text", "gzip"),
    "points-parquet": ("parquet",),
    "glm": ("hdf5", "netcdf"),
    "gridded": ("hdf5", "netcdf"),
}


def get_reader(name: str, path: Path) -> tuple[str, Reader]:
    """The reader for format ``name`` (``auto`` detects it from ``path``'s content).

    A file whose first bytes say it is something else than ``name`` reads (e.g. netCDF given
    as ``points-csv``) raises :class:`UserError` saying what the file looks like.
    """
    name = ALIASES.get(name, name)
    if name == "auto":
        name = detect_format(path)
    elif name == "points":  # CSV or Parquet, told apart by content
        name = _points_kind(path)
    if name not in READERS:
        valid = ", ".join(["auto", "points", *READERS])
        raise UserError(f"unknown format {quote(name)}: use one of {valid}")
    kind = sniff(path)
    if kind is not None and kind not in TAKES[name]:
        looks, fits = KINDS[kind]
        wants = " or ".join(KINDS[k][0] for k in TAKES[name])
        fix = "convert it to CSV or Parquet"
        if fits:
            fix = f"use --format auto, or name the right one: {fits}"
        raise UserError(f"{path}: looks like {looks}, not {wants} as format {name} reads; {fix}")
    return name, READERS[name]


def sniff(path: Path) -> str | None:
    """What a file's first bytes say it is: a key of ``KINDS``, or None for an empty file."""
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return None
    for magic, kind in MAGIC:
        if head.startswith(magic):
            return kind
    return "binary" if b"\x00" in head else "text"


def _points_kind(path: Path) -> str:
    with open(path, "rb") as f:
        return "points-parquet" if f.read(4) == b"PAR1" else "points-csv"


def detect_format(path: Path) -> str:
    """Format name from a file's first bytes: Parquet, netCDF (GLM or gridded) or CSV text."""
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:  # an empty points file: no records (see prep.empty_file)
        return "points-csv"
    if head[:4] == b"PAR1":
        return "points-parquet"
    if head[:4] == b"\x89HDF" or head[:3] == b"CDF":
        try:
            with netCDF4.Dataset(str(path)) as ds:
                return "glm" if "flash_lat" in ds.variables else "gridded"
        except OSError as e:
            raise UserError(
                f"{path}: not a readable netCDF file ({first_line(e)}); re-download it"
            ) from None
    text = "\n".join(head_lines(path))
    return "nldn-tiles" if "ZDAY" in text and "TOTAL_COUNT" in text else "points-csv"
