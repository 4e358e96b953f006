"""Entry point of ``python -m data_prep`` and of the ``synth``, ``prep`` and ``guidance``
subcommands of ``strikecast``.

Only this module parses the command line; the library functions take config objects.
"""

from __future__ import annotations

import argparse
import re
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import yaml

from data_prep import __version__
from data_prep.archive import check_archive_path
from data_prep.atomic import check_output_path, check_outputs
from data_prep.cli_guidance import add_guidance
from data_prep.config import (
    SECTIONS,
    SUB_DAILY_DEFAULTS,
    PrepConfig,
    SequenceConfig,
    SynthConfig,
    apply_overrides,
    from_dict,
    load_config,
)
from data_prep.errors import Interrupted, UserError, close_match, quote
from data_prep.prep import prep
from data_prep.progress import quiet
from data_prep.readers import ALIASES, READERS
from data_prep.synthetic import generate_world
from data_prep.synthetic.world import WORLD_FILES, map_step

_OVERRIDE = re.compile(r"^[A-Za-z_]\w*\.[A-Za-z_][\w.]*=")


class _Parser(argparse.ArgumentParser):
    """argparse that reports usage errors in one line with exit code 2, suggesting the close
    word for a misspelt command or option."""

    def parse_known_args(self, args=None, namespace=None):  # noqa: D102
        self._seen = list(args or [])  # for the suggestions of error()
        return super().parse_known_args(args, namespace)

    def error(self, message):  # noqa: D102
        hint = _choice_hint(message) or self.misspelt(getattr(self, "_seen", []))
        self.exit(2, f"{self.prog}: error: {message}{hint} (see --help)\n")

    def misspelt(self, tokens: list[str]) -> str:
        """``; did you mean '--grid'?`` for each option among ``tokens`` this parser lacks."""
        known = self._option_string_actions
        flags = [t.split("=", 1)[0] for t in tokens if t.startswith("--")]
        unknown = [f for f in flags if f not in known and not any(k.startswith(f) for k in known)]
        return "".join(close_match(f, known) for f in unknown)


_INVALID_CHOICE = re.compile(r"invalid choice: '([^']*)' \(choose from (.*)\)")


def _choice_hint(message: str) -> str:
    """``; did you mean 'train'?`` for argparse's invalid-choice message of a misspelt word."""
    m = _INVALID_CHOICE.search(message)
    if not m:
        return ""
    return close_match(m.group(1), re.findall(r"'([^']*)'", m.group(2)))


