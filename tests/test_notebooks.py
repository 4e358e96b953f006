"""The notebooks run top to bottom in a fresh kernel and are stored without outputs."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from forecast.figures import diagrams

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("01_quickstart", "02_real_nldn", "03_scores")
CELL_TIMEOUT_S = 180


def run_notebook(name: str, cwd: Path) -> nbformat.NotebookNode:
    """Execute ``notebooks/<name>.ipynb`` with ``cwd`` as working directory; return it executed."""
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        book,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute()
    return book


def _stdout(book: nbformat.NotebookNode) -> str:
    return "".join(
        out.get("text", "")
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "stream"
    )


def _n_images(book: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in out.get("data", {})
        for cell in book.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
    )


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_stored_without_outputs_and_with_the_python3_kernel(name):
    book = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(book)
    assert book.nbformat == 4
    assert book.metadata["kernelspec"]["name"] == "python3"
    for cell in book.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.slow
def test_quickstart_notebook_draws_the_climate_trains_predicts_and_shows_forecast_maps(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("STRIKECAST_NB_STEPS", "12")  # the notebook's 300 steps take minutes
    book = run_notebook("01_quickstart", tmp_path)
    init = _stdout(book).split("init: ")[1].split()[0]  # the test-split day nearest mid-July
    assert init[5:7] in ("06", "07", "08"), init
    stamp = init.replace("-", "") + "T0000"
    figures = sorted(p.name for p in (tmp_path / "nb_quickstart" / "figures").iterdir())
    assert figures == [
        "climate.png",
        f"map_{stamp}_lead01.png",
        f"map_{stamp}_lead02.png",
        "training.png",
    ]
    assert _n_images(book) == 4  # climate.png is shown once, in its own section


@pytest.mark.slow
def test_scores_notebook_makes_a_scores_file_and_draws_every_diagram(tmp_path):
    book = run_notebook("03_scores", tmp_path)
    figures = {p.stem for p in (tmp_path / "nb_scores" / "figures").glob("*.png")}
    assert figures == set(diagrams.DIAGRAMS)
    assert _n_images(book) == len(diagrams.DIAGRAMS)


@pytest.mark.slow
def test_real_data_notebook_skips_every_cell_without_the_sample(tmp_path, monkeypatch):
    monkeypatch.setenv("STRIKECAST_NLDN", str(tmp_path / "absent.csv.gz"))
    book = run_notebook("02_real_nldn", tmp_path)
    assert _stdout(book).count("skipped: no NLDN sample") == 4
    assert not (tmp_path / "nb_nldn").exists()


@pytest.mark.slow
def test_real_data_notebook_maps_and_scores_the_nldn_sample(realdata, tmp_path, monkeypatch):
    monkeypatch.setenv("STRIKECAST_NLDN", str(realdata / "nldn_tiles" / "nldn-tiles-202402.csv.gz"))
    book = run_notebook("02_real_nldn", tmp_path)
    assert "gridded" in _stdout(book)  # prep's accounting table
    assert (tmp_path / "nb_nldn" / "scores.nc").is_file()
    figures = {p.stem for p in (tmp_path / "nb_nldn" / "figures").glob("*.png")}
    assert {"observed", "map_20240208T0000_lead01", "roc", "reliability"} <= figures
