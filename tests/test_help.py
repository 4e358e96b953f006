"""Help that teaches: the version, suggestions for misspelt words, format names, defaults, and
the resolved config with every key."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

import data_prep
from data_prep.config import SynthConfig, to_dict
from data_prep.readers import ALIASES, READERS
from forecast.cli import main
from forecast.config import ExperimentConfig, load_experiment


def _exit(argv, capsys) -> tuple[int, str, str]:
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_version_prints_the_package_version(capsys):
    code, out, _ = _exit(["--version"], capsys)
    assert code == 0 and out.strip() == f"strikecast {data_prep.__version__}"


@pytest.mark.parametrize(
    "argv, suggestion",
    [
        (["prep", "in.csv", "--gird", "conus-0.25", "--out", "m.nc"], "'--grid'"),
        (["predict", "--checkpiont", "b.pt", "--maps", "m.nc", "--out", "f.nc"], "'--checkpoint'"),
        (["trian"], "'train'"),
        (["config", "shwo"], "'show'"),
        (["config", "show", "train.lrr=0.1"], "'lr'"),
    ],
    ids=["option", "option-of-another-command", "command", "action", "config-key"],
)
def test_a_misspelt_word_gets_one_line_naming_the_close_one(argv, suggestion, capsys):
    code, _, err = _exit(argv, capsys)
    assert code == 2 and err.count("\n") == 1
    assert f"did you mean {suggestion}?" in err


def test_prep_help_lists_every_format_name_and_alias(capsys):
    _, out, _ = _exit(["prep", "--help"], capsys)
    text = " ".join(out.split())
    assert all(name in text for name in READERS)
    assert all(f"{alias}={name}" in text for alias, name in ALIASES.items())


def test_synth_help_shows_the_defaults(capsys):
    _, out, _ = _exit(["synth", "--help"], capsys)
    text = " ".join(out.split())
    for key in ("grid", "start", "days", "seed"):
        assert f"(default {getattr(SynthConfig, key)})" in text


def test_config_show_reads_back_as_the_resolved_config_with_defaults_noted(capsys):
    argv = ["config", "show", "--config", "configs/quickstart.yaml", "train.lr=0.0005"]
    code, out, _ = _exit(argv, capsys)
    assert code == 0
    # the printed YAML is the resolved config, every key of every section
    resolved = load_experiment("configs/quickstart.yaml", ["train.lr=0.0005"])
    assert yaml.safe_load(out) == to_dict(resolved)
    line = next(ln for ln in out.splitlines() if ln.strip().startswith("lr:"))
    assert f"default: {ExperimentConfig().train.lr}" in line
    # a key at its default carries no default note
    seed = next(ln for ln in out.splitlines() if ln.strip().startswith("seed:"))
    assert "default:" not in seed
    n_keys = sum(len(dataclasses.fields(f.type if not isinstance(f.type, str) else
                                         type(getattr(resolved, f.name))))
                 for f in dataclasses.fields(resolved))  # fmt: skip
    assert sum(1 for ln in out.splitlines() if ln.startswith("  ")) == n_keys
