"""The undo journal of an append written in place into a maps file.

Rewriting a whole archive to add a day costs as much as the archive, so ``prep`` appends in
place (:mod:`data_prep.maps_file`). Before the first byte of the maps file changes, the folder
``.<name>.journal`` beside it records the archive's length in steps and its attributes; before
an existing row is changed, its old values are saved there (each save written atomically). The
append ends by removing the folder: that is the commit. A journal found later means an append
was interrupted; :func:`roll_back` restores the saved rows and attributes and cuts the rows added
since (copying the archive's first steps to a new file, block by block, and renaming it over the
damaged one), so the next ``prep`` starts from the archive as it was and grids those inputs again.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import netCDF4
import numpy as np
import xarray as xr

from data_prep.atomic import atomic_output
from data_prep.errors import UserError
from data_prep.schema import COUNT, COVERAGE, TIME

ROLLBACK_STEPS = 256  # steps per block when a roll-back copies the archive


def journal_path(out: Path) -> Path:
    """``.<name>.journal`` beside the maps file ``out``."""
    out = Path(out)
    return out.with_name(f".{out.name}.journal")


def check_no_journal(path: Path) -> None:
    """Refuse to read a maps file whose append was interrupted (its rows are half written)."""
    if journal_path(path).exists():
        raise UserError(
            f"{path}: an append to it was interrupted ({journal_path(path).name} is beside it); "
            f"run the same 'strikecast prep ... --out {path}' again to roll it back and append"
        )


class Journal:
    """The journal of one append to ``out``, whose first ``n_steps`` rows are the old archive."""

    def __init__(self, out: Path, n_steps: int, attrs: dict):
        self.out, self.folder = Path(out), journal_path(out)
        self.folder.mkdir()
        head = {"n_steps": int(n_steps), "attrs": {k: _plain(v) for k, v in attrs.items()}}
        with atomic_output(self.folder / "head.json") as tmp:
            tmp.write_text(json.dumps(head))

    def save_rows(self, start: int, counts: np.ndarray, cov: np.ndarray) -> None:
        """Keep the old rows ``start ..`` (counts (S, H, W), coverage (S, H, W)) before they change."""
        with atomic_output(self.folder / f"rows-{start:012d}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, counts=counts, coverage=cov)

    def commit(self) -> None:
        shutil.rmtree(self.folder)


def roll_back(out: Path) -> bool:
    """Undo an interrupted append to ``out`` (see the module's text); False when there is none."""
    folder = journal_path(out)
    if not folder.exists():
        return False
    head_file = folder / "head.json"
    if head_file.exists():  # no head: the append stopped before changing the maps file
        head = json.loads(head_file.read_text())
        with netCDF4.Dataset(out, "a") as nc:
            for rows in sorted(folder.glob("rows-*.npz")):
                start = int(rows.name[5:17])
                with np.load(rows) as saved:
                    n = saved["counts"].shape[0]
                    nc[COUNT][start : start + n] = saved["counts"]
                    nc[COVERAGE][start : start + n] = saved["coverage"]
            for name in nc.ncattrs():
                nc.delncattr(name)
            nc.setncatts(head["attrs"])
            grown = len(nc.dimensions[TIME]) > head["n_steps"]
        if grown:
            _cut(out, head["n_steps"])
    shutil.rmtree(folder)
    return True


def _cut(out: Path, n_steps: int) -> None:
    """Keep the first ``n_steps`` steps of ``out``: copied block by block to a file renamed over it."""
    with xr.open_dataset(out, chunks={TIME: ROLLBACK_STEPS}) as ds:
        with atomic_output(out) as tmp:
            ds.isel({TIME: slice(0, n_steps)}).to_netcdf(
                tmp, engine="netcdf4", unlimited_dims=[TIME]
            )


def _plain(value):
    """An attribute value JSON can hold (numpy scalars and arrays as Python ones)."""
    return value.tolist() if isinstance(value, np.ndarray | np.generic) else value
