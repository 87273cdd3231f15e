"""Every figure the notebooks show.

Functions return a :class:`matplotlib.figure.Figure` built without pyplot (no global
state, nothing shown twice, safe in headless papermill runs) or draw on an ``ax`` they are
given. They never call ``plt.show()``. Figures are small on purpose: notebooks are
committed with their outputs and must stay reviewable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from unetlib.core.errors import ParameterError
from unetlib.data.organs import OrganTable
from unetlib.data.stack import LaserStack, contrast_limits, display_scale

PANEL_INCHES = 2.4
DPI = 72


def new_figure(rows: int, columns: int, *, panel_inches: float = PANEL_INCHES,
               aspect: float = 1.0) -> tuple[Figure, np.ndarray]:
    """A figure with a grid of axes (always a 2-D array), sized per panel."""
    figure = Figure(figsize=(columns * panel_inches, rows * panel_inches * aspect + 0.3),
                    dpi=DPI, layout="constrained")
    axes = np.atleast_2d(figure.subplots(rows, columns, squeeze=False))
    return figure, axes


def image_grid(count: int, columns: int, *, panel_inches: float,
               frame_shape: Sequence[int] | None = None) -> tuple[Figure, list[Axes]]:
    """A figure of ``count`` image panels, ``columns`` wide, axes off, sized by frame aspect.

    Returns the figure and the first ``count`` axes in reading order (spare panels of the
    last row stay blank).
    """
    columns = max(1, min(columns, count))
    rows = max(1, int(np.ceil(count / columns)))
    aspect = frame_shape[0] / frame_shape[1] if frame_shape is not None else 1.0
    figure, axes = new_figure(rows, columns, panel_inches=panel_inches, aspect=aspect)
    for ax in axes.ravel():
        ax.set_axis_off()
    return figure, list(axes.ravel()[:count])


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
    figure, axes = image_grid(len(cycles), columns, panel_inches=1.6,
                              frame_shape=stack.frame_shape)
    for index, (ax, cycle) in enumerate(zip(axes, cycles)):
        show_image(ax, stack.data[cycle, laser - 1], f"{index}: cycle {cycle}")
    return figure


def outline_organs(ax: Axes, classes: np.ndarray, organs: OrganTable, *,
                   linewidth: float = 0.9, linestyle: str = "solid") -> Axes:
    """Outline every organ of a class map (0 background, ``k`` the ``k``-th organ) in its colour."""
    classes = np.asarray(classes)
    if classes.ndim == 3:
        classes = classes[..., 0]
    for klass, organ in enumerate(organs.organs, start=1):
        mask = classes == klass
        if mask.any() and not mask.all():
            ax.contour(mask.astype(float), levels=[0.5], colors=[organ.color],
                       linewidths=linewidth, linestyles=linestyle)
    return ax


def organ_legend(figure: Figure, organs: OrganTable, extra: str = "") -> Figure:
    """A legend of the organs' colours along the top of ``figure``."""
    from matplotlib.lines import Line2D

    handles = [Line2D([0], [0], color=organ.color, linewidth=2, label=organ.name)
               for organ in organs.organs]
    # "outside": constrained layout makes room for it instead of drawing over the frames.
    figure.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 6), fontsize=7,
                  frameon=False, title=extra or None, title_fontsize=7)
    return figure


def plot_pairs(images: Sequence[np.ndarray], masks: Sequence[np.ndarray],
               titles: Sequence[str] = (), *, columns: int = 4,
               panel_inches: float = 1.8, organs: OrganTable | None = None) -> Figure:
    """A grid of frames with their mask outlined: in yellow, or each organ in its colour
    when ``organs`` is given (masks are then class maps)."""
    figure, axes = image_grid(len(images), columns, panel_inches=panel_inches,
                              frame_shape=images[0].shape if len(images) else None)
    for index, (ax, image, mask) in enumerate(zip(axes, images, masks)):
        show_image(ax, image, titles[index] if index < len(titles) else "")
        if organs is None:
            outline_mask(ax, mask)
        else:
            outline_organs(ax, mask, organs)
    if organs is not None:
        organ_legend(figure, organs)
    return figure


