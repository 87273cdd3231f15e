"""Viewers: ipywidgets with a front end, static figures headless; both show the data."""

from __future__ import annotations

import os

import numpy as np
import pytest
from matplotlib.colors import to_hex
from matplotlib.figure import Figure

from unetlib.core.config import SyntheticConfig
from unetlib.core.io import read_image, write_image
from unetlib.data.stack import display_scale, load_stack
from unetlib.data.synthetic import write_synthetic_stack
from unetlib.viz.widgets import (
    VIEWER_CLASS,
    frame_browser,
    mask_viewer,
    prediction_viewer,
    widgets_available,
)


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
    # Every laser of cycle 0: frame numbers 0..3 of the interleaved stack, each its own data.
    assert [ax.get_title() for ax in browser.axes] == [
        f"laser {laser} (frame {laser - 1})" for laser in range(1, stack.lasers + 1)]
    for laser, ax in enumerate(browser.axes):
        np.testing.assert_array_equal(ax.images[0].get_array(),
                                      display_scale(stack.data[0, laser]))
    masks = mask_viewer(data_dir)
    assert isinstance(masks, Figure)
    # The first 6 of the 8 pairs, each frame with one (yellow) outline of its mask.
    shown = [ax for ax in masks.axes if ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["0", "1", "2", "3", "4", "5"]
    assert all(len(ax.images) == 1 and len(ax.collections) == 1 for ax in shown)
    assert {to_hex(ax.collections[0].get_edgecolor()[0]) for ax in shown} == {to_hex("yellow")}
    predictions = prediction_viewer(data_dir / "test", data_dir / "results", data_dir / "test")
    assert isinstance(predictions, Figure)
    assert predictions.get_suptitle() == "red: prediction, green: truth"
    shown = [ax for ax in predictions.axes if ax.get_title()]
    assert [ax.get_title() for ax in shown] == ["0", "1", "2", "3", "4", "5"]
    for ax in shown:  # the truth (here the frame: its bright disc) in green, prediction in red
        assert [to_hex(c.get_edgecolor()[0]) for c in ax.collections] == [to_hex("lime"),
                                                                          to_hex("red")]


def test_environment_variable_forces_either_mode(monkeypatch):
    monkeypatch.setenv("UNETLIB_WIDGETS", "1")
    assert widgets_available()
    monkeypatch.setenv("UNETLIB_WIDGETS", "0")
    assert not widgets_available()


def test_a_kernel_serving_a_notebook_for_a_jupyter_server_shows_widgets():
    """In a real kernel: with the variable a Jupyter server sets for a notebook's kernel
    (``JPY_SESSION_NAME``) the viewers are widgets, without it (papermill, nbval) static.
    JupyterLab's widget manager opens its control comm only after a first widget is shown,
    so a freshly opened notebook has no other sign."""
    from jupyter_client.manager import start_new_kernel

    env = {key: value for key, value in os.environ.items()
           if key not in ("UNETLIB_WIDGETS", "JPY_SESSION_NAME")}
    manager, client = start_new_kernel(kernel_name="python3",
                                       env={**env, "JPY_SESSION_NAME": "/lab/01_reshaping.ipynb"})
    printed = []

    def run(code: str) -> None:
        reply = client.execute_interactive(code, timeout=120, output_hook=lambda message: printed.append(
            message["content"].get("text", "")) if message["msg_type"] == "stream" else None)
        assert reply["content"]["status"] == "ok", reply["content"]

    try:
        run("from unetlib.viz.widgets import widgets_available\nprint(widgets_available())")
        run("import os\ndel os.environ['JPY_SESSION_NAME']\nprint(widgets_available())")
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    assert "".join(printed).split() == ["True", "False"]


def test_interactive_viewers_redraw_when_a_control_changes(stack, data_dir, monkeypatch):
    import IPython.display
    import ipywidgets

    shown = []  # every figure the viewers' output areas display, in order
    monkeypatch.setattr(IPython.display, "display", lambda figure: shown.append(figure))

    def image_of(figure):
        (ax,) = [ax for ax in figure.axes if ax.images]
        return ax.images[0].get_array()

    browser = frame_browser(stack, interactive=True)
    assert isinstance(browser, ipywidgets.VBox)
    assert VIEWER_CLASS in browser._dom_classes  # how a page finds the viewers
    cycle, laser, limits = browser.children[0].children
    assert (cycle.max, list(laser.options)) == (stack.cycles - 1, [1, 2, 3, 4])
    # Drawn at once, once, at cycle 0.
    assert [figure.axes[0].get_title() for figure in shown] == ["cycle 0, laser 1 (frame 0)"]
    shown.clear()
    cycle.value = 2
    # Redrawn once, for the new cycle: interleaved frame 2 * 4 + 0.
    assert [figure.axes[0].get_title() for figure in shown] == ["cycle 2, laser 1 (frame 8)"]
    np.testing.assert_array_equal(image_of(shown[0]),
                                  display_scale(stack.data[2, 0], tuple(limits.value)))
    shown.clear()
    laser.value = 3
    assert [figure.axes[0].get_title() for figure in shown] == ["cycle 2, laser 3 (frame 10)"]
    np.testing.assert_array_equal(image_of(shown[0]),
                                  display_scale(stack.data[2, 2], tuple(limits.value)))
    shown.clear()
    limits.value = (10.0, 90.0)
    assert len(shown) == 1
    np.testing.assert_array_equal(image_of(shown[0]), display_scale(stack.data[2, 2], (10.0, 90.0)))
    assert not np.array_equal(image_of(shown[0]), display_scale(stack.data[2, 2]))

    shown.clear()
    viewer = mask_viewer(data_dir, interactive=True)
    slider = viewer.children[0].children[0]
    assert [label for label, _ in slider.options] == [str(i) for i in range(8)]
    assert [figure.axes[0].get_title() for figure in shown] == ["0"]
    shown.clear()
    slider.value = 5
    assert [figure.axes[0].get_title() for figure in shown] == ["5"]
    frame_5 = np.asarray(read_image(data_dir / "train" / "frames" / "5.png"))
    np.testing.assert_array_equal(image_of(shown[0]), display_scale(frame_5))

    shown.clear()
    predictions = prediction_viewer(data_dir / "test", data_dir / "results", interactive=True)
    slider = predictions.children[0].children[0]
    assert len(slider.options) == 8
    assert [figure.axes[0].get_title() for figure in shown] == ["0"]
    shown.clear()
    slider.value = 3
    assert [figure.axes[0].get_title() for figure in shown] == ["3"]
    assert shown[0].get_suptitle() == "red: prediction"  # no truth folder given
    assert [to_hex(c.get_edgecolor()[0]) for c in shown[0].axes[0].collections] == [to_hex("red")]


def test_viewers_outline_each_organ_in_its_colour(tmp_path):
    """Organ folders: the static mask viewer and prediction viewer draw organ outlines
    in the organs' colours, with a legend naming them."""
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
