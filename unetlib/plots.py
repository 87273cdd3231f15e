"""Every figure the notebooks show.

Functions return a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, nothing shown twice, safe in headless papermill runs) or draw on an ``ax`` they are
given. They never call ``plt.show()``. Figures are small on purpose: notebooks are
committed with their outputs and must stay reviewable.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from unetlib.stack import LaserStack, display_scale

PANEL_INCHES = 2.4
DPI = 72


def new_figure(rows: int, columns: int, *, panel_inches: float = PANEL_INCHES,
               aspect: float = 1.0) -> tuple[Figure, np.ndarray]:
    """A figure with a grid of axes (always a 2-D array), sized per panel."""
    figure = Figure(figsize=(columns * panel_inches, rows * panel_inches * aspect + 0.3),
                    dpi=DPI, layout="constrained")
    axes = np.atleast_2d(figure.subplots(rows, columns, squeeze=False))
    return figure, axes


def show_image(ax: Axes, image: np.ndarray, title: str = "", *,
               percentiles: tuple[float, float] = (0.5, 99.8)) -> Axes:
    """Draw a frame (any dtype, 1 or 3 channels) display-scaled, without ticks."""
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[-1] > 3:
        image = image[..., :3]
    scaled = display_scale(image, percentiles)
    ax.imshow(scaled, cmap="gray" if scaled.ndim == 2 else None, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax


def outline_mask(ax: Axes, mask: np.ndarray, *, color: str = "yellow", linewidth: float = 0.8) -> Axes:
    """Draw the outline of a binary mask on ``ax`` (the image stays visible under it)."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.any() and not mask.all():
        ax.contour(mask.astype(float), levels=[0.5], colors=[color], linewidths=linewidth)
    return ax


def plot_lasers(stack: LaserStack, cycle: int = 0) -> Figure:
    """One panel per laser at ``cycle``, each display-scaled on its own."""
    figure, axes = new_figure(1, stack.lasers, aspect=stack.frame_shape[0] / stack.frame_shape[1])
    for laser in range(1, stack.lasers + 1):
        frame = stack.data[cycle, laser - 1]
        show_image(axes[0, laser - 1], frame,
                   f"laser {laser} (frame {int(stack.frame_numbers[cycle, laser - 1])})")
    figure.suptitle(f"{stack.path.name}: cycle {cycle} of {stack.cycles}", fontsize=10)
    return figure


def plot_composite(stack: LaserStack, cycle: int = 0,
                   lasers: Sequence[int] = (1, 2, 3)) -> Figure:
    """The 3-laser composite at ``cycle`` as RGB, as written to ``channels3/``."""
    aspect = stack.frame_shape[0] / stack.frame_shape[1]
    figure, axes = new_figure(1, 1, panel_inches=4.0, aspect=aspect)
    show_image(axes[0, 0], stack.composite(cycle, tuple(lasers)),
               f"lasers {', '.join(map(str, lasers))} as R, G, B (cycle {cycle})")
    return figure


def plot_laser_means(stack: LaserStack) -> Figure:
    """Mean intensity of each laser over time: shows dye uptake and clearance at a glance."""
    figure, axes = new_figure(1, 1, panel_inches=4.0, aspect=0.55)
    ax = axes[0, 0]
    for laser in range(1, stack.lasers + 1):
        frames = stack.laser(laser)
        means = [float(np.asarray(frames[c, ::8, ::8]).mean()) for c in range(stack.cycles)]
        ax.plot(means, label=f"laser {laser}")
    ax.set_xlabel("cycle")
    ax.set_ylabel("mean counts")
    ax.legend(fontsize=7)
    return figure


def plot_picked(stack: LaserStack, cycles: Sequence[int], laser: int = 1, *,
                columns: int = 5) -> Figure:
    """Thumbnails of the picked cycles of one laser."""
    rows = int(np.ceil(len(cycles) / columns))
    aspect = stack.frame_shape[0] / stack.frame_shape[1]
    figure, axes = new_figure(rows, columns, panel_inches=1.6, aspect=aspect)
    for ax in axes.ravel():
        ax.set_axis_off()
    for index, (ax, cycle) in enumerate(zip(axes.ravel(), cycles)):
        show_image(ax, stack.data[cycle, laser - 1], f"{index}: cycle {cycle}")
    return figure