def history_positions(rows: Sequence[dict]) -> list[float]:
    """Where each ``history.csv`` row lies in training, in epochs.

    A row is written at the end of an epoch, and also where a time-budgeted run paused an
    epoch to validate (``checkpoint_minutes``): those rows share their epoch number, so
    each is placed by the steps done, ``epoch - 1 + steps so far / steps of the epoch``
    (the epoch's last row at ``epoch``). Rows without an ``epoch`` column count from 1.

    Examples
    --------
    >>> history_positions([{"epoch": 1, "steps": 50}, {"epoch": 2, "steps": 20},
    ...                    {"epoch": 2, "steps": 30}, {"epoch": 3, "steps": 50}])
    [1.0, 1.4, 2.0, 3.0]
    """
    epochs = [int(float(row["epoch"])) if row.get("epoch") not in (None, "") else index + 1
              for index, row in enumerate(rows)]
    steps = [float(row["steps"]) if row.get("steps") not in (None, "") else 1.0
             for row in rows]
    per_epoch: dict[int, float] = {}
    for epoch, count in zip(epochs, steps):
        per_epoch[epoch] = per_epoch.get(epoch, 0.0) + count
    done: dict[int, float] = {}
    positions = []
    for epoch, count in zip(epochs, steps):
        done[epoch] = done.get(epoch, 0.0) + count
        positions.append(round(epoch - 1 + done[epoch] / max(per_epoch[epoch], 1.0), 6))
    return positions


