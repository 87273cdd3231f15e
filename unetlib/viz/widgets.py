"""Interactive viewers (ipywidgets) for the notebooks, with static fallbacks.

Each viewer returns an ipywidgets box when the kernel serves a notebook open in a
widget-capable front end (JupyterLab, Notebook 7; see :func:`widgets_available`), and a
static matplotlib figure otherwise, so headless papermill and nbval runs stay clean and
reviewable. Set the environment variable ``UNETLIB_WIDGETS`` to ``1`` or ``0`` to force
either.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from unetlib.core.io import list_images, read_image
from unetlib.data.dataset import find_pairs
from unetlib.data.masks import read_labels, read_mask
from unetlib.data.organs import OrganTable, find_organ_table, read_organ_table
from unetlib.data.stack import LaserStack
from unetlib.viz.plots import (
    new_figure,
    plot_cycle_organs,
    plot_lasers,
    plot_pairs,
    plot_predictions,
    show_image,
)
from unetlib.viz.study_figures import plot_parameter_dots

STATIC_PANELS = 6
VIEWER_CLASS = "unetlib-viewer"  # CSS class of every interactive viewer


def widgets_available() -> bool:
    """True when this kernel serves a notebook open in a front end that renders ipywidgets.

    Two signs, either is enough:

    - the kernel was started by a Jupyter server for a document (jupyter_server 2, behind
      JupyterLab 4 and Notebook 7): the server names the document in ``JPY_SESSION_NAME``;
      headless executors (papermill, nbclient, nbval) start kernels without it;
    - a widget manager has opened the ``jupyter.widget.control`` comm. JupyterLab's does
      so only once a first widget is shown, not when the kernel starts, so this sign
      alone would leave every viewer of a freshly opened notebook static.

    ``UNETLIB_WIDGETS=1``/``0`` overrides the detection: ``0`` suits papermill started from
    a notebook's kernel, which passes its ``JPY_SESSION_NAME`` on (``python -m unetlib
    run-notebooks`` sets it itself).
    """
    forced = os.environ.get("UNETLIB_WIDGETS", "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        from IPython import get_ipython
        from ipywidgets import Widget
    except ImportError:
        return False
    if get_ipython() is None or not hasattr(get_ipython(), "kernel"):
        return False
    if os.environ.get("JPY_SESSION_NAME"):
        return True
    return getattr(Widget, "_control_comm", None) is not None


def _viewer(controls: dict, draw: Callable[..., Figure]):
    """An ipywidgets box: the controls, and an output area redrawn when they change.

    The box carries the CSS class :data:`VIEWER_CLASS`, so a page (or a test driving one
    in a browser) can find the viewers among other widgets.
    """
    import ipywidgets
    from IPython.display import display

    def show(**values) -> None:
        display(draw(**values))

    # interactive_output draws at once and after every change, each time into its output
    # area, cleared first; drawing here as well would show the first figure twice.
    output = ipywidgets.interactive_output(show, controls)
    viewer = ipywidgets.VBox([ipywidgets.HBox(list(controls.values())), output])
    viewer.add_class(VIEWER_CLASS)
    return viewer


def frame_browser(stack: LaserStack, *, interactive: bool | None = None):
    """Browse an acquisition: a cycle slider, a laser selector and contrast limits.

    Returns a widget, or (headless) the figure of every laser at cycle 0.
    """
    if not (widgets_available() if interactive is None else interactive):
        return plot_lasers(stack, 0)
    import ipywidgets

    controls = {
        "cycle": ipywidgets.IntSlider(0, 0, stack.cycles - 1, description="cycle"),
        "laser": ipywidgets.Dropdown(options=list(range(1, stack.lasers + 1)), description="laser"),
        # One decimal, as the step: the default two ("0.50 – 99.80") overflow the readout.
        "limits": ipywidgets.FloatRangeSlider(value=(0.5, 99.8), min=0, max=100, step=0.1,
                                              readout_format=".1f", description="contrast %"),
    }

    def draw(cycle: int, laser: int, limits: tuple[float, float]) -> Figure:
        figure, axes = new_figure(1, 1, panel_inches=5.0,
                                  aspect=stack.frame_shape[0] / stack.frame_shape[1])
        show_image(axes[0, 0], stack.data[cycle, laser - 1],
                   f"cycle {cycle}, laser {laser} (frame {int(stack.frame_numbers[cycle, laser - 1])})",
                   percentiles=tuple(limits))
        return figure

    return _viewer(controls, draw)


def _pair_images(data_dir: str | os.PathLike[str],
                 organs: OrganTable | None) -> tuple[list, list, list]:
    pairs = find_pairs(data_dir)
    images = [read_image(frame) for frame, _ in pairs]
    masks = [read_mask(mask)[0] if organs is None else read_labels(mask, organs)[0]
             for _, mask in pairs]
    return images, masks, [frame.stem for frame, _ in pairs]


def mask_viewer(data_dir: str | os.PathLike[str], *, interactive: bool | None = None):
    """Flip through the annotated pairs of a data folder with the mask outlined (each organ
    in its colour when the folder has ``organs.csv``).

    Returns a widget, or (headless) a grid of the first pairs.
    """
    organs = find_organ_table(data_dir)
    images, masks, stems = _pair_images(data_dir, organs)
    if not (widgets_available() if interactive is None else interactive):
        shown = slice(0, STATIC_PANELS)
        return plot_pairs(images[shown], masks[shown], stems[shown], columns=3, organs=organs)
    import ipywidgets

    controls = {"index": ipywidgets.SelectionSlider(options=[(s, i) for i, s in enumerate(stems)],
                                                    description="frame")}

    def draw(index: int) -> Figure:
        return plot_pairs([images[index]], [masks[index]], [f"{stems[index]}"], columns=1,
                          panel_inches=5.0, organs=organs)

    return _viewer(controls, draw)


def prediction_viewer(frames_dir: str | os.PathLike[str], results_dir: str | os.PathLike[str],
                      truth_dir: str | os.PathLike[str] | None = None, *,
                      interactive: bool | None = None):
    """Flip through test frames with their predicted masks (and the truth when given)."""
    frames = list_images(frames_dir)
    predictions = {path.stem[: -len("_predict")]: path for path in list_images(results_dir)
                   if path.stem.endswith("_predict")}
    truths = ({path.stem: path for path in list_images(truth_dir)} if truth_dir else {})
    frames = [frame for frame in frames if frame.stem in predictions]
    stems = [frame.stem for frame in frames]

    organs = find_organ_table(results_dir)

    def mask(path: Path) -> np.ndarray:
        return read_mask(path)[0] if organs is None else read_labels(path, organs)[0]

    def load(index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        stem = stems[index]
        truth = mask(truths[stem]) if stem in truths else None
        return read_image(frames[index]), mask(predictions[stem]), truth

    if not (widgets_available() if interactive is None else interactive):
        loaded = [load(i) for i in range(min(len(stems), STATIC_PANELS))]
        images, predicted, true = (list(column) for column in zip(*loaded))
        return plot_predictions(images, predicted, true, stems[:len(loaded)], organs=organs)
    import ipywidgets

    controls = {"index": ipywidgets.SelectionSlider(options=[(s, i) for i, s in enumerate(stems)],
                                                    description="frame")}

    def draw(index: int) -> Figure:
        image, prediction, truth = load(index)
        return plot_predictions([image], [prediction], [truth], [stems[index]], columns=1,
                                panel_inches=5.0, organs=organs)

    return _viewer(controls, draw)


def cycle_browser(stack: LaserStack, results_dir: str | os.PathLike[str], *, cycle: int = 0,
                  interactive: bool | None = None):
    """Browse a quantified acquisition: each laser's frame with the cycle's organ outlines.

    Parameters
    ----------
    stack : LaserStack
        The acquisition that was quantified.
    results_dir : path-like
        Its results folder (``<out>/<stack stem>``: ``labels.tif`` and ``organs.csv``).
    cycle : int
        The cycle shown first (and the only one when headless).

    Returns a widget with a cycle slider, or (headless) the figure of ``cycle``.
    """
    import tifffile

    results_dir = Path(results_dir)
    organs = read_organ_table(results_dir / "organs.csv")

    def labels(cycle: int) -> np.ndarray:
        return tifffile.imread(results_dir / "labels.tif", key=cycle)

    if not (widgets_available() if interactive is None else interactive):
        return plot_cycle_organs(stack, labels(cycle), cycle, organs)
    import ipywidgets

    controls = {"cycle": ipywidgets.IntSlider(cycle, 0, stack.cycles - 1, description="cycle")}

    def draw(cycle: int) -> Figure:
        return plot_cycle_organs(stack, labels(cycle), cycle, organs, panel_inches=3.0)

    return _viewer(controls, draw)


def study_browser(nca_rows: Sequence[dict], groups: Sequence[str], *,
                  parameter: str = "auc_window", laser: int | None = None,
                  parameters: Sequence[str] = ("auc_window", "peak", "time_of_peak_s",
                                               "auc_inf", "half_life_s", "f0", "mean_sbr"),
                  interactive: bool | None = None):
    """Browse a study's per-mouse parameters: one dot per mouse, per group, per organ.

    Parameters
    ----------
    nca_rows : sequence of dict
        Rows of the study's ``nca.csv``.
    groups : sequence of str
        The groups in the sheet's order (their colours).
    parameter, laser : str, int
        Shown first (and the only ones when headless); ``laser`` defaults to the first.
    parameters : sequence of str
        The ``nca.csv`` columns offered.

    Returns a widget with a parameter and a laser selector, or (headless) the figure.
    """
    lasers = sorted({int(row["laser"]) for row in nca_rows})
    laser = lasers[0] if laser is None else laser
    if not (widgets_available() if interactive is None else interactive):
        return plot_parameter_dots(nca_rows, groups, parameter, laser=laser)
    import ipywidgets

    controls = {"parameter": ipywidgets.Dropdown(options=list(parameters), value=parameter,
                                                 description="parameter"),
                "laser": ipywidgets.Dropdown(options=lasers, value=laser, description="laser")}

    def draw(parameter: str, laser: int) -> Figure:
        return plot_parameter_dots(nca_rows, groups, parameter, laser=laser)

    return _viewer(controls, draw)
