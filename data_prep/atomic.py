"""Atomic outputs: write to a temporary file beside the target, then rename it into place.

A crash, an interruption or a full disk never leaves a partial file at the target path, and an
existing file there is replaced only once the new one is complete.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from data_prep.errors import UserError


def check_output_path(path: str | os.PathLike) -> Path:
    """Raise :class:`UserError` naming ``path`` and the fix when no file can be written there:
    ``path`` is a directory, an existing ancestor is a file, or the folder is not writable."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"output {path} is a directory; give a file path inside it or elsewhere")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:  # the nearest existing ancestor
        folder = folder.parent
    if not folder.is_dir():
        raise UserError(
            f"output {path}: {folder} is a file, not a folder; choose another output path"
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UserError(
            f"output {path}: folder {folder} is not writable; choose a writable location"
        )
    return path


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The file gets the usual permissions (``0666`` less the umask; ``mkstemp`` makes ``0600``).
    On any exception the temporary file is removed and ``path`` is left as it was; an
    ``OSError`` (a full disk) becomes a :class:`UserError` naming ``path``. A path no file can
    be written to raises :class:`UserError` before anything is created.
    """
    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise UserError(
            f"output {path}: cannot create a file in {path.parent} ({e.strerror or e}); "
            "choose a writable location"
        ) from None
    os.close(fd)
    try:
        yield Path(tmp)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a quota, an I/O error: nothing reaches path
        why = " ".join((e.strerror or str(e) or type(e).__name__).split())
        raise UserError(
            f"output {path}: writing failed ({why}); {path.name} was left as it was: free "
            "disk space or choose another location"
        ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    with atomic_output(path) as tmp:
        tmp.write_text(text)
    return Path(path)
