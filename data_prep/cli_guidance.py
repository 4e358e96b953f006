"""The ``guidance`` subcommand of ``strikecast`` (registered by :mod:`data_prep.cli`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from data_prep.errors import UserError
from data_prep.guidance_prep import make_guidance


def add_guidance(sub) -> None:
    p = sub.add_parser(
        "guidance",
        help="NWP or reanalysis netCDF fields -> guidance file on the maps' grid",
        description="Bring gridded fields (analyses (time, lat, lon) or forecasts (init_time, "
        "lead_time, lat, lon), CF names too) of any regular lat-lon grid onto the maps' grid: "
        "area-weighted where the source is finer, bilinear where it is coarser; missing values "
        "stay NaN (never zero). Several files are joined along init_time.",
        epilog="examples:\n"
        "  strikecast guidance era5-cape-2024.nc --maps maps.nc --out guidance.nc\n"
        "  strikecast guidance 'gfs/*.nc' --maps maps.nc --out guidance.nc --vars cape,tp",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("inputs", nargs="+", help="netCDF files or glob patterns")
    p.add_argument("--maps", required=True, help="maps netCDF written by prep (gives the grid)")
    p.add_argument("--out", required=True, help="output guidance netCDF")
    p.add_argument(
        "--vars", help="comma-separated field names, e.g. cape,tp (default: every field on lat/lon)"
    )
    p.set_defaults(run=run_guidance)


def run_guidance(args) -> int:
    variables = None
    if args.vars is not None:
        variables = [v.strip() for v in args.vars.split(",") if v.strip()]
        if not variables:
            raise UserError(f"--vars {args.vars!r} names no field; give e.g. --vars cape,tp")
    summary = make_guidance(args.inputs, Path(args.maps), Path(args.out), variables)
    print(summary)
    return 0
