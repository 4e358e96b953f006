"""The README's shell examples are true: those that read the shipped samples (the NCEI NLDN month
file, GLM granules) run as written, and every other `strikecast` example is accepted by the
command line (options, subcommand and `section.key=value` overrides) without running it."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import pytest
import xarray as xr

from data_prep.cli import _OVERRIDE
from forecast.cli import build_parser, main
from forecast.config import load_experiment

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
TABLE_ROW = re.compile(r"^\| `\w+` \| .* \| `(strikecast [^`]*)` \|$", re.M)


def readme_commands() -> list[str]:
    """Every `strikecast ...` command of the README: the command table's examples and the lines
    of its bash blocks (continuations joined, comments dropped, `a && b` split)."""
    text = README.read_text()
    commands = TABLE_ROW.findall(text)
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith("#"):
                continue
            commands += [p.strip() for p in line.split("&&") if p.strip().startswith("strikecast ")]
    return commands


def _sample_folder(realdata: Path, work: Path) -> None:
    """The shipped samples under the names the README uses: the month file in the working
    folder, every GLM granule (all satellites and years) in ``glm/``."""
    nldn = realdata / "nldn_tiles" / "nldn-tiles-202402.csv.gz"
    (work / nldn.name).symlink_to(nldn)
    (work / "glm").mkdir()
    for granule in sorted((realdata / "glm_lcfa_20s").glob("*.nc")):
        (work / "glm" / granule.name).symlink_to(granule)


def _runs_on_samples(argv: list[str], work: Path) -> bool:
    """A `prep` whose every input pattern names a shipped sample."""
    if argv[0] != "prep":
        return False
    args, _ = build_parser().parse_known_args(argv)
    inputs = [a for a in args.inputs if not _OVERRIDE.match(a)]
    return all(glob.glob(str(work / pattern)) for pattern in inputs)


def test_readme_has_the_examples_this_file_checks():
    commands = readme_commands()
    for sub in ("synth", "prep", "train", "calibrate", "predict", "evaluate", "plot", "quickstart"):
        assert any(c.split()[1] == sub for c in commands), sub
    assert any("nldn-tiles-202402.csv.gz" in c for c in commands)
    assert any("glm/OR_GLM-L2-LCFA" in c for c in commands)


def test_readme_prep_examples_on_the_shipped_samples_run_as_written(
    realdata, tmp_path, monkeypatch
):
    ran = []
    for i, command in enumerate(readme_commands()):
        argv = shlex.split(command)[1:]
        work = tmp_path / f"example{i}"
        work.mkdir()
        _sample_folder(realdata, work)
        if not _runs_on_samples(argv, work):
            continue
        monkeypatch.chdir(work)
        assert main([*argv, "--quiet"]) == 0, command
        out = work / argv[argv.index("--out") + 1]
        with xr.open_dataset(out) as maps:
            observed = maps["coverage"].values == 1
            assert observed.any(), command
            assert maps["strike_count"].values[observed].sum() > 0, command
        ran.append(command)
    assert any("nldn-tiles-202402.csv.gz" in c for c in ran), ran
    assert any("glm/" in c for c in ran), ran


@pytest.mark.parametrize("command", readme_commands())
def test_every_readme_example_is_accepted_by_the_command_line(command):
    """Subcommand and options parse; overrides name real keys with valid values."""
    args, extra = build_parser().parse_known_args(shlex.split(command)[1:])
    assert all(_OVERRIDE.match(a) for a in extra), extra
    overrides = extra + [a for a in getattr(args, "overrides", []) if _OVERRIDE.match(a)]
    overrides += [a for a in getattr(args, "inputs", []) if _OVERRIDE.match(a)]
    config = getattr(args, "config", None)
    load_experiment(str(REPO / config) if config and (REPO / config).is_file() else None, overrides)
