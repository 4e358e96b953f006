"""Atomic outputs: a path no file can be written to is refused up front, in one line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from data_prep.atomic import atomic_output, atomic_write_text
from data_prep.errors import UserError


def test_output_path_that_is_a_directory_is_refused_naming_it(tmp_path):
    target = tmp_path / "maps.nc"
    target.mkdir()
    with pytest.raises(UserError, match=r"maps\.nc is a directory; give a file path") as e:
        atomic_write_text(target, "x")
    assert "\n" not in str(e.value) and target.is_dir() and not list(target.iterdir())


def test_output_under_a_file_is_refused_naming_the_file(tmp_path):
    blocker = tmp_path / "runs"
    blocker.write_text("not a folder")
    with pytest.raises(UserError, match=r"runs is a file, not a folder; choose another"):
        atomic_write_text(blocker / "deep" / "maps.nc", "x")
    assert blocker.read_text() == "not a folder"


def test_unwritable_folder_is_refused_naming_it(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root may write anywhere: access() answers as for a user
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != folder)
    try:
        with pytest.raises(UserError, match=r"folder .*ro is not writable; choose a writable"):
            atomic_write_text(folder / "maps.nc", "x")
        assert not list(folder.iterdir())
    finally:
        folder.chmod(0o700)


def test_a_temporary_file_that_cannot_be_made_is_a_user_error(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(UserError, match=r"maps\.nc: cannot create a file in .*Permission denied"):
        with atomic_output(tmp_path / "maps.nc"):
            pass
    assert not list(tmp_path.iterdir())
