"""Compact storage of a sub-daily climatology table in checkpoints.

A sub-daily table (61 season bins, ``n_hours`` hours, H, W) float32 takes 144 MB at conus-0.25
and 900 MB at conus-0.1 with hourly maps, and predict needs it without the training data, so it
travels in every checkpoint. It is stored quantised and entropy-coded instead:

1. Quantise on the arcsine scale: ``y = arcsin(sqrt(p))``, ``q = round(y / step)``, and back
   ``p' = sin(q step) ** 2``. As ``dp/dy = sin(2 y) <= 1``, ``|p' - p| <= step / 2`` at every
   entry (``TOLERANCE = 1e-3`` for the default ``STEP``). On this scale the sampling noise of a
   frequency is the same at every ``p`` (about ``1 / (2 sqrt(n))`` for ``n`` samples), so rare
   and frequent cells cost the same bits, and a cell of p = 0.001 is not stored to six digits.
2. Differences of ``q`` along the hour of day, then along the season: the table is smoothed in
   both, so most differences are a few steps.
3. Zigzag to unsigned 16 bit, low and high bytes as two planes (the high plane is nearly all
   zero), deflate (zlib), one season bin after another, so no full-size temporary is made.

Measured on tables fitted to one year of the hourly synthetic world: 0.26 bytes an entry at
conus-0.25 (144 MB -> 9.4 MB), 0.20 at 0.1 degrees (its strikes gridded at 0.1 in ten latitude
bands: 898 MB -> 44 MB), 0.34-0.40 on a denser 0.5-degree Gulf coast world of one to three years;
every entry within ``TOLERANCE``. A truncated Fourier series in season and hour does not get
there: with 143 terms a cell (10 times fewer numbers) it misses those Gulf tables by up to
0.013-0.023, and a global rank-64 SVD by 0.003-0.005; the table's own sampling noise is not
band-limited.

In memory a sub-daily table stays coded too, as a :class:`CodedTable`: its level numbers in
uint16 (half the bytes of float32: 450 MB, not 900, at hourly conus-0.1, held by training, its
loader workers and predict) and the float32 value of each level, so a read gives exactly the
float32 values :func:`unpack_table` gives.

Daily tables (366, H, W) stay float32 in checkpoints, so daily runs read the table they always
read, to the bit (packed, the daily table of that conus-0.25 year would take 2.1 MB, not 36 MB).
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

CODEC = "asin-sqrt-delta-zlib-1"
STEP = 2e-3  # quantisation step of arcsin(sqrt(p))
TOLERANCE = STEP / 2  # largest |p' - p| of a packed and unpacked table
_LEVEL = 6  # zlib level: 9 is a few percent smaller and many times slower


def pack_table(table: np.ndarray, step: float = STEP) -> dict:
    """A table of probabilities (S, n_hours, H, W) in [0, 1] as plain containers for a checkpoint:
    ``{"codec", "shape", "step", "data": uint8 tensor}``; :func:`unpack_table` inverts it within
    ``step / 2``."""
    table = np.asarray(table)
    if table.ndim != 4:
        raise ValueError(f"climatology table of shape {table.shape} is not (S, hours, H, W)")
    coder = zlib.compressobj(_LEVEL)
    parts, prev = [], np.zeros(table.shape[1:], np.int32)
    for season in table:  # (n_hours, H, W)
        dh = np.diff(_quantise(season, step), axis=0, prepend=0)  # along the hour of day
        parts.append(coder.compress(_planes(dh - prev)))
        prev = dh
    parts.append(coder.flush())
    data = np.frombuffer(b"".join(parts), dtype=np.uint8).copy()
    return {
        "codec": CODEC,
        "shape": [int(n) for n in table.shape],
        "step": float(step),
        "data": torch.from_numpy(data),
    }


class CodedTable:
    """A sub-daily table (S, n_hours, H, W) as uint16 level numbers ``codes`` and the float32
    ``levels`` they stand for: reads (:meth:`take_bins`, indexing, ``np.asarray``) give the
    float32 values of :func:`unpack_table`, bit for bit."""

    def __init__(self, codes: np.ndarray, levels: np.ndarray):
        self.codes, self.levels = codes, levels

    shape = property(lambda self: self.codes.shape)
    ndim = property(lambda self: self.codes.ndim)
    dtype = np.dtype(np.float32)

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + self.levels.nbytes

    def take_bins(self, bins: np.ndarray) -> np.ndarray:
        """float32 (N, H, W) of the flat (season, hour) bins ``bins`` (N,)."""
        return self.levels[self.codes.reshape(-1, *self.shape[-2:])[bins]]

    def __getitem__(self, key) -> np.ndarray:
        return self.levels[self.codes[key]]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        table = self.levels[self.codes]  # the whole float32 table: for tests and small grids
        return table if dtype is None else table.astype(dtype)


def same_table(a, b) -> bool:
    """Whether two tables (arrays or :class:`CodedTable`) hold the same values; two coded ones are
    compared by codes and levels, without making either in float32."""
    if isinstance(a, CodedTable) and isinstance(b, CodedTable):
        return np.array_equal(a.codes, b.codes) and np.array_equal(a.levels, b.levels)
    return np.array_equal(np.asarray(a), np.asarray(b))


def unpack_codes(state: dict) -> CodedTable:
    """The table of :func:`pack_table`'s ``state`` kept coded (see :class:`CodedTable`)."""
    shape, levels = packed_shape(state), _levels(float(state["step"]))
    codes = np.empty(shape, np.uint16 if len(levels) <= 1 << 16 else np.uint32)  # 786 levels
    for s, q in enumerate(_season_codes(state)):
        codes[s] = q
    return CodedTable(codes, levels)


