"""Outputs that never lose data: checked before any work, written atomically, locked when shared.

:func:`check_output_path` refuses an output that would replace an input of the same command, or
that is not a regular file (a device, a fifo, a symbolic link), before any work is done.
:func:`atomic_output` writes to a temporary file beside the target, then renames it into place:
a crash, an interruption or a full disk never leaves a partial file at the target path, an
existing file there is replaced only once the new one is complete, and the temporary files of
writers killed earlier (``.<name>.<host>.<pid>.<random>.tmp``) are removed by the next writer.
:func:`output_lock` serialises processes that read, then rewrite, one shared output (an archive
that ``prep`` appends to).
"""

from __future__ import annotations

import fcntl
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from data_prep.errors import UserError

Inputs = Iterable[tuple[str, "str | os.PathLike | None"]]  # (what, path): ("--maps", "maps.nc")


def check_output_path(
    path: str | os.PathLike, inputs: Inputs = (), *, folder: bool = False
) -> Path:
    """Raise :class:`UserError` naming ``path`` and the fix when writing there could lose data
    or cannot work.

    Parameters
    ----------
    path : the output file (or, with ``folder``, the output folder).
    inputs : ``(what, path)`` of every input of the command, e.g. ``("--maps", "maps.nc")``;
        an output that is the same file (also through a link) is refused. ``None`` paths are
        ignored.
    folder : ``path`` is a folder the command writes files into (it may exist).

    Refused too: an existing ``path`` that is a symbolic link, a device, a fifo or a socket
    (a directory unless ``folder``; a file if ``folder``), an ancestor that is a file, and a
    folder that is not writable.
    """
    path = Path(path)
    for what, other in inputs:
        if other is not None and _same_file(path, other):
            raise UserError(
                f"output {path} is the {what} {other}; writing it would replace that input: "
                "choose another output path"
            )
    _check_kind(path, folder)
    parent = path if folder else path.parent
    while not parent.exists() and parent != parent.parent:  # the nearest existing ancestor
        parent = parent.parent
    if not parent.is_dir():
        raise UserError(
            f"output {path}: {parent} is a file, not a folder; choose another output path"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(
            f"output {path}: folder {parent} is not writable; choose a writable location"
        )
    return path


def check_outputs(paths: Iterable[str | os.PathLike], inputs: Inputs = ()) -> None:
    """:func:`check_output_path` of each of ``paths`` (the files one command writes)."""
    inputs = list(inputs)
    for path in paths:
        check_output_path(path, inputs)


def _same_file(a: Path, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one file: the same inode when both exist, else one path."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == Path(b).resolve()


def _check_kind(path: Path, folder: bool) -> None:
    if path.is_symlink():
        raise UserError(
            f"output {path} is a symbolic link to {os.readlink(path)}; writing would replace "
            "the link, not its target: give the target's path or a new path"
        )
    if not path.exists():
        return
    if folder and not path.is_dir():
        raise UserError(f"output folder {path} is a file; give a folder path")
    if not folder and path.is_dir():
        raise UserError(f"output {path} is a directory; give a file path inside it or elsewhere")
    if not folder and not path.is_file():
        mode = path.stat().st_mode
        kind = (
            "a character device" if stat.S_ISCHR(mode) else
            "a block device" if stat.S_ISBLK(mode) else
            "a fifo" if stat.S_ISFIFO(mode) else "a socket"
        )  # fmt: skip
        raise UserError(f"output {path} is {kind}, not a regular file; give a file path")


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to ``path``.

    The file gets the usual permissions (``0666`` less the umask; ``mkstemp`` makes ``0600``).
    On any exception the temporary file is removed and ``path`` is left as it was; an
    ``OSError`` (a full disk) becomes a :class:`UserError` naming ``path``. A path no file can
    be written to raises :class:`UserError` before anything is created. Temporary files of
    ``path`` whose writer is gone (a killed run) are removed first.
    """
    path = check_output_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(path)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
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


# --------------------------------------------------------------------------------------------
# temporary files of killed writers


def _host() -> str:
    """This machine's name, reduced to letters, digits and dashes (no dots: they separate)."""
    return "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname()) or "host"


def _temp_prefix(path: Path) -> str:
    """``.<name>.<host>.<pid>.``: whose temporary file it is, so a later writer can tell."""
    return f".{path.name}.{_host()}.{os.getpid()}."


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers on this machine whose process
    is gone (``.<name>.<host>.<pid>.<random>.tmp``); return them. Others are left alone."""
    prefix, host, removed = f".{path.name}.", _host(), []
    for entry in os.scandir(path.parent):
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp")):
            continue
        parts = entry.name[len(prefix) : -len(".tmp")].split(".")
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit():
            if not _alive(int(parts[1])):
                Path(entry.path).unlink(missing_ok=True)
                removed.append(Path(entry.path))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# --------------------------------------------------------------------------------------------
# a lock for outputs that are read, then rewritten (appended archives)


@contextmanager
def output_lock(
    path: str | os.PathLike, wait: float, what: str = "another process"
) -> Iterator[Path]:
    """Hold an exclusive lock on ``.<name>.lock`` beside ``path`` (``flock``) while inside.

    A second process asking for the lock of the same ``path`` prints one line on stderr and
    waits up to ``wait`` seconds, then raises :class:`UserError` naming the holder's pid. The
    lock file stays (removing it could let two processes hold two locks); it holds the pid.
    Yields the lock file's path.
    """
    path = Path(path)
    lock = path.with_name(f".{path.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        if not _try_lock(fd):
            _wait_for_lock(fd, lock, path, wait, what)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()} {_host()}\n".encode(), 0)
        yield lock
    finally:
        os.close(fd)  # releases the lock


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _wait_for_lock(fd: int, lock: Path, path: Path, wait: float, what: str) -> None:
    holder = _holder(lock)
    print(
        f"{path} is being written by {what} ({holder}); waiting up to {wait:g} s for it to finish",
        file=sys.stderr,
        flush=True,
    )
    deadline = time.monotonic() + wait
    while not _try_lock(fd):
        if time.monotonic() >= deadline:
            raise UserError(
                f"{path} is still being written by {what} ({_holder(lock)}) after {wait:g} s "
                f"(lock {lock}); wait for it to finish, or raise the wait time"
            )
        time.sleep(0.1)


def _holder(lock: Path) -> str:
    """``pid N on HOST`` from the lock file (written by its holder), or ``pid unknown``."""
    try:
        pid, host = lock.read_text().split()[:2]
    except (OSError, ValueError):
        return "pid unknown"
    return f"pid {pid} on {host}"
