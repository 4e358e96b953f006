"""``generate_world``: config -> strikes.parquet, oracle.nc and world.json in a directory."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data_prep.climatology import climatology_at, fit_climatology, steps_per_day
from data_prep.config import SynthConfig, atomic_write_text, to_dict
from data_prep.errors import UserError
from data_prep.io import write_netcdf_atomic
from data_prep.schema import get_grid
from data_prep.synthetic import dynamics as dyn
from data_prep.synthetic import guidance as gdn
from data_prep.synthetic import oracle as orc
from data_prep.synthetic.records import strike_records, write_parquet_atomic
from data_prep.synthetic.simulate import run_world
from data_prep.synthetic.stats import brier_scores, count_stats, doy_climatology, grid_counts

WORLD_FILES = ("strikes.parquet", "oracle.nc", "guidance.nc", "world.json")  # generate_world writes
_DAY = pd.Timedelta("1D")


def generate_world(cfg: SynthConfig, out_dir: Path, progress: bool = True) -> dict[str, Path]:
    """Generate the synthetic world of ``cfg`` into ``out_dir``.

    Writes ``strikes.parquet`` (columns time (UTC ns), lat, lon, stroke_type "CG"/"IC",
    peak_current_kA), ``oracle.nc`` (probability(init_time, lead_time, lat, lon) for every init
    with ``n_in`` observed days up to it and ``n_out`` days after; skipped when
    ``oracle_samples`` is 0 or the period is too short) and ``world.json`` (config and summary
    statistics), ``guidance.nc`` (synthetic NWP fields cape and tp, analysis and daily forecasts of
    leads 1..``guidance_leads`` issued at the end of every day, :mod:`.guidance`; skipped when
    ``guidance_leads`` is 0). The same config gives byte-identical records.

    Returns
    -------
    dict
        ``{"strikes": path, "oracle": path, "world": path}`` (no "oracle" when it was skipped).
    """
    check_config(cfg)
    with _one_blas_thread():  # the rollouts run on threads; small matmuls lose with BLAS threads
        return _generate(cfg, Path(out_dir), progress)


def _generate(cfg: SynthConfig, out_dir: Path, progress: bool) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    clock = time.perf_counter()
    s, run, points_rng = hidden_state(cfg, progress)
    table = strike_records(points_rng, s, run)
    paths = {"strikes": write_parquet_atomic(table, out_dir / "strikes.parquet")}
    counts, days = grid_counts(table, s.grid, start=cfg.start, days=cfg.days, step=cfg.time_step)
    summary = count_stats(counts, days)
    cg = table.column("stroke_type").to_numpy(zero_copy_only=False) == "CG"
    summary.update(cg_share=float(cg.mean()) if len(cg) else 0.0)
    summary.update(storms_born=run.n_storms, systems_born=len(run.systems))
    inits = orc.oracle_inits(orc.n_maps(s), n_in=cfg.n_in, n_out=cfg.n_out)
    if cfg.oracle_samples > 0 and len(inits) > 0:
        prob = orc.oracle_probability(s, run, progress)
        paths["oracle"] = _write_netcdf(orc.oracle_dataset(prob, s), out_dir / "oracle.nc")
        occ = counts > 0
        summary["brier"] = brier_scores(prob, occ, inits, _climatology(occ, days, s))
    if cfg.guidance_leads > 0:
        paths["guidance"] = write_guidance(s, run, out_dir / "guidance.nc")
    summary["seconds"] = round(time.perf_counter() - clock, 2)
    world = json.dumps(_world_json(cfg, summary), indent=2)
    paths["world"] = atomic_write_text(out_dir / "world.json", world)
    paths["world"].chmod(0o644)  # the temporary file was private
    return paths


def _climatology(occ: np.ndarray, times: pd.DatetimeIndex, s: dyn.Setting) -> np.ndarray:
    """In-sample climatology of occurrence (T, H, W) at every step: by day of year for a daily
    world, by season and hour of day (:mod:`data_prep.climatology`) for a sub-daily one."""
    if not s.sub_daily:
        return doy_climatology(occ, times)
    n_hours = steps_per_day(s.cfg.time_step)
    table = fit_climatology(
        occ.astype(np.int32), times.values, np.ones(len(times), bool), n_hours=n_hours
    )
    return climatology_at(table, times.values)


def map_step(cfg: SynthConfig) -> pd.Timedelta:
    """``cfg.time_step`` as a Timedelta: a day, or whole hours dividing a day."""
    try:
        step = pd.Timedelta(cfg.time_step)
    except (ValueError, TypeError):
        step = None
    hours = step / pd.Timedelta("1h") if step is not None else 0.5
    if step is None or not (
        step == _DAY or (hours == int(hours) and 24 % int(hours) == 0 and hours >= 1)
    ):
        raise UserError(
            f"synth config: synth.time_step {cfg.time_step!r} must be 1D or whole hours that "
            "divide a day (1h, 3h, 6h, ...); fix it in the YAML or with synth.time_step=1h"
        )
    return step


def hidden_state(cfg: SynthConfig, progress: bool = False):
    """The world's setting, main run and the random stream of its strike points."""
    s = dyn.Setting.build(cfg, get_grid(cfg.grid))
    world_seq, points_seq = np.random.SeedSequence([cfg.seed, 0]).spawn(2)
    run = run_world(s, np.random.default_rng(world_seq), progress)
    return s, run, np.random.default_rng(points_seq)


