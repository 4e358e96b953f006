"""Nothing lost: no output replaces an input or a device, concurrent preps keep every record,
train never replaces another run, a changed quickstart config redoes its stages, and the temporary
files of killed writers are removed."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import xarray as xr
from prep_files import PLAINS, TINY, strikes_frame, write_parquet

from data_prep.atomic import atomic_output, atomic_write_text, check_output_path, output_lock
from data_prep.config import PrepConfig, SequenceConfig
from data_prep.errors import UserError
from data_prep.mock import mock_maps
from data_prep.prep import prep
from data_prep.records import Tally
from forecast.cli import main
from forecast.config import load_experiment
from forecast.training import train
from forecast.training.checkpoint import load_checkpoint

SEQ = SequenceConfig(n_in=5, n_out=1, block_steps=8)


def _digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _one_line_error(argv, capsys) -> str:
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained tiny model (best.pt) and its maps."""
    root = tmp_path_factory.mktemp("lost")
    maps = root / "maps.nc"
    mock_maps(n_steps=100, shape=(16, 24), seed=5).to_netcdf(maps)
    train(load_experiment(None, [*TINY, f"train.maps={maps}", f"train.out={root / 'run'}"]))
    return root / "run" / "best.pt", maps


# --------------------------------------------------------------------------------------------
# an output is never an input, a device, a fifo or a link


@pytest.mark.parametrize("victim", ["maps", "checkpoint"])
def test_predict_out_that_is_its_maps_or_checkpoint_exits_2_and_leaves_it_intact(
    run, victim, capsys
):
    ckpt, maps = run
    target = {"maps": maps, "checkpoint": ckpt}[victim]
    before = _digest(target)
    err = _one_line_error(
        ["predict", "--checkpoint", ckpt, "--maps", maps, "--out", target], capsys
    )
    assert f"is the --{victim} {target}" in err and "choose another output path" in err
    assert _digest(target) == before


def test_an_output_linked_to_an_input_or_any_link_is_refused(run, tmp_path, capsys):
    ckpt, maps = run
    to_input, to_other = tmp_path / "f.nc", tmp_path / "g.nc"
    to_input.symlink_to(maps)
    (tmp_path / "other.nc").write_text("keep")
    to_other.symlink_to(tmp_path / "other.nc")
    before = _digest(maps)
    argv = ["predict", "--checkpoint", ckpt, "--maps", maps, "--out"]
    assert "is the --maps" in _one_line_error([*argv, to_input], capsys)
    assert "is a symbolic link to" in _one_line_error([*argv, to_other], capsys)
    assert _digest(maps) == before and to_other.is_symlink()


def test_an_output_that_is_a_fifo_or_a_device_is_refused_in_one_line(run, tmp_path, capsys):
    ckpt, maps = run
    fifo = tmp_path / "f.nc"
    os.mkfifo(fifo)
    argv = ["predict", "--checkpoint", ckpt, "--maps", maps, "--out", fifo]
    assert "is a fifo, not a regular file" in _one_line_error(argv, capsys)
    assert stat.S_ISFIFO(fifo.lstat().st_mode)
    with pytest.raises(UserError, match=r"/dev/null is a character device, not a regular file"):
        check_output_path("/dev/null")  # only checked: nothing is written


def _write_dummies(tmp_path: Path) -> dict[str, Path]:
    """Files the commands below take as inputs; each is refused before it is read."""
    names = ("maps.nc", "f.nc", "ck.pt", "log.csv", "notes.md")
    paths = {n: tmp_path / n for n in names}
    for p in paths.values():
        p.write_text(f"input {p.name}\n")
    paths["c.yaml"] = tmp_path / "c.yaml"
    paths["c.yaml"].write_text("synth:\n  days: 30\n")
    return paths