def unpack_table(state: dict) -> np.ndarray:
    """The float32 table (S, n_hours, H, W) of :func:`pack_table`'s ``state``.

    Raises
    ------
    ValueError
        On another codec, or data that do not decode to the stated shape.
    """
    out = np.empty(packed_shape(state), np.float32)
    levels = _levels(float(state["step"]))  # p of every q: a lookup instead of sin() per entry
    for s, q in enumerate(_season_codes(state)):
        out[s] = levels[q]
    return out


def check_packed(state: dict) -> tuple[int, ...]:
    """The shape of the table in ``state``, decoded one season bin at a time to check it (no
    full-size table is made); raises ValueError as :func:`unpack_table` does."""
    for _ in _season_codes(state):
        pass
    return packed_shape(state)


def packed_shape(state: dict) -> tuple[int, ...]:
    """The stated shape of the table in ``state`` (codec and shape checked, not the data)."""
    if state.get("codec") != CODEC:
        raise ValueError(f"climatology codec {state.get('codec')!r} is not {CODEC!r}")
    shape, step = tuple(int(n) for n in state["shape"]), float(state["step"])
    if len(shape) != 4 or min(shape) < 1 or not step > 0:
        raise ValueError(f"climatology table of shape {shape}, step {step}")
    return shape


def _season_codes(state: dict):
    """The level numbers (n_hours, H, W) of the season bins of ``state``, one after another."""
    shape = packed_shape(state)
    step, data = float(state["step"]), state["data"]
    raw = data.cpu().numpy().tobytes() if isinstance(data, torch.Tensor) else bytes(data)
    decoder = zlib.decompressobj()
    plane = 2 * int(np.prod(shape[1:]))  # bytes of one season bin
    n_levels = len(_levels(step))
    dh = np.zeros(shape[1:], np.int32)
    for s in range(shape[0]):
        try:
            chunk = decoder.decompress(raw, plane)
        except zlib.error as e:
            raise ValueError(f"climatology data are damaged ({e})") from None
        raw = decoder.unconsumed_tail
        if len(chunk) != plane:
            raise ValueError(f"climatology data end in season bin {s} of {shape[0]}")
        dh = dh + _unplanes(chunk, shape[1:])
        q = np.cumsum(dh, axis=0)
        if q.min() < 0 or q.max() >= n_levels:
            raise ValueError(f"climatology data are damaged (season bin {s} out of range)")
        yield q


def packed_nbytes(state: dict) -> int:
    """Bytes of the coded table in ``state`` (what it adds to a checkpoint, less a few hundred
    bytes of names)."""
    return int(state["data"].numel())


def _quantise(p: np.ndarray, step: float) -> np.ndarray:
    """round(arcsin(sqrt(p)) / step), int32 of ``p``'s shape; p clipped to [0, 1]."""
    y = np.arcsin(np.sqrt(np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)))
    return np.rint(y / step).astype(np.int32)


def _levels(step: float) -> np.ndarray:
    """``sin(q step) ** 2`` float32 for q = 0 .. round(pi / 2 / step), every level of
    :func:`_quantise`."""
    q = np.arange(int(np.rint(np.pi / 2 / step)) + 1)
    return (np.sin(q * step) ** 2).astype(np.float32)


def _planes(d: np.ndarray) -> bytes:
    """int32 differences (|d| < 2**15) -> zigzag uint16 -> low bytes, then high bytes."""
    z = ((d << 1) ^ (d >> 31)).astype(np.uint16)
    return (z & 0xFF).astype(np.uint8).tobytes() + (z >> 8).astype(np.uint8).tobytes()


def _unplanes(chunk: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of :func:`_planes`: int32 differences of ``shape``."""
    b = np.frombuffer(chunk, dtype=np.uint8).astype(np.int32).reshape(2, *shape)
    z = b[0] | (b[1] << 8)
    return (z >> 1) ^ -(z & 1)