def write_guidance(s: dyn.Setting, run, path: Path) -> Path:
    """Synthetic NWP guidance of the run (see :mod:`.guidance`), written atomically."""
    ds = gdn.guidance_dataset(gdn.forecast_fields(s, gdn.truth_fields(s, run)), s)
    chunks = (1, 1, *s.grid.shape)
    encoding = {f: {"zlib": True, "complevel": 1, "chunksizes": chunks} for f in gdn.FIELDS}
    return write_netcdf_atomic(ds, path, encoding=encoding)


def _one_blas_thread():
    """Limit BLAS to one thread where threadpoolctl is installed (measured: 2.4x less CPU)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def check_config(cfg: SynthConfig) -> None:
    """Raise :class:`UserError` naming the first invalid ``synth.*`` value."""
    problems = [
        (cfg.days >= 1, "synth.days", "must be at least 1"),
        (
            cfg.step_hours >= 1 and 24 % cfg.step_hours == 0,
            "synth.step_hours",
            "must divide 24 (1, 2, 3, 4, 6, 8, 12, 24)",
        ),
        (0 < cfg.detection_efficiency <= 1, "synth.detection_efficiency", "must be in (0, 1]"),
        (0 <= cfg.cg_fraction <= 1, "synth.cg_fraction", "must be in [0, 1]"),
        (cfg.location_error_km >= 0, "synth.location_error_km", "must be >= 0"),
        (
            cfg.storm_rate >= 0 and cfg.strike_scale >= 0 and cfg.system_rate >= 0,
            "synth rates",
            "must be >= 0",
        ),
        (
            0 < cfg.storm_life_days[0] <= cfg.storm_life_days[1],
            "synth.storm_life_days",
            "must be 0 < min <= max",
        ),
        (
            0 < cfg.system_speed[0] <= cfg.system_speed[1],
            "synth.system_speed",
            "must be 0 < min <= max",
        ),
        (
            cfg.activity_days > 0 and cfg.activity_sd >= 0,
            "synth.activity_days/activity_sd",
            "must be > 0 / >= 0",
        ),
        (
            cfg.oracle_samples >= 0 and cfg.n_in >= 1 and cfg.n_out >= 1,
            "synth.oracle_samples/n_in/n_out",
            "must be >= 0/1/1",
        ),
    ]
    problems += _step_problems(cfg)
    for ok, key, what in problems:
        if not ok:
            raise UserError(
                f"synth config: {key} {what}; fix it in the YAML or with {key.split('/')[0]}=..."
            )
    try:
        start = pd.Timestamp(cfg.start)
    except (ValueError, TypeError):
        start = None
    if (
        start is None
        or not (1900 <= start.year <= 2200)
        or start != start.normalize()
        or start.tz is not None
    ):
        raise UserError(
            f"synth config: synth.start {cfg.start!r} is not a day; use YYYY-MM-DD (UTC)"
        )


def _step_problems(cfg: SynthConfig) -> list[tuple[bool, str, str]]:
    """(ok, key, what) checks of the map step against the internal step and the guidance."""
    step_hours = map_step(cfg) / pd.Timedelta("1h")
    return [
        (
            cfg.step_hours >= 1 and step_hours % cfg.step_hours == 0,
            "synth.step_hours",
            f"must divide the map step synth.time_step {cfg.time_step} (1 for 1h)",
        ),
        (
            step_hours == 24 or cfg.guidance_leads == 0,
            "synth.guidance_leads",
            "must be 0 in a sub-daily world (the guidance is daily)",
        ),
    ]


def _write_netcdf(ds, path: Path) -> Path:
    """Atomic, compressed netCDF write; one (lat, lon) map per chunk."""
    shape = ds["probability"].shape
    encoding = {"probability": {"zlib": True, "complevel": 1, "chunksizes": (1, 1, *shape[2:])}}
    return write_netcdf_atomic(ds, path, encoding=encoding)


def _world_json(cfg: SynthConfig, summary: dict) -> dict:
    last = pd.Timestamp(cfg.start) + pd.Timedelta(days=cfg.days - 1)
    return {
        "description": "strikecast synthetic lightning world; see data_prep/synthetic/__init__.py",
        "config": to_dict(cfg),
        # grid the records over exactly these days (prep start/end): quiet first or last days
        # have no records, and the oracle's init_time labels count from the start
        "period": {"start": str(pd.Timestamp(cfg.start).date()), "end": str(last.date())},
        "files": {
            "strikes.parquet": "one row per detected stroke (time, lat, lon, type, peak current)",
            "oracle.nc": "probability(init_time, lead_time, lat, lon) of >= 1 detected strike "
            "given the hidden state",
            "guidance.nc": "synthetic NWP guidance cape(J/kg) and tp(mm) on (init_time, lead_time, "
            "lat, lon): analysis (lead 0) and daily forecasts with errors growing with lead",
        },
        "summary": summary,
    }
