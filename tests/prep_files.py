"""Small input files of every format prep reads, good and bad, written by the tests themselves."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from data_prep.config import PrepConfig, SequenceConfig
from data_prep.readers import SlowPath, get_reader
from data_prep.records import ReadOptions, Records, Tally

PLAINS = "30,46,-104,-80,0.5"  # the plains-0.5 bounds as a custom grid
# short windows over few blocks: what the prep tests grid with
PREP_SEQ = SequenceConfig(n_in=5, n_out=1, block_steps=8)
# a training run of a few seconds on mock maps: what tests that need a checkpoint override
TINY = [
    "model.encoder_channels=[8]",
    "model.hidden_channels=[8]",
    "model.norm_groups=4",
    "data.n_in=5",
    "data.n_out=2",
    "data.block_steps=20",
    "train.batch_size=16",
    "train.epochs=1",
    "train.progress=false",
    "train.device=cpu",
    "train.threads=1",
]
# a quickstart of tens of seconds: small world, small model, a few steps
QUICKSTART_TINY = [
    "synth.days=300",
    "synth.oracle_samples=4",
    "data.block_steps=40",
    "model.encoder_channels=[8,16]",
    "model.hidden_channels=[16]",
    "train.epochs=1",
    "train.max_steps=6",
    "train.batch_size=8",
    "train.progress=false",
    "eval.bootstrap=10",
]


def strikes_frame(
    n: int = 2000, seed: int = 0, days: int = 5, start: str = "2021-06-01"
) -> pd.DataFrame:
    """Point strikes like the synthetic world's ``strikes.parquet`` (sorted in time, UTC)."""
    rng = np.random.default_rng(seed)
    t0 = pd.Timestamp(start, tz="UTC").value
    time = np.sort(rng.integers(t0, t0 + days * 86400 * 10**9, n))
    return pd.DataFrame(
        {
            "time": pd.to_datetime(time, utc=True),
            "lat": rng.uniform(30.0, 46.0, n),
            "lon": rng.uniform(-104.0, -80.0, n),
            "stroke_type": pd.Categorical(rng.choice(["CG", "IC"], n)),
            "peak_current_kA": rng.normal(-20, 10, n).astype(np.float32),
        }
    )


def write_parquet(df: pd.DataFrame, path: Path, row_group_size: int | None = None) -> Path:
    pq.write_table(
        pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=row_group_size
    )
    return path


def write_nldn(path: Path, rows: list[tuple], gz: bool = True) -> Path:
    """An NLDN tiles file: NCEI's ``#`` header lines then ZDAY,CENTERLON,CENTERLAT,TOTAL_COUNT."""
    text = "#This file contains the count of Vaisala NLDN lightning strikes per 0.1 degree cell.\n"
    text += "#ZDAY,CENTERLON,CENTERLAT,TOTAL_COUNT\n"
    text += "".join(",".join(str(v) for v in r) + "\n" for r in rows)
    if gz:
        import gzip

        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def write_glm(
    path: Path,
    start: str,
    lat,
    lon,
    offsets_s,
    flags,
    *,
    seconds: float = 20.0,
    units: dict[str, str | None] | None = None,
    fov: tuple[float, float, float | None] | None = None,
) -> Path:
    """A GLM L2 LCFA-like granule: flash_* variables, product_time and its bounds.

    ``units`` replaces the ``units`` attribute of the variables it names (None deletes it).
    ``fov`` = (lat, lon, extent): the field of view's centre and, unless None, its stated
    north/south extent in ``lat_field_of_view_bounds`` (lat +/- extent).
    """
    import netCDF4

    epoch = pd.Timestamp("2000-01-01 12:00:00", tz="UTC")
    t0 = (pd.Timestamp(start, tz="UTC") - epoch).total_seconds()
    with netCDF4.Dataset(path, "w") as ds:
        ds.createDimension("number_of_flashes", len(lat))
        ds.createDimension("number_of_time_bounds", 2)
        pt = ds.createVariable("product_time", "f8")
        pt.units = "seconds since 2000-01-01 12:00:00"
        pt[...] = t0
        b = ds.createVariable("product_time_bounds", "f8", ("number_of_time_bounds",))
        b[:] = [t0, t0 + seconds]
        for name, vals in (("flash_lat", lat), ("flash_lon", lon)):
            v = ds.createVariable(name, "f4", ("number_of_flashes",))
            v[:] = np.asarray(vals, dtype=np.float32)
        off = ds.createVariable("flash_time_offset_of_first_event", "i2", ("number_of_flashes",))
        off.setncattr("_Unsigned", "true")
        off.scale_factor, off.add_offset = np.float32(0.0003814756), np.float32(-5.0)
        off.units = f"seconds since {pd.Timestamp(start):%Y-%m-%d %H:%M:%S.000}"
        off.set_auto_maskandscale(False)
        raw = np.rint((np.asarray(offsets_s) + 5.0) / 0.0003814756).astype(np.uint16)
        off[:] = raw.view(np.int16)
        q = ds.createVariable("flash_quality_flag", "i2", ("number_of_flashes",))
        q[:] = np.asarray(flags, dtype=np.int16)
        if fov is not None:
            _write_fov(ds, *fov)
        for name, text in (units or {}).items():
            if text is None:
                ds[name].delncattr("units")
            else:
                ds[name].units = text
    return path


