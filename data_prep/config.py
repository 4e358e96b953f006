"""Typed configs: dataclasses hold every default, YAML states what differs, overrides come last.

``load_config(ExperimentConfig, "configs/quickstart.yaml", ["train.epochs=3"])`` builds the
dataclass from its defaults, applies the YAML, then the ``section.key=value`` overrides. Unknown
keys and values of the wrong type raise :class:`ConfigError` naming the key.

This module also holds the data_prep sections (synthetic world, gridding, sequences), so that
``python -m data_prep`` needs nothing from ``forecast``.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from data_prep.atomic import atomic_write_text
from data_prep.clock import step_seconds
from data_prep.errors import ConfigError, close_match, quote

# --------------------------------------------------------------------------------------------
# data_prep sections


# Sections of an experiment config (forecast.config.ExperimentConfig): data_prep reads synth, prep
# and data, and knows the other names so that one YAML serves every command and a misspelt
# section is refused, never ignored.
SECTIONS = ("synth", "prep", "data", "model", "train", "eval")


@dataclass
class SynthConfig:
    """The synthetic lightning world (see :mod:`data_prep.synthetic`)."""

    grid: str = "conus-0.25"
    start: str = "2021-01-01"
    days: int = 365
    seed: int = 1
    storm_rate: float = 1.0  # multiplies the birth rate of storm clusters
    detection_efficiency: float = 0.9  # share of strikes the network detects
    location_error_km: float = 1.0  # 1-sigma location error of detected strikes
    oracle_samples: int = 16  # Monte Carlo rollouts per forecast time (0 = no oracle)
    n_in: int = 7  # the oracle is written for inits with at least this many past steps
    n_out: int = 3  # oracle lead times 1..n_out
    step_hours: int = 6  # internal time step (divides 24); strike times are uniform within it
    # map step of the oracle and the world's statistics: "1D", or whole hours dividing 24 ("1h":
    # the hourly world, with the land-sea diurnal cycle; `strikecast synth --time-step 1h` also
    # sets the hourly defaults of SUB_DAILY_DEFAULTS below, and so does a YAML or override)
    time_step: str = "1D"
    cg_fraction: float = 0.3  # share of cloud-to-ground strokes; the rest are intra-cloud
    strike_scale: float = 1.0  # multiplies the strikes each storm cluster produces
    system_rate: float = (
        0.6  # travelling weather systems entering from the west per day (cool season)
    )
    system_speed: tuple[float, float] = (
        5.0,
        12.0,
    )  # their eastward speed range, degrees lon per day
    storm_life_days: tuple[float, float] = (1.0, 3.0)  # lifetime range of storm clusters, days
    activity_sd: float = (
        0.8  # spread of the domain-wide activity (log scale): quiet and active days
    )
    activity_days: float = 6.0  # memory (e-folding time) of that activity, days
    regime_sd: float = 0.7  # spread of west-east / south-north tilts of activity (log scale)
    regime_days: float = 10.0  # memory of those regional regimes, days
    # synthetic NWP guidance (guidance.nc, data_prep.synthetic.guidance): errors grow with lead k;
    # missed and false shares are capped at 0.6 of the domain
    guidance_leads: int = 5  # daily forecast leads 1..guidance_leads beside the analysis (0 = none)
    guidance_displacement_deg: float = 0.5  # 1-sigma displacement of systems per day of lead, deg
    guidance_amplitude_sd: float = 0.4  # log-amplitude error at lead 1, grows as sqrt(k)
    guidance_miss: float = 0.1  # share of the domain where systems are missed, per day of lead
    guidance_false: float = 0.05  # share of the domain given false systems, per day of lead
    guidance_scale_deg: float = 3.0  # size of the error patterns (systems), degrees


# An hourly world (`strikecast synth --time-step 1h`) unless the YAML or an override says
# otherwise: internal steps of an hour; storms living 2.4-8.4 hours (about a ninth of the daily
# world's 1-3 days) and born six times as often, so about two thirds of its storm-hours; oracle
# leads of 1-6 hours from 8 observed hours; no guidance (it is daily).
SUB_DAILY_DEFAULTS = {
    "step_hours": 1,
    "storm_life_days": [0.1, 0.35],
    "storm_rate": 6.0,
    "n_in": 8,
    "n_out": 6,
    "oracle_samples": 8,
    "guidance_leads": 0,
}


def with_sub_daily_defaults(section: dict) -> dict:
    """The ``synth`` section with :data:`SUB_DAILY_DEFAULTS` under it when its ``time_step`` is
    shorter than a day (keys the section sets win), so that a YAML saying ``time_step: 1h``
    makes the hourly world in ``quickstart`` as in ``strikecast synth --time-step 1h``."""
    seconds = step_seconds(str(section.get("time_step", "1D")))
    sub_daily = seconds is not None and seconds < 86400
    return {**SUB_DAILY_DEFAULTS, **section} if sub_daily else section


@dataclass
class PrepConfig:
    """Strike records -> gridded maps (see :mod:`data_prep.grid`)."""

    grid: str = "conus-0.25"
    time_step: str = "1D"
    start: str | None = None  # first step kept (inclusive); None = first record's step
    end: str | None = None  # last step kept (inclusive); None = last record's step
    format: str = "auto"
    workers: int = 1
    chunk_records: int = 5_000_000
    variable: str | None = None  # gridded netCDF input: the count variable (None = detect)
    min_granule_fraction: float = (
        0.95  # GLM: a step is observed when granules cover this share of it
    )
    # GLM: cells farther than this (degrees of great-circle arc) from the sub-satellite point are
    # outside the field of view, no data; None: the extent each granule states (data_prep.fov)
    glm_fov_radius_deg: float | None = None
    lock_wait: float = 3600.0  # seconds to wait while another prep writes the same --out
    # point feeds as they come (data_prep.feeds)
    time_unit: str = "s"  # epoch-number times: s, ms, us or ns since 1970-01-01 UTC
    timezone: str | None = None  # zone of naive times: IANA name or +09:00; None = UTC
    file_days: str | None = None  # points file names giving the day each covers: '*_%Y%m%d.csv'
    empty_file: str = "no-data"  # a points file without records observes: no-data, or zero


@dataclass
class SequenceConfig:
    """Maps -> input/target windows and time-blocked splits (see :mod:`data_prep.sequences`)."""

    n_in: int = 7  # input steps, 5-10
    n_out: int = 3  # lead times 1..n_out
    min_coverage: float = 0.95  # a step is usable when this share of its cells is observed
    split: str = "blocks"  # "blocks" (repeating train/val/test blocks) or "contiguous"
    block_steps: int = 56  # length of one block in steps when split = "blocks"
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)  # train, validation, test
    guidance: str = ""  # NWP fields on the maps' grid for the model and mos (--guidance); "" = none


# --------------------------------------------------------------------------------------------
# allowed ranges of numbers, checked by from_dict naming the key


@dataclass(frozen=True)
class Range:
    """The finite numbers from ``low`` to ``high`` (None: unbounded), each bound included unless
    ``open_low`` / ``open_high``. NaN and infinities are never in range."""

    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False

    def holds(self, value: float) -> bool:
        v = float(value)
        above = self.low is None or (v > self.low if self.open_low else v >= self.low)
        below = self.high is None or (v < self.high if self.open_high else v <= self.high)
        return math.isfinite(v) and above and below

    def __str__(self) -> str:
        if self.high is None:
            return f"{'>' if self.open_low else '>='} {self.low:g}"
        left, right = "(" if self.open_low else "[", ")" if self.open_high else "]"
        return f"in {left}{self.low:g}, {self.high:g}{right}"


POSITIVE = Range(0, open_low=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
FRACTION = Range(0, 1)

# Config class -> {field: Range}; a list or tuple field has each item checked. forecast.config
# adds its sections.
LIMITS: dict[type, dict[str, Range]] = {
    SynthConfig: {
        "days": AT_LEAST_1,
        "storm_rate": NON_NEGATIVE,
        "detection_efficiency": Range(0, 1, open_low=True),
        "location_error_km": NON_NEGATIVE,
        "oracle_samples": NON_NEGATIVE,
        "n_in": AT_LEAST_1,
        "n_out": AT_LEAST_1,
        "step_hours": Range(1, 24),
        "cg_fraction": FRACTION,
        "strike_scale": NON_NEGATIVE,
        "system_rate": NON_NEGATIVE,
        "system_speed": NON_NEGATIVE,
        "storm_life_days": POSITIVE,
        "activity_sd": NON_NEGATIVE,
        "activity_days": POSITIVE,
        "regime_sd": NON_NEGATIVE,
        "regime_days": POSITIVE,
        "guidance_leads": NON_NEGATIVE,
        "guidance_displacement_deg": NON_NEGATIVE,
        "guidance_amplitude_sd": NON_NEGATIVE,
        "guidance_miss": FRACTION,
        "guidance_false": FRACTION,
        "guidance_scale_deg": POSITIVE,
    },
    PrepConfig: {
        "chunk_records": AT_LEAST_1,
        "min_granule_fraction": FRACTION,
        "glm_fov_radius_deg": Range(0, 180, open_low=True),
    },
    # window lengths and splits: data_prep.sequences.check_config
    SequenceConfig: {"min_coverage": FRACTION, "fractions": FRACTION},
}


def check_limits(cfg: Any, where: str = "") -> None:
    """Raise :class:`ConfigError` naming the key of the first value of ``cfg`` out of its range
    (:data:`LIMITS`); ``where`` is the section prefix, e.g. ``"train."``."""
    for name, allowed in LIMITS.get(type(cfg), {}).items():
        value = getattr(cfg, name)
        items = value if isinstance(value, tuple | list) else (value,)
        if not all(v is None or allowed.holds(v) for v in items):
            raise ConfigError(
                f"config key {where + name!r}: {quote(value)} is out of range; "
                f"{'each value ' if items is value else ''}must be {allowed}"
            )


# --------------------------------------------------------------------------------------------
# machinery


def to_dict(cfg: Any) -> dict:
    """A plain dict (tuples become lists) that ``from_dict`` turns back into ``cfg``."""

    def plain(v):
        if dataclasses.is_dataclass(v):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def from_dict(cls: type, data: dict | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from its defaults updated by ``data``; reject unknown keys."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(
            f"config section {where or '<top>'!r} must be a mapping, got {type(data).__name__}"
        )
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in names:
            raise ConfigError(
                f"unknown config key {quote(where + str(key))}"
                f"{close_match(str(key), names)}; valid keys here: {', '.join(sorted(names))}"
            )
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            kwargs[f.name] = _coerce(hints[f.name], data[f.name], where + f.name)
    cfg = cls(**kwargs)
    check_limits(cfg, where)
    return cfg


def _coerce(tp: Any, value: Any, key: str) -> Any:
    """Check ``value`` against type hint ``tp``; convert where it is lossless (int -> float)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key + ".")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r}: expected {_name(tp)}, got {quote(value)}")
    if origin in (tuple, list):
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"config key {key!r}: expected a list, got {quote(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis and len(args) != len(value):
            raise ConfigError(f"config key {key!r}: expected {len(args)} values, got {len(value)}")
        item_types = (
            [args[0]] * len(value) if (origin is list or args[-1] is Ellipsis) else list(args)
        )
        items = [
            _coerce(t, v, f"{key}[{i}]")
            for i, (t, v) in enumerate(zip(item_types, value, strict=True))
        ]
        return origin(items)
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads 1e-3 (no dot) as text
        except ValueError:
            pass
    if tp is str and isinstance(value, datetime.date):
        return value.isoformat()  # YAML reads an unquoted 2021-01-01 as a date
    if tp is Any or (
        isinstance(tp, type)
        and isinstance(value, tp)
        and not (tp is int and isinstance(value, bool))
    ):
        return value
    raise ConfigError(f"config key {key!r}: expected {_name(tp)}, got {quote(value)}")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a nested dict, in order."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {quote(item)} is not of the form section.key=value")
        dotted, raw = item.split("=", 1)
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = dotted.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {quote(item)}: {quote(p)} is not a config section")
        node[parts[-1]] = value
    return data