def plot_history(rows: Sequence[dict], *, title: str = "") -> Figure:
    """Training curves from ``history.csv`` rows: loss, and Dice/IoU on both splits.

    Parameters
    ----------
    rows : sequence of dict
        One dict per epoch with keys such as ``loss``, ``val_loss``, ``dice``,
        ``val_dice``, ``iou``, ``val_iou`` (validation tiles) and ``val_frame_dice``
        (whole validation frames: what chose the checkpoint), strings or numbers.
    """
    figure, axes = new_figure(1, 2, panel_inches=3.2, aspect=0.7)
    positions = history_positions(rows)

    def curve(ax: Axes, key: str, label: str, style: str) -> None:
        points = [(x, float(row[key])) for x, row in zip(positions, rows)
                  if row.get(key) not in (None, "")]
        if points:
            ax.plot(*zip(*points), style, label=label, markersize=3)

    for key, style in (("loss", "-o"), ("val_loss", "--o")):
        curve(axes[0, 0], key, key.replace("_", " "), style)
    for key, style in (("dice", "-o"), ("val_dice", "--o"), ("iou", "-s"), ("val_iou", "--s")):
        curve(axes[0, 1], key, key.replace("_", " ") + (" (tiles)" if "val" in key else ""),
              style)
    curve(axes[0, 1], "val_frame_dice", "val dice (whole frames)", "-D")
    # Per organ: whole-frame validation where the run has it, else the tiles' (older runs).
    prefix = ("val_frame_dice_" if any("val_frame_dice_" in key for row in rows for key in row)
              else "val_dice_")
    organ_keys = sorted({key for row in rows for key in row if key.startswith(prefix)})
    for key in organ_keys:
        curve(axes[0, 1], key, key[len(prefix):].replace("_", " "), ":.")
    axes[0, 0].set_title("loss", fontsize=9)
    axes[0, 1].set_title("Dice, IoU; dotted: each organ (validation)"
                         if organ_keys else "Dice and IoU (threshold 0.5)", fontsize=9)
    axes[0, 1].set_ylim(0, 1)
    for ax in axes.ravel():
        ax.set_xlabel("epoch", fontsize=8)
        if all(float(x).is_integer() for x in positions):
            ax.xaxis.get_major_locator().set_params(integer=True)
        ax.tick_params(labelsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    if title:
        figure.suptitle(title, fontsize=10)
    return figure


def plot_predictions(images: Sequence[np.ndarray], predictions: Sequence[np.ndarray],
                     truths: Sequence[np.ndarray | None] = (), titles: Sequence[str] = (), *,
                     columns: int = 3, panel_inches: float = 2.4,
                     organs: OrganTable | None = None) -> Figure:
    """Frames with the predicted mask outlined in red and, when known, the truth in green.

    With ``organs`` (predictions and truths are class maps), each organ is outlined in its
    colour: solid for the prediction, dotted for the truth.
    """
    figure, axes = image_grid(len(images), columns, panel_inches=panel_inches,
                              frame_shape=images[0].shape if len(images) else None)
    known = any(t is not None for t in truths)
    for index, (ax, image, prediction) in enumerate(zip(axes, images, predictions)):
        show_image(ax, image, titles[index] if index < len(titles) else "")
        truth = truths[index] if index < len(truths) else None
        if organs is not None:
            if truth is not None:
                outline_organs(ax, truth, organs, linewidth=1.3, linestyle="dotted")
            outline_organs(ax, prediction, organs)
        else:
            if truth is not None:
                outline_mask(ax, truth, color="lime", linewidth=1.2)
            outline_mask(ax, np.asarray(prediction) > 0, color="red", linewidth=0.8)
    if organs is not None:
        organ_legend(figure, organs, "solid: prediction" + (", dotted: truth" if known else ""))
    else:
        figure.suptitle("red: prediction" + (", green: truth" if known else ""), fontsize=9)
    return figure


def score_limits(values: Sequence[float]) -> tuple[float, float]:
    """Limits of a score axis that shows the differences between scores.

    From a quarter of the spread below the lowest score (at least 0.02 of room, never
    below 0) to just above 1: scores of 0.97 and 0.99 drawn on a 0-1 axis look the same.

    Examples
    --------
    >>> score_limits([0.97, 0.99])
    (0.95, 1.005)
    >>> score_limits([0.2, 0.9])
    (0.0, 1.005)
    """
    low = min(values) if len(values) else 0.0
    room = max(0.02, 0.25 * (1.0 - low)) if low > 0.5 else low
    return max(0.0, math.floor((low - room) * 100 + 1e-9) / 100), 1.005


def plot_organ_scores(per_organ: dict[str, dict[str, float]], organs: OrganTable, *,
                      keys: Sequence[str] = ("dice", "iou", "precision", "recall")) -> Figure:
    """Mean scores of each organ: a dot per score, one colour per organ, on an axis that
    starts just below the lowest score (:func:`score_limits`)."""
    figure, axes = new_figure(1, 1, panel_inches=4.0, aspect=0.5)
    ax = axes[0, 0]
    names = list(per_organ)
    positions = np.arange(len(keys))
    width = 0.6 / max(1, len(names))
    colors = {organ.name: organ.color for organ in organs.organs}
    values = []
    for offset, name in enumerate(names):
        scores = [float(per_organ[name][key]) for key in keys]
        values += scores
        ax.plot(positions + offset * width, scores, "o", label=name, color=colors.get(name),
                markersize=5)
    ax.set_xticks(positions + width * (len(names) - 1) / 2, list(keys), fontsize=7)
    ax.set_ylim(*score_limits(values))
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("test frames, mean per organ", fontsize=9)
    return figure


def plot_frame_scores(rows: Sequence[dict], *, keys: Sequence[str] = ("dice", "iou")) -> Figure:
    """Per-frame scores (evaluation table rows with a ``stem`` key): a dot per frame and
    score, on an axis that starts just below the lowest score (:func:`score_limits`)."""
    figure, axes = new_figure(1, 1, panel_inches=4.0, aspect=0.5)
    ax = axes[0, 0]
    positions = np.arange(len(rows))
    width = 0.6 / max(1, len(keys))
    values = []
    for offset, key in enumerate(keys):
        scores = [float(row[key]) for row in rows]
        values += scores
        ax.plot(positions + offset * width, scores, "o", label=key, markersize=5)
    ax.set_xticks(positions + width * (len(keys) - 1) / 2, [str(row["stem"]) for row in rows],
                  fontsize=7)
    ax.set_ylim(*score_limits(values))
    ax.grid(axis="y", alpha=0.3)
    ax.set_xlabel("frame", fontsize=8)
    ax.legend(fontsize=7, loc="lower right")
    return figure


def plot_organ_curves(rows: Sequence[dict], organs: OrganTable, *, value: str = "mean",
                      title: str = "") -> Figure:
    """Organ time--intensity curves: one panel per laser, one line per organ in its colour.

    Parameters
    ----------
    rows : sequence of dict
        Rows of an ``intensities.csv`` (:func:`unetlib.study.quantify.read_intensities`).
    organs : OrganTable
    value : str
        The column plotted (``mean``, ``median``, ``p95``, ``sbr`` ...).
    title : str

    Cycles flagged by quality control are drawn as crosses, not joined to the curve; the
    body background is a dashed grey line.
    """
    lasers = sorted({int(row["laser"]) for row in rows})
    columns = min(4, max(1, len(lasers)))
    panel_rows = int(np.ceil(len(lasers) / columns))
    figure, axes = new_figure(panel_rows, columns, panel_inches=2.6, aspect=0.8)
    for ax in axes.ravel()[len(lasers):]:
        ax.set_axis_off()

    def number(text: str) -> float:
        return float(text) if text not in ("", None) else np.nan

    for ax, laser in zip(axes.ravel(), lasers):
        own = [row for row in rows if int(row["laser"]) == laser]
        for organ in organs.organs:
            series = [row for row in own if row["organ"] == organ.name]
            times = np.array([number(row["time_s"]) for row in series])
            values = np.array([number(row[value]) for row in series])
            ok = np.array([row["qc"] == "ok" for row in series], dtype=bool)
            ax.plot(times, np.where(ok, values, np.nan), color=organ.color, linewidth=1.2,
                    label=organ.name)
            if (~ok).any():
                ax.plot(times[~ok], values[~ok], "x", color=organ.color, markersize=5)
        if value == "mean" and own:
            first = organs.organs[0].name
            series = [row for row in own if row["organ"] == first]
            ax.plot([number(row["time_s"]) for row in series],
                    [number(row["background_mean"]) for row in series], "--", color="0.5",
                    linewidth=0.9, label="background")
        ax.set_title(f"laser {laser}", fontsize=9)
        ax.set_xlabel("time (s)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0, 0].set_ylabel(value if value != "mean" else "mean intensity (counts)", fontsize=8)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=7,
                  frameon=False)
    if title:
        figure.suptitle(title, fontsize=9)
    return figure


def plot_cycle_organs(stack: LaserStack, labels: np.ndarray, cycle: int,
                      organs: OrganTable, *, panel_inches: float = PANEL_INCHES) -> Figure:
    """Every laser's frame of one cycle with that cycle's organ outlines drawn over it.

    Parameters
    ----------
    stack : LaserStack
    labels : ndarray of shape (H, W)
        The cycle's organ values (a page of a quantification's ``labels.tif``).
    cycle : int
    organs : OrganTable
    """
    lookup = np.zeros(max(organs.values) + 1, dtype=np.int32)
    for value, klass in organs.value_lookup().items():
        lookup[value] = klass
    classes = lookup[np.asarray(labels)]
    figure, axes = new_figure(1, stack.lasers, panel_inches=panel_inches,
                              aspect=stack.frame_shape[0] / stack.frame_shape[1])
    for laser in range(1, stack.lasers + 1):
        ax = axes[0, laser - 1]
        show_image(ax, stack.data[cycle, laser - 1], f"laser {laser}")
        outline_organs(ax, classes, organs)
    figure.suptitle(f"{stack.path.name}: cycle {cycle} of {stack.cycles}", fontsize=10)
    return organ_legend(figure, organs)


def plot_crossval(per_fold: Sequence[dict], summary: dict[str, dict],
                  organs: OrganTable | None = None) -> Figure:
    """Cross-validated Dice per organ: each fold's held-out Dice as a dot, the mean over
    folds as a bar with ± one standard deviation, so the spread is seen next to the mean.

    ``per_fold`` and ``summary`` are :class:`unetlib.runs.crossval.CrossvalResult`'s.
    """
    figure, axes = new_figure(1, 1, panel_inches=max(3.0, 1.1 * len(summary) + 1.5), aspect=0.6)
    ax = axes[0, 0]
    colors = {} if organs is None else {organ.name: organ.color for organ in organs.organs}
    names = list(summary)
    low = min([s["min"] for s in summary.values()] + [1.0])
    for position, name in enumerate(names):
        stats = summary[name]
        ax.bar(position, stats["mean"], 0.6, color=colors.get(name, "tab:blue"), alpha=0.45,
               yerr=stats["sd"], capsize=6, error_kw={"linewidth": 1.2})
        values = [float(row["dice"]) for row in per_fold if row["organ"] == name]
        spread = np.linspace(-0.15, 0.15, len(values)) if len(values) > 1 else [0.0]
        ax.plot(position + np.asarray(spread), values, "o", color="black", markersize=4)
        ax.annotate(f"{stats['mean']:.3f}\n± {stats['sd']:.3f}", (position + 0.3, stats["mean"]),
                    xytext=(4, 0), textcoords="offset points", ha="left", va="center",
                    fontsize=7)
    ax.set_xticks(range(len(names)), names, fontsize=8)
    ax.set_xlim(-0.6, len(names) - 0.4 + 0.5)
    ax.set_ylim(max(0.0, low - 0.1), 1.0)
    ax.set_ylabel("held-out Dice", fontsize=8)
    folds = len(next(iter(summary.values()))["per_fold"]) if summary else 0
    ax.set_title(f"{folds}-fold cross-validation\nmean ± SD; dots: the folds", fontsize=8)
    return figure


def plot_feature_maps(maps: dict[str, np.ndarray], *, image: np.ndarray | None = None,
                      channels_per_level: int = 8) -> Figure:
    """The most active channels of each level of a U-Net for one frame, one row per level.

    Parameters
    ----------
    maps : dict of str to ndarray of shape (h, w, channels)
        Level name -> activations, as :func:`unetlib.inference.activations.feature_maps` returns.
    image : ndarray of shape (H, W) or (H, W, C), optional
        The frame the maps were computed from; when given, it starts every row, so each
        level's maps sit beside what they were computed from.
    channels_per_level : int
        At most this many channels per level. They are the level's most active channels
        (highest mean absolute activation), most active first: dead ReLU channels (all
        zero) carry no information and would crowd out the ones that do.

    Returns
    -------
    Figure
        Rows labelled with the level and its size in pixels; panels titled
        ``"down1 · ch 5"``. Each panel is coloured from its own 1st to 99th percentile
        (:func:`~unetlib.data.stack.contrast_limits`), as levels and channels differ in scale
        by orders of magnitude and a shared range would leave most panels flat. The panels'
        image data stay the activations themselves, not stretched copies.

    Raises
    ------
    ParameterError
        When ``maps`` is empty or ``channels_per_level < 1``.
    """
    if not isinstance(channels_per_level, (int, np.integer)) or channels_per_level < 1:
        raise ParameterError(f"channels_per_level={channels_per_level!r} is invalid: expected "
                             "a whole number of channels >= 1.")
    if not maps:
        raise ParameterError("maps={} is invalid: expected at least one level's feature maps.")
    arrays = {}
    for level, values in maps.items():
        values = np.asarray(values, dtype=np.float32)
        arrays[level] = values[..., np.newaxis] if values.ndim == 2 else values
    shown = {level: min(channels_per_level, values.shape[-1]) for level, values in arrays.items()}
    first = 1 if image is not None else 0
    columns = first + max(shown.values())
    shape = np.shape(image) if image is not None else next(iter(arrays.values())).shape
    # Small panels: a notebook stores this figure, and the patterns read at this size.
    panel_inches = min(1.6, 11.0 / columns)
    figure, axes = new_figure(len(arrays), columns, panel_inches=panel_inches,
                              aspect=shape[0] / shape[1])
    for ax in axes.ravel():
        ax.set_axis_off()
    for row, (level, values) in enumerate(arrays.items()):
        activity = np.abs(values).mean(axis=(0, 1))
        order = np.argsort(-activity, kind="stable")[:shown[level]]
        if image is not None:
            show_image(axes[row, 0], image, "input" if row == 0 else "")
        for column, channel in enumerate(order, start=first):
            panel = values[..., channel]
            low, high = contrast_limits(panel, (1.0, 99.0))
            # Antialiased, not nearest: full-resolution maps shown ~6x smaller would alias
            # the 2-4 pixel patterns of transposed convolutions into coarse false blocks.
            axes[row, column].imshow(panel, cmap="magma", vmin=low, vmax=max(high, low + 1e-6),
                                     interpolation="antialiased")
            axes[row, column].set_title(f"{level} · ch {channel}", fontsize=7)
        # The row label is a y-label, so constrained layout makes room for it; the axes
        # stay on for it, without ticks or frame.
        label_ax = axes[row, 0]
        label_ax.set_axis_on()
        label_ax.set_xticks([])
        label_ax.set_yticks([])
        for spine in label_ax.spines.values():
            spine.set_visible(False)
        label_ax.set_ylabel(f"{level}\n{values.shape[0]} × {values.shape[1]} px", fontsize=8)
    figure.suptitle("most active channels per level (mean |activation|), each coloured "
                    "from its 1st to 99th percentile", fontsize=9)
    return figure


def plot_threshold_curve(dice_by_threshold: dict, threshold: float | None = None) -> Figure:
    """Mean validation Dice against the decision threshold (``metrics.json``'s
    ``dice_by_threshold`` of a binary run), the calibrated threshold marked.

    A flat curve means the masks barely depend on the threshold; a sharp peak, that the
    calibrated value matters and a threshold chosen by hand could cost Dice.
    """
    points = sorted((float(key), float(value)) for key, value in dice_by_threshold.items())
    figure, axes = new_figure(1, 1, panel_inches=3.6, aspect=0.55)
    ax = axes[0, 0]
    ax.plot(*zip(*points), "-o", markersize=3, label="validation Dice")
    if threshold is not None:
        ax.axvline(threshold, color="tab:red", linestyle="--", linewidth=1,
                   label=f"calibrated {threshold:.2f}")
    ax.set_ylim(*score_limits([value for _, value in points]))
    ax.set_xlabel("decision threshold", fontsize=8)
    ax.set_ylabel("mean Dice", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower center")
    return figure


# Colours of the error map: right (true positive), missed (false negative), extra (false
# positive).
ERROR_COLORS = {"right": (0.55, 0.55, 0.55), "missed": (0.15, 0.45, 1.0),
                "extra": (1.0, 0.25, 0.15)}


def plot_error_map(image: np.ndarray, prediction: np.ndarray, truth: np.ndarray, *,
                   title: str = "") -> Figure:
    """Where a predicted mask is wrong: the frame with the pixels the model missed (false
    negatives, blue) and the ones it added (false positives, red); right foreground grey.

    For organ masks a pixel counts as right only when its organ is right: a kidney pixel
    taken for liver is missed kidney and extra liver at once, shown as extra.
    """
    prediction, truth = np.asarray(prediction), np.asarray(truth)
    right = (prediction == truth) & (truth > 0)
    missed = (truth > 0) & (prediction != truth) & (prediction == 0)
    extra = (prediction > 0) & (prediction != truth)
    picture = np.repeat(display_scale(image if image.ndim == 2 else image[..., 0])[..., None],
                        3, axis=-1).astype(np.float32) / 255.0
    for name, where in (("right", right), ("missed", missed), ("extra", extra)):
        picture[where] = 0.45 * picture[where] + 0.55 * np.array(ERROR_COLORS[name])
    figure, axes = new_figure(1, 1, panel_inches=3.6, aspect=image.shape[0] / image.shape[1])
    ax = axes[0, 0]
    ax.imshow(picture, interpolation="nearest")
    ax.set_axis_off()
    counts = {"missed": int(missed.sum()), "extra": int(extra.sum())}
    ax.set_title((f"{title}: " if title else "") + f"{counts['missed']} px missed (blue), "
                 f"{counts['extra']} px extra (red)", fontsize=8)
    return figure


def plot_confusion(confusion: np.ndarray, labels: Sequence[str]) -> Figure:
    """The organ confusion matrix as a heatmap: each truth row as fractions of its pixels
    (so a small organ's row reads as clearly as the background's), counts in the cells."""
    confusion = np.asarray(confusion, dtype=np.float64)
    fractions = confusion / np.maximum(confusion.sum(axis=1, keepdims=True), 1.0)
    figure, axes = new_figure(1, 1, panel_inches=3.2, aspect=1.0)
    ax = axes[0, 0]
    ax.imshow(fractions, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(len(labels)):
        for column in range(len(labels)):
            ax.text(column, row, f"{fractions[row, column]:.2f}", ha="center", va="center",
                    fontsize=7, color="white" if fractions[row, column] > 0.6 else "black")
    ax.set_xticks(range(len(labels)), list(labels), fontsize=7, rotation=30)
    ax.set_yticks(range(len(labels)), list(labels), fontsize=7)
    ax.set_xlabel("predicted", fontsize=8)
    ax.set_ylabel("truth", fontsize=8)
    ax.set_title("share of each organ's pixels", fontsize=9)
    return figure