def _write_fov(ds, lat: float, lon: float, extent: float | None) -> None:
    """The LCFA field-of-view variables: centre scalars and, unless None, the N/S extent."""
    for name, value in (("lat_field_of_view", lat), ("lon_field_of_view", lon)):
        ds.createVariable(name, "f4")[...] = value
    if extent is not None:
        ds.createDimension("number_of_field_of_view_bounds", 2)
        b = ds.createVariable("lat_field_of_view_bounds", "f4", ("number_of_field_of_view_bounds",))
        b[:] = [lat + extent, lat - extent]


def write_gridded(
    path: Path,
    values: np.ndarray,
    times,
    lat,
    lon,
    name: str = "flash_count",
    time_attrs: dict | None = None,
) -> Path:
    """A gridded netCDF of counts ``values`` (T, H, W) (NaN = no data).

    Numeric ``times`` are stored as they are, with attributes ``time_attrs`` (e.g. units);
    anything else is converted to datetimes and encoded by xarray.
    """
    import xarray as xr

    numeric = np.asarray(times).dtype.kind in "iuf"
    time = (("time",), np.asarray(times), time_attrs or {}) if numeric else pd.DatetimeIndex(times)
    ds = xr.Dataset(
        {name: (("time", "latitude", "longitude"), values)},
        coords={"time": time, "latitude": lat, "longitude": lon},
    )
    ds.to_netcdf(path)
    return path


def corrupt_parquet(path: Path, where: str) -> Path:
    """Damage a Parquet file of six row groups of 500 rows whose magic bytes stay intact.

    ``where``: ``page_header`` (the lat page header of row group 3), ``footer_count`` (the
    value count of a column chunk of row group 3, in the footer) or ``footer_name`` (a byte of
    the first column name in the footer schema, no longer UTF-8).
    """
    data = bytearray(path.read_bytes())
    footer = len(data) - 8 - int.from_bytes(data[-8:-4], "little")
    if where == "page_header":
        at = pq.ParquetFile(path).metadata.row_group(3).column(1).data_page_offset
        data[at : at + 16] = b"\xff" * 16
    elif where == "footer_count":  # thrift compact: field delta 1, i64, zigzag varint of 500
        counts = [i for i in range(footer, len(data)) if data[i : i + 3] == b"\x16\xe8\x07"]
        data[counts[len(counts) // 2] + 1] = 0xFF
    else:
        data[data.index(b"\x04time", footer) + 1] = 0xFF
    path.write_bytes(bytes(data))
    return path


def plains_config(**kw) -> PrepConfig:
    """A prep config on the plains-0.5 grid, ``kw`` overriding any field."""
    return PrepConfig(**{"grid": "plains-0.5", **kw})


def read_items(path, fmt="auto", **opts):
    """Every item a reader yields; a CSV the fast path cannot convert is read again as text."""
    _, reader = get_reader(fmt, path)
    try:
        tally = Tally()
        items = list(reader.read(path, ReadOptions(**opts), tally))
    except SlowPath:
        tally = Tally()
        items = list(reader.read(path, ReadOptions(**opts, robust=True), tally))
    recs = [r for r in items if isinstance(r, Records)]
    return recs, tally, items


def concat_coords(recs) -> dict:
    """The time, lat and lon of ``recs`` joined into one array each."""
    return {k: np.concatenate([getattr(r, k) for r in recs]) for k in ("time", "lat", "lon")}
