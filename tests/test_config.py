"""Typed configs: defaults, YAML, overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from data_prep.config import (
    SUB_DAILY_DEFAULTS,
    PrepConfig,
    SynthConfig,
    apply_overrides,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from data_prep.errors import ConfigError
from forecast.config import ExperimentConfig, load_experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_defaults_roundtrip_through_yaml(tmp_path):
    cfg = ExperimentConfig()
    path = save_config(cfg, tmp_path / "config.yaml")
    assert load_experiment(str(path)) == cfg


SHIPPED = ["quickstart.yaml", "conus_daily.yaml"]
SHIPPED += ["quickstart_guidance.yaml", "conus_daily_guidance.yaml"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    cfg = load_experiment(str(CONFIGS / name))
    assert 5 <= cfg.data.n_in <= 10


@pytest.mark.parametrize("name", ["quickstart", "conus_daily"])
def test_guidance_configs_differ_from_their_base_only_in_the_guidance(name):
    """The model with guidance compares with the same model, world and training without it."""
    base = load_experiment(str(CONFIGS / f"{name}.yaml"))
    guided = load_experiment(str(CONFIGS / f"{name}_guidance.yaml"))
    assert guided.data.guidance == "synthetic" and not base.data.guidance
    guided.data = dataclasses.replace(guided.data, guidance="")
    guided.train = dataclasses.replace(guided.train, out=base.train.out)
    assert guided == base


def test_override_comes_after_yaml(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train:\n  epochs: 4\n")
    cfg = load_experiment(str(p), ["train.epochs=9", "model.hidden_channels=[8,8]"])
    assert cfg.train.epochs == 9
    assert cfg.model.hidden_channels == (8, 8)


def test_int_is_accepted_for_float_key():
    assert load_experiment(None, ["train.lr=1"]).train.lr == 1.0


def test_misspelt_key_is_rejected_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.epocs"):
        load_experiment(None, ["train.epocs=3"])


def test_unknown_section_is_rejected_naming_it(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("trian:\n  epochs: 4\n")
    with pytest.raises(ConfigError, match="trian"):
        load_experiment(str(p))


def test_wrong_type_is_rejected_naming_the_key():
    with pytest.raises(ConfigError, match=r"train\.epochs.*'many'"):
        load_experiment(None, ["train.epochs=many"])


def test_wrong_type_message_names_the_expected_type():
    with pytest.raises(ConfigError, match=r"'train\.epochs': expected int, got 'many'$"):
        load_experiment(None, ["train.epochs=many"])
    with pytest.raises(ConfigError, match=r"'prep\.start': expected str \| None, got 3$"):
        from_dict(PrepConfig, {"start": 3}, "prep.")


def test_bool_is_not_an_int():
    with pytest.raises(ConfigError, match=r"train\.batch_size"):
        load_experiment(None, ["train.batch_size=true"])


def test_tuple_length_is_checked():
    with pytest.raises(ConfigError, match=r"data\.fractions"):
        load_experiment(None, ["data.fractions=[0.5,0.5]"])


def test_override_without_equals_is_rejected():
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides({}, ["train.epochs"])


def test_missing_config_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(ExperimentConfig, tmp_path / "nope.yaml")


def test_invalid_yaml_names_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml.*not valid YAML"):
        load_experiment(str(p))


def test_to_dict_is_plain_yaml():
    d = to_dict(ExperimentConfig())
    assert yaml.safe_load(yaml.safe_dump(d)) == d
    assert from_dict(ExperimentConfig, d) == ExperimentConfig()


def test_unquoted_date_is_read_as_text():
    cfg = load_experiment(None, ["synth.start=2019-03-01", "prep.end=2020-01-31T06:00:00"])
    assert cfg.synth.start == "2019-03-01"
    assert cfg.prep.end.startswith("2020-01-31T06:00")


def test_float_in_exponent_notation_is_a_float():
    assert load_experiment(None, ["train.lr=1e-3"]).train.lr == 1e-3


def test_sub_daily_synth_step_in_yaml_gives_the_hourly_world_defaults(tmp_path):
    # `quickstart --config` with `synth.time_step: 1h` must make the same world as
    # `strikecast synth --time-step 1h`: the hourly defaults, under what the YAML itself sets
    p = tmp_path / "hourly.yaml"
    p.write_text("synth:\n  time_step: 1h\n  storm_rate: 2.5\n")
    cfg = load_experiment(str(p))
    assert cfg.synth.step_hours == SUB_DAILY_DEFAULTS["step_hours"] == 1
    assert cfg.synth.n_out == SUB_DAILY_DEFAULTS["n_out"]
    assert cfg.synth.storm_rate == 2.5
    daily = load_experiment(str(p), ["synth.time_step=1D"])
    assert daily.synth.step_hours == SynthConfig().step_hours
    assert load_experiment(str(CONFIGS / "conus_hourly.yaml")).synth.step_hours == 1


@pytest.mark.parametrize(
    "step, hourly",
    [
        ("1h", True),
        ("30min", True),
        ("6H", True),
        ("3600s", True),
        ("2 hours", True),
        ("1D", False),
        ("1 day", False),
        ("24h", False),
        ("1W", False),
        ("nonsense", False),
    ],
)
def test_sub_daily_defaults_follow_the_step_length_in_every_spelling(step, hourly):
    from data_prep.config import with_sub_daily_defaults

    out = with_sub_daily_defaults({"time_step": step})
    assert (out.get("step_hours") == SUB_DAILY_DEFAULTS["step_hours"]) is hourly
    assert out["time_step"] == step
