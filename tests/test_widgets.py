"""Viewers: ipywidgets with a front end, static figures headless; both show the data."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from unetlib.config import SyntheticConfig
from unetlib.io import write_image
from unetlib.stack import load_stack
from unetlib.synthetic import write_synthetic_stack
from unetlib.widgets import frame_browser, mask_viewer, prediction_viewer, widgets_available


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    path, _ = write_synthetic_stack(tmp_path_factory.mktemp("s") / "s.tif",
                                    SyntheticConfig(cycles=3, height=40, width=48))
    return load_stack(path)


@pytest.fixture
def data_dir(tmp_path):
    rows, cols = np.mgrid[:30, :40]
    for index in range(8):
        disc = (rows - 15) ** 2 + (cols - 10 - 2 * index) ** 2 < 40
        write_image(tmp_path / "train" / "frames" / f"{index}.png", (disc * 900 + 100).astype(np.uint16))
        write_image(tmp_path / "train" / "masks" / f"{index}.png", disc.astype(np.uint8))
        write_image(tmp_path / "test" / f"{index}.png", (disc * 900 + 100).astype(np.uint16))
        write_image(tmp_path / "results" / f"{index}_predict.png", disc.astype(np.uint8) * 255)
    return tmp_path


def test_headless_runs_get_static_figures(monkeypatch, stack, data_dir):
    monkeypatch.delenv("UNETLIB_WIDGETS", raising=False)
    assert not widgets_available()  # no kernel, no widget front end
    browser = frame_browser(stack)
    assert isinstance(browser, Figure) and len(browser.axes) == stack.lasers
    masks = mask_viewer(data_dir)
    assert isinstance(masks, Figure)
    assert [ax.get_title() for ax in masks.axes if ax.get_title()] == ["0", "1", "2", "3", "4", "5"]
    predictions = prediction_viewer(data_dir / "test", data_dir / "results", data_dir / "test")
    assert isinstance(predictions, Figure) and "truth" in predictions.get_suptitle()


def test_environment_variable_forces_either_mode(monkeypatch):
    monkeypatch.setenv("UNETLIB_WIDGETS", "1")
    assert widgets_available()
    monkeypatch.setenv("UNETLIB_WIDGETS", "0")
    assert not widgets_available()


def test_interactive_viewers_redraw_when_a_control_changes(stack, data_dir, capsys):
    import ipywidgets

    browser = frame_browser(stack, interactive=True)
    assert isinstance(browser, ipywidgets.VBox)
    cycle, laser, limits = browser.children[0].children
    assert (cycle.max, list(laser.options)) == (stack.cycles - 1, [1, 2, 3, 4])
    capsys.readouterr()
    cycle.value = 2
    assert "Figure" in capsys.readouterr().out  # the output area was redrawn
    laser.value = 3
    assert "Figure" in capsys.readouterr().out

    viewer = mask_viewer(data_dir, interactive=True)
    slider = viewer.children[0].children[0]
    assert [label for label, _ in slider.options] == [str(i) for i in range(8)]
    capsys.readouterr()
    slider.value = 5
    assert "Figure" in capsys.readouterr().out

    predictions = prediction_viewer(data_dir / "test", data_dir / "results", interactive=True)
    assert len(predictions.children[0].children[0].options) == 8


def test_viewers_outline_each_organ_in_its_colour(tmp_path):
    """Organ folders: the static mask viewer and prediction viewer draw organ outlines
    in the organs' colours, with a legend naming them."""
    from matplotlib.colors import to_hex

    data = tmp_path / "data"
    data.mkdir()
    (data / "organs.csv").write_text("value,name,color\n1,liver,#ff0000\n2,spleen,#0000ff\n")
    labels = np.zeros((40, 48), np.uint8)
    labels[5:15, 5:20], labels[25:35, 25:40] = 1, 2
    for stem in ("0", "1"):
        write_image(data / "train" / "frames" / f"{stem}.png", np.full((40, 48), 300, np.uint16))
        write_image(data / "train" / "masks" / f"{stem}.png", labels)
        write_image(data / "test" / f"{stem}.png", np.full((40, 48), 300, np.uint16))
        write_image(data / "results" / f"{stem}_predict.png", labels)
    (data / "results" / "organs.csv").write_text((data / "organs.csv").read_text())
    for figure in (mask_viewer(data, interactive=False),
                   prediction_viewer(data / "test", data / "results", interactive=False)):
        colours = {to_hex(collection.get_edgecolor()[0])
                   for ax in figure.axes for collection in ax.collections}
        assert colours == {"#ff0000", "#0000ff"}
        legend_names = [text.get_text() for text in figure.legends[0].get_texts()]
        assert legend_names == ["liver", "spleen"]