def _option_hints(parser: argparse.ArgumentParser, command: str | None, unknown: list[str]) -> str:
    """Suggestions for misspelt options among ``unknown``, from the command's own options."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            return action.choices[command].misspelt(unknown)
    return parser.misspelt(unknown)


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML experiment config (e.g. configs/quickstart.yaml)")
    p.add_argument(
        "overrides", nargs="*", metavar="section.key=value", help="config overrides, applied last"
    )


def config_input(args) -> list[tuple[str, str | None]]:
    """The ``--config`` file as an input no output may replace."""
    return [("--config", getattr(args, "config", None))]


def check_sections(args, reads: tuple[str, ...]) -> None:
    """Refuse a YAML section or an override whose section is misspelt, and an override of a
    section this command does not read (it would be silently ignored)."""
    if args.config:
        for key in load_config_dict(args.config):
            if key not in SECTIONS:
                raise UserError(
                    f"config file {args.config}: unknown section {key!r}; "
                    f"valid sections: {', '.join(SECTIONS)}"
                )
    for o in args.overrides:
        section = o.split("=", 1)[0].split(".", 1)[0]
        if "." in o.split("=", 1)[0] and section not in reads:
            what = (
                "unknown section"
                if section not in SECTIONS
                else "a section this command does not read"
            )
            raise UserError(
                f"override {o!r}: {section!r} is {what}; {args.command} reads "
                f"{', '.join(s + '.' for s in reads)}"
            )


def _section(args, cls, name: str, base: dict | None = None, **cli_values):
    """One config section: defaults <- ``base`` <- YAML section <- overrides <- explicit CLI
    flags."""
    data = dict(base or {})
    if args.config:
        full = load_config_dict(args.config)
        data.update(full.get(name, {}) or {})
    overrides = [o.split(".", 1)[1] for o in args.overrides if o.startswith(name + ".")]
    stray = [o for o in args.overrides if "." not in o.split("=", 1)[0]]
    if stray:
        raise UserError(f"override {quote(stray[0])} must name its section, e.g. {name}.key=value")
    for key, value in cli_values.items():
        if value is not None:
            overrides.append(
                f"{key}={yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
            )

    return from_dict(cls, apply_overrides(dict(data), overrides), name + ".")


def load_config_dict(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UserError(
            f"config file {p} not found: pass a YAML file such as configs/quickstart.yaml"
        )
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError:
        raise UserError(f"config file {p}: not valid YAML; check indentation and colons") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p}: the top level must be a mapping of sections")
    return data


# --------------------------------------------------------------------------------------------
# synth


def _add_synth(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="generate the synthetic lightning world (strike records + oracle forecast)",
        description="Generate strike records of the synthetic lightning world in the point-record "
        "format users bring (Parquet), plus the oracle forecast and the world's metadata.",
        epilog="example: strikecast synth --grid conus-0.25 --start 2021-01-01 --days 365 --seed 1 --out world/",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--grid",
        help="named grid (conus-0.25, plains-0.5, ...) or 'lat0,lat1,lon0,lon1,res' "
        f"(default {SynthConfig.grid})",
    )
    p.add_argument("--start", help=f"first day, YYYY-MM-DD (UTC) (default {SynthConfig.start})")
    p.add_argument("--days", type=int, help=f"number of days (default {SynthConfig.days})")
    p.add_argument(
        "--seed",
        type=int,
        help=f"random seed; the same seed gives the same world (default {SynthConfig.seed})",
    )
    p.add_argument(
        "--time-step",
        dest="time_step",
        help="map step of the oracle: 1D (default), or 1h for the hourly world (land-sea "
        "diurnal cycle, storms living hours, oracle leads 1-6 h)",
    )
    p.add_argument("--out", required=True, help="output directory")
    add_config_args(p)
    p.set_defaults(run=run_synth)


def run_synth(args) -> int:
    check_sections(args, ("synth",))
    flags = dict(
        grid=args.grid, start=args.start, days=args.days, seed=args.seed, time_step=args.time_step
    )
    cfg = _section(args, SynthConfig, "synth", **flags)
    if map_step(cfg) < pd.Timedelta("1D"):  # the hourly world's defaults, under YAML and overrides
        cfg = _section(args, SynthConfig, "synth", base=SUB_DAILY_DEFAULTS, **flags)
    out = check_output_path(args.out, config_input(args), folder=True)
    check_outputs([out / name for name in WORLD_FILES], config_input(args))
    paths = generate_world(cfg, out, progress=True)
    for kind, path in paths.items():
        print(f"{kind}: {path}")
    return 0


# --------------------------------------------------------------------------------------------
# prep


def _add_prep(sub) -> None:
    p = sub.add_parser(
        "prep",
        help="strike records or gridded maps -> CF netCDF count maps + window index",
        description="Grid strike records (NCEI NLDN tiles, point CSV/Parquet, GOES GLM LCFA, gridded "
        "netCDF) into CF-1.8 strike_count(time, lat, lon) maps with a coverage mask, and save the "
        "window index of input/target sequences beside them.",
        epilog="examples:\n"
        "  strikecast prep nldn-tiles-202402.csv.gz --grid conus-0.25 --out maps.nc\n"
        "  strikecast prep 'feed/*.parquet' --format points --time-step 1h --out maps.nc --workers 2\n"
        "  strikecast prep world/strikes.parquet --grid plains-0.5 --out maps.nc",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="input files or glob patterns")
    p.add_argument(
        "--out", required=True, help="output maps netCDF; an existing file is appended to"
    )
    p.add_argument("--grid", help="named grid or 'lat0,lat1,lon0,lon1,res' (default conus-0.25)")
    p.add_argument(
        "--format", help=f"input format (default auto: detected from content): {_formats()}"
    )
    p.add_argument("--time-step", dest="time_step", help="map step: 1D (default), 6h, 15min, ...")
    p.add_argument("--start", help="first step kept, inclusive (UTC)")
    p.add_argument("--end", help="last step kept, inclusive (UTC)")
    p.add_argument(
        "--workers", type=int, help="grid in parallel with a local dask cluster of N workers"
    )
    p.add_argument(
        "--scheduler",
        help="address of an existing dask scheduler (tcp://host:8786); or threads, processes, sync",
    )
    p.add_argument(
        "--columns",
        help="point-record column names, e.g. time=ts,lat=latitude,lon=longitude; time=ts:ms "
        "for epoch milliseconds (s, ms, us, ns); geometry=wkt for WKT/WKB points",
    )
    p.add_argument(
        "--timezone", help="zone of naive times: IANA name (Asia/Tokyo) or +09:00 (default UTC)"
    )
    p.add_argument(
        "--file-days",
        dest="file_days",
        help="points file names giving the day each covers, e.g. '*_%%Y%%m%%d.csv'",
    )
    add_config_args(p)
    p.set_defaults(run=run_prep)


def _formats() -> str:
    """The reader names and their aliases, for ``prep --help``."""
    names = ["auto", "points (CSV or Parquet)", *READERS]
    aliases = ", ".join(f"{a}={n}" for a, n in ALIASES.items())
    return f"{', '.join(names)}; aliases {aliases}"


def run_prep(args) -> int:
    # positional arguments are inputs, except `section.key=value` overrides mixed in among them
    is_override = [bool(_OVERRIDE.match(a)) and not Path(a).exists() for a in args.inputs]
    inputs = [a for a, o in zip(args.inputs, is_override, strict=True) if not o]
    args.overrides = [a for a, o in zip(args.inputs, is_override, strict=True) if o] + list(
        args.overrides
    )
    check_sections(args, ("prep", "data"))
    cfg = _section(
        args,
        PrepConfig,
        "prep",
        grid=args.grid,
        format=args.format,
        time_step=args.time_step,
        start=args.start,
        end=args.end,
        workers=args.workers,
        timezone=args.timezone,
        file_days=args.file_days,
    )
    seq = _section(args, SequenceConfig, "data")
    check_archive_path(Path(args.out))
    check_output_path(args.out, config_input(args))  # prep checks the other inputs
    summary = prep(inputs, Path(args.out), cfg, seq, scheduler=args.scheduler, columns=args.columns)
    print(summary)
    return 0


COMMANDS: dict[str, Callable] = {"synth": _add_synth, "prep": _add_prep, "guidance": add_guidance}


def add_version(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version", action="version", version=f"strikecast {__version__}", help="print the version"
    )


def add_commands(sub) -> None:
    for add in COMMANDS.values():
        add(sub)


def add_quiet(sub) -> None:
    """``-q/--quiet`` on every command of ``sub`` (honoured by :func:`run_parser`)."""
    for p in sub.choices.values():
        p.add_argument(
            "-q",
            "--quiet",
            action="store_true",
            help="no progress bars or progress lines on stderr (errors, warnings and the "
            "closing lines naming what was written still print)",
        )


def run_parser(parser: argparse.ArgumentParser, argv: list[str] | None) -> int:
    """Parse, run, and turn a :class:`UserError` (or an ``OSError``: a full disk, a file that
    vanished) into one line on stderr and exit code 2; warnings print as one line too."""
    args, extra = parser.parse_known_args(argv)
    # `section.key=value` overrides may also follow the options (argparse leaves them over)
    unknown = [a for a in extra if not _OVERRIDE.match(a)]
    if unknown:
        hint = _option_hints(parser, getattr(args, "command", None), unknown)
        parser.error(f"unrecognized arguments: {' '.join(unknown)}{hint}")
    if extra:
        if not hasattr(args, "overrides"):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    where = f"{parser.prog} {args.command}"

    def one_line(message, category, filename, lineno, file=None, line=None):
        print(f"{where}: warning: {' '.join(str(message).split())}", file=sys.stderr)

    try:
        with warnings.catch_warnings():  # restores showwarning on the way out
            warnings.showwarning = one_line
            with quiet(getattr(args, "quiet", False)):
                return int(args.run(args) or 0)
    except UserError as e:
        print(f"{where}: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        text = f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e)
        print(f"{where}: error: {' '.join(text.split()) or type(e).__name__}", file=sys.stderr)
        return 2
    except Interrupted as e:  # a signal, after the run saved its state
        print(f"{where}: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt:
        print(f"{where}: interrupted; run the same command again to resume", file=sys.stderr)
        return 130


def build_parser(prog: str = "python -m data_prep") -> argparse.ArgumentParser:
    parser = _Parser(
        prog=prog, description="strikecast data preparation: synth, prep and guidance."
    )
    add_version(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    add_commands(sub)
    add_quiet(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_parser(build_parser(), argv)


__all__ = ["add_commands", "add_config_args", "build_parser", "load_config", "main", "run_parser"]