def load_config(
    cls: type, path: str | os.PathLike | None = None, overrides: list[str] | None = None
) -> Any:
    """Defaults of ``cls``, updated by the YAML at ``path``, then by ``overrides``."""
    data: dict = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(
                f"config file {p} not found: pass a YAML file such as configs/quickstart.yaml"
            )
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark else ""
            raise ConfigError(
                f"config file {p}: not valid YAML{where}; check indentation and colons"
            ) from None
        if not isinstance(data, dict):
            raise ConfigError(f"config file {p}: the top level must be a mapping of sections")
    apply_overrides(data, list(overrides or []))
    if isinstance(data.get("synth"), dict):
        data["synth"] = with_sub_daily_defaults(data["synth"])
    return from_dict(cls, data)


def save_config(cfg: Any, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically."""
    text = yaml.safe_dump(to_dict(cfg), sort_keys=False)
    return atomic_write_text(Path(path), text)


def replace(cfg: Any, **changes) -> Any:
    """``dataclasses.replace`` re-exported for callers that build configs in code."""
    return dataclasses.replace(cfg, **changes)


__all__ = [
    "PrepConfig",
    "SequenceConfig",
    "SynthConfig",
    "apply_overrides",
    "LIMITS",
    "Range",
    "atomic_write_text",
    "check_limits",
    "field",
    "from_dict",
    "load_config",
    "replace",
    "save_config",
    "to_dict",
]