@pytest.mark.parametrize(
    ("argv", "victim", "named"),
    [
        (["evaluate", "--maps", "maps.nc", "--out", "maps.nc"], "maps.nc", "--maps"),
        (["evaluate", "--maps", "maps.nc", "--forecast", "f.nc", "--out", "f.nc"], "f.nc", "--forecast f"),
        (["evaluate", "--maps", "maps.nc", "--checkpoint", "ck.pt", "--out", "ck.pt"], "ck.pt", "--checkpoint"),
        (["evaluate", "--maps", "maps.nc", "--forecast", "notes.md", "--out", "notes.nc"], "notes.md", "--forecast notes"),
        (["evaluate", "--maps", "maps.nc", "--out", "scores.md"], "scores.md", "scorecard"),
        (["plot", "--maps", "maps.nc", "--out", "maps.nc"], "maps.nc", "--maps"),
        (["plot", "--log", "log.csv", "--out", "log.csv"], "log.csv", "--log"),
        (["train", "train.maps=maps.nc", "train.out=maps.nc"], "maps.nc", "train.maps"),
        (["calibrate", "train.maps=maps.nc", "train.out=maps.nc"], "maps.nc", "train.maps"),
        (["synth", "--config", "c.yaml", "--out", "c.yaml"], "c.yaml", "--config"),
        (["prep", "maps.nc", "--out", "maps.nc"], "maps.nc", "input"),
        (["prep", "f.nc", "--config", "c.yaml", "--out", "c.yaml"], "c.yaml", "--config"),
        (["quickstart", "--config", "c.yaml", "--out", "c.yaml"], "c.yaml", "--config"),
    ],
)  # fmt: skip
def test_every_writing_command_refuses_an_output_that_is_one_of_its_inputs(
    tmp_path, capsys, monkeypatch, argv, victim, named
):
    paths = _write_dummies(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = {n: _digest(p) for n, p in paths.items()}
    err = _one_line_error(argv, capsys)
    assert named in err and victim in err, err
    assert {n: _digest(p) for n, p in paths.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(paths)


def test_calibrate_may_rewrite_the_runs_own_config(run, tmp_path, capsys):
    ckpt, maps = run
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("best.pt", "config.yaml"):
        (copy / name).write_bytes((ckpt.parent / name).read_bytes())
    argv = ["calibrate", "--config", copy / "config.yaml", "train.calibration=platt"]
    assert main([str(a) for a in argv]) == 0, capsys.readouterr().err
    assert "calibration: platt" in (copy / "config.yaml").read_text()


# --------------------------------------------------------------------------------------------
# prep: one writer at a time

RENDEZVOUS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path

    import data_prep.prep as p
    from data_prep.cli import main

    me, other = Path(sys.argv[1]), Path(sys.argv[2])
    expand, grid_all = p.expand_inputs, p.grid_all

    def meet(*args, **kwargs):  # both processes open the archive at the same moment
        me.touch()
        deadline = time.monotonic() + 120
        while not other.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        return expand(*args, **kwargs)

    def slow(*args, **kwargs):  # and grid long enough to overlap
        time.sleep(0.5)
        return grid_all(*args, **kwargs)

    p.expand_inputs, p.grid_all = meet, slow
    sys.exit(main(sys.argv[3:]))
    """
)


def test_two_concurrent_preps_into_one_archive_keep_the_records_of_both(tmp_path):
    a = write_parquet(strikes_frame(300, seed=1, start="2021-06-01"), tmp_path / "a.parquet")
    b = write_parquet(strikes_frame(500, seed=2, start="2021-06-04"), tmp_path / "b.parquet")
    arch = tmp_path / "arch.nc"
    seq = ["data.n_in=5", "data.n_out=1", "data.block_steps=8"]

    def start(src: Path, me: str, other: str) -> subprocess.Popen:
        argv = [tmp_path / me, tmp_path / other, "prep", src, "--grid", PLAINS, "--out", arch]
        return subprocess.Popen(
            [sys.executable, "-c", RENDEZVOUS, *map(str, argv), *seq],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    procs = [start(a, "ready_a", "ready_b"), start(b, "ready_b", "ready_a")]
    results = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    alone = [
        prep([str(src)], tmp_path / f"{src.stem}.nc", PrepConfig(grid=PLAINS), SEQ).tally
        for src in (a, b)
    ]
    with xr.open_dataset(arch) as ds:
        both = Tally.from_attrs(ds.attrs)
        assert int(ds["strike_count"].sum()) == sum(t.gridded_strikes for t in alone) > 0
        names = {Path(e["path"]).name for e in json.loads(ds.attrs["inputs"])}
    assert both.gridded_records == sum(t.gridded_records for t in alone) == 800
    assert sum("being written by another prep (pid" in err for _, err in results) == 1, results
    assert names == {"a.parquet", "b.parquet"}


def test_a_prep_waits_for_the_lock_then_exits_2_naming_its_holder(tmp_path, capsys):
    src = write_parquet(strikes_frame(50), tmp_path / "s.parquet")
    out = tmp_path / "maps.nc"
    with output_lock(out, wait=0):
        with pytest.raises(
            UserError, match=rf"maps.nc is still being written by another prep \(pid {os.getpid()} "
        ):
            prep([str(src)], out, PrepConfig(grid=PLAINS, lock_wait=0.2), SEQ)
    assert f"being written by another prep (pid {os.getpid()}" in capsys.readouterr().err
    assert not out.exists()
    prep([str(src)], out, PrepConfig(grid=PLAINS, lock_wait=0.2), SEQ)  # released: it works
    assert out.is_file()


# --------------------------------------------------------------------------------------------
# train never replaces another run


def test_train_into_a_folder_holding_a_run_without_resume_is_refused(run, tmp_path):
    ckpt, maps = run
    out = tmp_path / "r"
    base = [*TINY, f"train.maps={maps}", f"train.out={out}"]
    train(load_experiment(None, [*base, "train.max_steps=1"]))
    before = _digest(out / "best.pt")
    with pytest.raises(UserError, match=r"train.out .*r holds a training run .*--resume"):
        train(load_experiment(None, [*base, "train.seed=7"]))
    assert _digest(out / "best.pt") == before
    train(load_experiment(None, [*base, "train.max_steps=2"]), resume=True)  # resume still works
    assert load_checkpoint(out / "last.pt")["state"]["step"] == 2


# --------------------------------------------------------------------------------------------
# quickstart: a changed config redoes what it touches

QUICK = [
    "synth.days=120",
    "synth.grid=30,38,-104,-92,0.5",
    "prep.grid=30,38,-104,-92,0.5",
    "synth.oracle_samples=2",
    "data.n_in=5",
    "data.n_out=2",
    "data.block_steps=20",
    "model.encoder_channels=[8]",
    "model.hidden_channels=[8]",
    "model.norm_groups=4",
    "train.batch_size=8",
    "train.progress=false",
    "train.threads=1",
]


class _AfterTraining(Exception):
    """Raised where predict would start: these tests need the stages up to training only."""


def _quickstart_to_training(out: Path, *overrides: str, stop_at_step: int = 0) -> list[bool]:
    """Run the quickstart up to its training stage; return the ``resume`` of each train call.
    ``stop_at_step``: a SIGTERM in that step interrupts training after it (as a batch scheduler
    would)."""
    import forecast.quickstart as qs
    from forecast.training.runlog import RunLog
    from forecast.training.signals import TrainingInterrupted

    resumed, train_loss, original = [], RunLog.train_loss, qs.train

    def spy(cfg, resume=False):
        resumed.append(resume)
        return original(cfg, resume=resume)

    def preempted(self, loss, state, *args, **kwargs):
        if state.step == stop_at_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return train_loss(self, loss, state, *args, **kwargs)

    def after_training(*args, **kwargs):
        raise _AfterTraining

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(qs, "_scored_inits", after_training)
        mp.setattr(qs, "train", spy)
        if stop_at_step:
            mp.setattr(RunLog, "train_loss", preempted)
        expected = TrainingInterrupted if stop_at_step else _AfterTraining
        with pytest.raises(expected):
            qs.quickstart(out, overrides=[*QUICK, *overrides])
    return resumed


def test_quickstart_with_fewer_epochs_retrains_and_a_plain_rerun_skips(tmp_path, capsys):
    out = tmp_path / "qs"
    assert _quickstart_to_training(out, "train.epochs=2") == [False]
    two = load_checkpoint(out / "run" / "last.pt")["state"]
    capsys.readouterr()
    # today: resumed from the 2-epoch last.pt, kept its weights and recorded epochs: 1
    assert _quickstart_to_training(out, "train.epochs=1") == [False]
    assert capsys.readouterr().out.count("(done before, skipped)") == 2  # synth and prep
    one = load_checkpoint(out / "run" / "last.pt")["state"]
    assert one["epoch"] == 1 and one["step"] == two["step"] // 2
    best = load_checkpoint(out / "run" / "best.pt")
    assert best["config"]["train"]["epochs"] == 1 and best["trained"]["step"] <= one["step"]
    stamp = (out / "run" / "best.pt").stat().st_mtime_ns
    assert _quickstart_to_training(out, "train.epochs=1") == []  # unchanged: all skipped
    assert capsys.readouterr().out.count("(done before, skipped)") == 3
    assert (out / "run" / "best.pt").stat().st_mtime_ns == stamp


def test_an_interrupted_quickstart_resumes_training_and_a_changed_one_restarts_it(tmp_path):
    out = tmp_path / "qs"
    assert _quickstart_to_training(out, "train.epochs=1", stop_at_step=2) == [False]
    assert load_checkpoint(out / "run" / "last.pt")["state"]["step"] == 2  # the step finishes
    # another config: the interrupted run is not resumed but removed
    assert _quickstart_to_training(out, "train.epochs=1", "train.lr=0.001", stop_at_step=1) == [
        False
    ]
    assert load_checkpoint(out / "run" / "last.pt")["state"]["step"] == 1
    assert _quickstart_to_training(out, "train.epochs=1", "train.lr=0.001") == [True]
    assert load_checkpoint(out / "run" / "last.pt")["config"]["train"]["lr"] == 0.001


def test_a_quickstart_session_cut_short_is_not_taken_for_a_finished_training(tmp_path):
    import forecast.quickstart as qs

    out = tmp_path / "qs"
    with pytest.raises(UserError, match=r"stopped after train.session_steps=2 steps; run the"):
        qs.quickstart(out, overrides=[*QUICK, "train.epochs=1", "train.session_steps=2"])
    assert load_checkpoint(out / "run" / "last.pt")["state"]["step"] == 2
    assert _quickstart_to_training(out, "train.epochs=1") == [True]  # goes on from step 2
    assert (out / "run" / "calibration.nc").is_file()


# --------------------------------------------------------------------------------------------
# temporary files of killed writers

KILLED_WRITER = textwrap.dedent(
    """
    import sys, time
    from data_prep.atomic import atomic_output

    with atomic_output(sys.argv[1]) as tmp:
        tmp.write_text("half a file")
        print("writing", flush=True)
        time.sleep(120)
    """
)


def test_temp_files_of_a_killed_writer_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "maps.nc"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED_WRITER, str(target)], stdout=subprocess.PIPE, text=True
    )
    assert child.stdout.readline().strip() == "writing"
    child.send_signal(signal.SIGKILL)
    child.wait()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(".maps.nc.") and left[0].endswith(".tmp")
    with atomic_output(target) as mine:  # a live writer's temp file is left alone
        atomic_write_text(target, "new")
        assert mine.exists()
        mine.write_text("newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["maps.nc"]
    assert target.read_text() == "newer"
