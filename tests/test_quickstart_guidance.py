"""The quickstart with the synthetic world's guidance: asked for in the config, fed to the model
and to mos, and part of the inputs of the stages that read it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import xarray as xr
import yaml
from prep_files import QUICKSTART_TINY

from forecast.cli import main
from forecast.config import load_experiment
from forecast.quickstart import TRAINED, _Stages
from forecast.training.checkpoint import load_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
GUIDED = ["--config", str(CONFIGS / "quickstart_guidance.yaml")]
# the sections each stage's stamp reads (forecast/quickstart.py)
STAGE_SECTIONS = {
    "synth": ("synth",),
    "prep": ("synth", "prep", "data"),
    "train": TRAINED,
    "predict": TRAINED,
    "evaluate": (*TRAINED, "eval"),
    "plot": (*TRAINED, "eval"),
}


def _stamps(tmp_path, guidance: str) -> dict[str, str]:
    cfg = load_experiment(str(CONFIGS / "quickstart.yaml"))
    cfg.data = dataclasses.replace(cfg.data, guidance=guidance)
    st = _Stages(tmp_path, cfg, len(STAGE_SECTIONS))
    return {name: st.key(name, *sections) for name, sections in STAGE_SECTIONS.items()}


def test_a_changed_guidance_redoes_the_stages_that_read_it_and_keeps_world_and_maps(tmp_path):
    plain, guided = _stamps(tmp_path, ""), _stamps(tmp_path, "/w/guidance.nc")
    other = _stamps(tmp_path, "/w/other.nc")
    redone = [name for name in STAGE_SECTIONS if plain[name] != guided[name]]
    assert redone == ["train", "predict", "evaluate", "plot"]
    assert [name for name in STAGE_SECTIONS if other[name] != guided[name]] == redone


def test_synthetic_guidance_with_too_few_leads_is_refused_in_one_line(tmp_path, capsys):
    argv = ["quickstart", "--out", str(tmp_path / "qs"), *GUIDED, "synth.guidance_leads=2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "synth.guidance_leads" in err, err


def test_synthetic_guidance_outside_the_quickstart_is_refused_naming_the_fix(tmp_path, capsys):
    argv = ["train", *GUIDED, f"train.maps={tmp_path / 'maps.nc'}", f"train.out={tmp_path / 'r'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--guidance" in err, err


@pytest.mark.slow
def test_quickstart_with_guidance_scores_mos_and_trains_the_model_on_the_guidance(tmp_path, capsys):
    out = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out), *GUIDED, *QUICKSTART_TINY]) == 0
    printed = capsys.readouterr().out
    (stage,) = [ln for ln in printed.splitlines() if ln.startswith("[5/6] evaluate")]
    assert "mos" in stage
    world = out / "world" / "guidance.nc"
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["data"]["guidance"] == str(world)

    with xr.open_dataset(out / "scores.nc") as scores:
        methods = set(scores["forecast"].values)
    assert {"model", "mos", "oracle", "climatology"} <= methods
    state = load_checkpoint(out / "run" / "best.pt")
    assert state["guidance"]["fields"] == ["cape", "tp"]
    assert state["guidance"]["path"] == str(world)
    with xr.open_dataset(out / "forecast.nc") as fc:
        assert fc.attrs["guidance"] == str(world)
