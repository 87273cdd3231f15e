"""Choose the frames to annotate and export them into a data folder.

Annotating ~15 frames is the user's most expensive step, so the frames should cover the
acquisition: either spread evenly in time (``spread``) or chosen to differ most from each
other (``diverse``: greedy farthest-point sampling on small thumbnails, which catches the
brightness changes of dye uptake and clearance). The picked frames are written as
``0.png … n-1`` (16-bit grayscale) or ``0.tif … n-1`` (3/4-channel composites, lossless)
into ``<data_dir>/train/frames/`` with ``train/frames.csv`` mapping each back to its cycle
and stack frames, and an 8-bit display-scaled copy in ``train/annotate/`` to draw on in
GIMP. Existing frames are never overwritten unless ``force`` is set; repeating the same
pick is a no-op, so notebooks can be re-run.

Given several stacks (the mice of a study), the frames are shared out over them, each
stack's share chosen by the method within it, so a model learns every mouse's lie and
brightness rather than one mouse's; ``frames.csv`` names each frame's stack and cycle.
"""

from __future__ import annotations

import datetime
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np

from unetlib.core.config import PickConfig, SplitConfig
from unetlib.core.errors import InputError, ParameterError, UnetlibWarning
from unetlib.core.io import (
    ensure_folder,
    file_sha256,
    read_csv,
    read_image,
    refuse_existing,
    write_csv,
    write_image,
)
from unetlib.core.locking import output_lock
from unetlib.data.stack import LaserStack, display_scale, load_stack

logger = logging.getLogger(__name__)

_KEEP_FRAMES_FIX = ("Picking would overwrite your frames: move them away, choose another data folder, "
                    "or pass --force.")

# ``sha256`` is the written frame's content: check-masks refuses a frame that changed since
# it was picked, as its mask was drawn on another image.
# ``uncertainty``/``picked_by``: set for frames added by ``--method uncertain`` (the score,
# and the model that chose them), so re-running the same pick adds nothing.
FRAMES_FIELDS = ("stem", "file", "cycle", "lasers", "stack_frames", "stack", "sha256",
                 "uncertainty", "picked_by")
THUMBNAIL_STEP = 16


@dataclass(frozen=True)
class PickResult:
    """What :func:`pick_frames` wrote: frame ``i`` is cycle ``cycles[i]`` of ``stacks[i]``
    (the stack as ``frames.csv`` names it)."""

    frames: list[Path]
    annotate: list[Path]
    table: Path
    cycles: list[int]
    stacks: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Source:
    """One cycle of one stack, to be written as a frame; ``label`` names the stack in
    ``frames.csv``."""

    stack: LaserStack
    label: str
    cycle: int


def stack_labels(paths: Sequence[str | os.PathLike[str]]) -> list[str]:
    """How ``frames.csv`` names each of the stacks picked from together.

    The file name while the names differ (one stack: its name, as always), else the path
    from the folder the stacks share (``mouse1/acq.tif``, ``mouse2/acq.tif``).

    Raises
    ------
    ParameterError
        A stack is given twice.

    Examples
    --------
    >>> stack_labels(["/data/m1/acq.tif", "/data/m2/acq.tif"])
    ['m1/acq.tif', 'm2/acq.tif']
    >>> stack_labels(["/data/m1.tif", "/other/m2.tif"])
    ['m1.tif', 'm2.tif']
    """
    resolved = [Path(path).resolve() for path in paths]
    twice = sorted({str(path) for path in resolved if resolved.count(path) > 1})
    if twice:
        raise ParameterError(f"{twice[0]} is given twice: give each stack once.")
    names = [path.name for path in resolved]
    if len(set(names)) == len(names):
        return names
    root = Path(os.path.commonpath([str(path.parent) for path in resolved]))
    return [path.relative_to(root).as_posix() for path in resolved]


def names_stack(label: str | None, stack: LaserStack) -> bool:
    """True when ``label`` (a ``frames.csv`` ``stack`` cell) names ``stack``: its file name,
    or the end of its path."""
    if not label:
        return False
    parts = PurePosixPath(str(label)).parts
    return stack.path.resolve().parts[-len(parts):] == parts


def share_out(count: int, stacks: int) -> list[int]:
    """``count`` frames shared out over ``stacks`` stacks as evenly as whole frames allow,
    the first stacks taking one more.

    >>> share_out(8, 3)
    [3, 3, 2]
    """
    return [count // stacks + (index < count % stacks) for index in range(stacks)]


def frame_lasers(config: PickConfig, split: SplitConfig = SplitConfig()) -> tuple[int, ...]:
    """The lasers (1-based) that make one exported frame: one laser or a composite."""
    if config.channels == 1:
        return (config.laser,)
    return tuple(split.composite3 if config.channels == 3 else split.composite4)


def pick_cycles(stack: LaserStack, config: PickConfig,
                split: SplitConfig = SplitConfig()) -> list[int]:
    """Choose ``config.count`` cycles of ``stack`` to annotate.

    Returns
    -------
    list of int
        Cycle indices in increasing order.

    Raises
    ------
    ParameterError
        When fewer cycles are available than asked for.
    """
    config.validate()
    excluded = set(config.exclude)
    available = [cycle for cycle in range(stack.cycles) if cycle not in excluded]
    if config.count > len(available):
        left = (f"only {len(available)} of its {stack.cycles} cycles are left after excluding "
                f"{len(excluded & set(range(stack.cycles)))}" if excluded else
                f"it has only {stack.cycles} cycles")
        raise ParameterError(f"{stack.path}: count={config.count} is invalid: {left}; pick "
                             "fewer frames" + (" or exclude fewer cycles." if excluded else "."))
    if config.method == "spread":
        positions = np.rint(np.linspace(0, len(available) - 1, config.count)).astype(int)
        return [available[i] for i in positions]
    thumbnails = _thumbnails(stack, frame_lasers(config, split), available)
    chosen = _farthest_points(thumbnails, config.count)
    return sorted(available[i] for i in chosen)


def _thumbnails(stack: LaserStack, lasers: tuple[int, ...], cycles: list[int]) -> np.ndarray:
    """Sub-sampled frames as vectors, scaled by one global factor so brightness counts."""
    rows = []
    for cycle in cycles:
        frames = [np.asarray(stack.data[cycle, n - 1, ::THUMBNAIL_STEP, ::THUMBNAIL_STEP])
                  for n in lasers]
        rows.append(np.concatenate([f.astype(np.float32).ravel() for f in frames]))
    # NaN or infinite pixels (float stacks) count as 0 so distances stay comparable.
    vectors = np.nan_to_num(np.stack(rows), nan=0.0, posinf=0.0, neginf=0.0)
    return vectors / max(float(np.percentile(vectors, 99.8)), 1e-6)


def _farthest_points(vectors: np.ndarray, count: int) -> list[int]:
    """Greedy farthest-point sampling, starting from the first vector (deterministic)."""
    chosen = [0]
    distance = np.linalg.norm(vectors - vectors[0], axis=1)
    while len(chosen) < count:
        candidate = int(np.argmax(distance))
        chosen.append(candidate)
        distance = np.minimum(distance, np.linalg.norm(vectors - vectors[candidate], axis=1))
    return chosen


def load_for_picking(stack_path: str | os.PathLike[str], config: PickConfig,
                     split: SplitConfig) -> tuple[LaserStack, tuple[int, ...]]:
    """Validate a pick's settings against its stack; return the stack and the lasers of
    the frames to write.

    Raises
    ------
    ParameterError
        When a laser asked for (alone or in the composite) is not in the stack.
    """
    config.validate()
    split.validate()
    stack = load_stack(stack_path, split)
    lasers = frame_lasers(config, split)
    for number in lasers:
        if number > stack.lasers and config.channels > 1:
            raise ParameterError(f"channels={config.channels} is invalid: its composite is of "
                                 f"lasers {','.join(map(str, lasers))}, but {stack.path} has "
                                 f"lasers 1 to {stack.lasers}. Pick --channels 1, or check "
                                 "--lasers.")
        if number > stack.lasers:
            raise ParameterError(f"laser={number} is invalid: {stack.path} has lasers 1 to "
                                 f"{stack.lasers}.")
    return stack, lasers


def pick_frames(stack_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                data_dir: str | os.PathLike[str],
                config: PickConfig = PickConfig(), split: SplitConfig = SplitConfig()) -> PickResult:
    """Pick frames of one stack or several and export them into ``data_dir`` for annotation
    (or testing).

    Parameters
    ----------
    stack_path : path-like or sequence of path-like
        The acquisition (see :func:`unetlib.data.stack.load_stack`), or several: the
        ``config.count`` frames are then shared out over them (:func:`share_out`), each
        stack's share chosen by ``config.method`` among its own cycles, and
        ``config.exclude`` applies to every stack.
    data_dir : path-like
        A data folder such as ``data1d/`` or ``data3d/``. ``subset="train"`` writes
        ``train/frames/<i>.<ext>``, ``train/annotate/<i>.png`` and ``train/frames.csv``;
        ``subset="test"`` writes ``test/<i>.<ext>`` and ``test/frames.csv``.
    config : PickConfig
        How many frames, how to choose them, which laser or composite.
    split : SplitConfig
        Laser count, offset and composite lasers of the acquisitions.

    Raises
    ------
    ParameterError
        Fewer frames than stacks, too few cycles, or a stack given twice.
    OutputError
        When a destination file exists and ``config.force`` is off (nothing is written),
        or the folder cannot be written (files written so far are removed).
    """
    if config.method == "uncertain":
        raise ParameterError("method='uncertain' is invalid here: it needs a model. Use "
                             "unetlib.pick_frames (unetlib.inference.uncertainty), which picks by any method.")
    paths = stack_paths(stack_path)
    loaded = [load_for_picking(path, config, split) for path in paths]
    lasers = loaded[0][1]
    labels = stack_labels(paths)
    if config.count < len(paths):
        raise ParameterError(f"count={config.count} is invalid for {len(paths)} stacks: give "
                             "at least one frame per stack, or fewer stacks.")
    data_dir = Path(data_dir)
    sources = []
    for (stack, _), label, share in zip(loaded, labels, share_out(config.count, len(paths))):
        own = replace(config, count=share)
        if config.subset == "test":
            own = _without_training_cycles(own, data_dir, stack, label)
        sources += [Source(stack, label, cycle) for cycle in pick_cycles(stack, own, split)]

    frames_dir = data_dir / "train" / "frames" if config.subset == "train" else data_dir / "test"
    annotate_dir = data_dir / "train" / "annotate" if config.subset == "train" else None
    table = frames_dir.parent / "frames.csv" if config.subset == "train" else frames_dir / "frames.csv"
    masks_dir = data_dir / "train" / "masks"
    targets = [frames_dir / f"{i}{_frame_suffix(source.stack, len(lasers))}"
               for i, source in enumerate(sources)]
    previews = [annotate_dir / f"{i}.png" for i in range(len(sources))] if annotate_dir else []
    rows = [_row(str(index), target, source, lasers)
            for index, (target, source) in enumerate(zip(targets, sources))]
    unchanged = [_holds(target, _frame(source, lasers)) for target, source in zip(targets, sources)]
    result = PickResult(frames=targets, annotate=previews, table=table,
                        cycles=[source.cycle for source in sources],
                        stacks=[source.label for source in sources])
    if not config.force and all(unchanged) and _already_picked(table, rows, previews):
        logger.info("%s already holds these frames of %s; nothing to do", frames_dir,
                    ", ".join(labels))
        return result
    # A mask belongs to the frame it was drawn on: where a frame changes, its mask goes too.
    orphaned = [mask for target, same in zip(targets, unchanged) if not same
                for mask in _masks_of(masks_dir, target.stem)] if config.subset == "train" else []
    refuse_existing([*targets, *previews, table, *orphaned], overwrite=config.force,
                    folder=data_dir, fix=_KEEP_FRAMES_FIX)

    with output_lock(data_dir):
        if orphaned:
            _move_aside(orphaned, masks_dir)
        _write_frames(sources, lasers, targets, previews, rows, split, overwrite=config.force,
                      table=(table, rows + _other_rows(table, rows, frames_dir)))
    for label in labels:
        logger.info("picked cycles %s of %s into %s",
                    [source.cycle for source in sources if source.label == label], label,
                    frames_dir)
    return result


def stack_paths(stack_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]
                ) -> list[Path]:
    """One path or several, as a non-empty list."""
    if isinstance(stack_path, (str, os.PathLike)):
        return [Path(stack_path)]
    paths = [Path(path) for path in stack_path]
    if not paths:
        raise ParameterError("no stack given: give at least one acquisition to pick from.")
    return paths


def _frame(source: Source, lasers: tuple[int, ...]) -> np.ndarray:
    """The frame of ``source`` in ``lasers``, read from the memory-mapped stack: picking
    every cycle of a long acquisition must not hold all of them in memory at once."""
    image = source.stack.composite(source.cycle, lasers)
    return image[..., 0] if image.shape[-1] == 1 else image


def _row(stem: str, target: Path, source: Source, lasers: tuple[int, ...],
         **more: str) -> dict[str, str]:
    """The ``frames.csv`` row of one written frame (``sha256`` filled in once written)."""
    return {"stem": stem, "file": target.name, "cycle": str(source.cycle),
            "lasers": " ".join(map(str, lasers)),
            "stack_frames": " ".join(str(int(source.stack.frame_numbers[source.cycle, n - 1]))
                                     for n in lasers),
            "stack": source.label, "sha256": "", **more}


def _without_training_cycles(config: PickConfig, data_dir: Path, stack: LaserStack,
                             label: str) -> PickConfig:
    """``config`` also excluding the cycles of this stack that ``train/frames.csv`` lists:
    a test frame must be one the model never trained on (rows without a stack, from
    older tables, count as this stack's)."""
    table = data_dir / "train" / "frames.csv"
    if not table.is_file():
        return config
    training = {int(row["cycle"]) for row in read_csv(table)
                if str(row.get("cycle", "")).strip().isdigit()
                and (row.get("stack") in (None, "", label) or names_stack(row.get("stack"), stack))}
    added = training - set(config.exclude)
    if not added:
        return config
    logger.info("leaving out the %d cycle(s) of %s that %s lists for training", len(added),
                stack.path.name, table)
    return replace(config, exclude=tuple(sorted(set(config.exclude) | training)))


def append_frames(sources: Sequence[Source], data_dir: Path, lasers: tuple[int, ...],
                  split: SplitConfig, extra: list[dict[str, str]]) -> PickResult:
    """Add the cycles of ``sources`` as new training frames after the existing ones.

    The new stems continue the existing numbering; existing frames, masks and rows of
    ``train/frames.csv`` are left as they are. ``extra`` holds each new row's
    ``uncertainty`` and ``picked_by``.
    """
    frames_dir, annotate_dir = data_dir / "train" / "frames", data_dir / "train" / "annotate"
    table = data_dir / "train" / "frames.csv"
    existing = read_csv(table) if table.is_file() else []
    taken = [row.get("stem", "") for row in existing]
    if frames_dir.is_dir():
        taken += [path.stem for path in frames_dir.iterdir()]
    first = 1 + max([int(stem) for stem in taken if stem.isdigit()], default=-1)
    stems = [str(first + index) for index in range(len(sources))]
    targets = [frames_dir / f"{stem}{_frame_suffix(source.stack, len(lasers))}"
               for stem, source in zip(stems, sources)]
    previews = [annotate_dir / f"{stem}.png" for stem in stems]
    refuse_existing([*targets, *previews], folder=data_dir, fix=_KEEP_FRAMES_FIX)
    rows = [_row(stem, target, source, lasers, **more)
            for stem, target, source, more in zip(stems, targets, sources, extra)]
    kept = [{key: row.get(key, "") for key in FRAMES_FIELDS} for row in existing]
    with output_lock(data_dir):
        # The table is rewritten with its old rows unchanged and the new ones appended.
        _write_frames(sources, lasers, targets, previews, rows, split, overwrite=False,
                      table=(table, kept + rows), replace_table=True)
    logger.info("added %s as frames %s", ", ".join(f"cycle {source.cycle} of {source.label}"
                                                    for source in sources), stems)
    return PickResult(frames=targets, annotate=previews, table=table,
                      cycles=[source.cycle for source in sources],
                      stacks=[source.label for source in sources])


def _write_frames(sources: Sequence[Source], lasers: tuple[int, ...],
                  targets: list[Path], previews: list[Path], rows: list[dict[str, str]],
                  split: SplitConfig, *, overwrite: bool,
                  table: tuple[Path, list[dict[str, str]]], replace_table: bool = False) -> None:
    """Write each source's frame (and its 8-bit preview to draw on), fill in each row's
    sha256, then the table; on any failure remove the files written so far."""
    written: list[Path] = []
    try:
        for index, source in enumerate(sources):
            image = _frame(source, lasers)
            written.append(write_image(targets[index], image, overwrite=overwrite))
            rows[index]["sha256"] = file_sha256(targets[index])
            if previews:
                written.append(write_image(previews[index],
                                           display_scale(image, split.display_percentiles),
                                           overwrite=overwrite))
        path, table_rows = table
        write_csv(path, table_rows, FRAMES_FIELDS, overwrite=overwrite or replace_table)
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise


def recorded_lasers(data_dir: str | os.PathLike[str]) -> tuple[int, ...] | None:
    """The lasers (1-based, in channel order) the picked training frames were made of.

    Read from ``<data_dir>/train/frames.csv``; None when the table is missing or its rows
    disagree (frames picked with different lasers). Quantification builds the same model
    input from every cycle of a stack.
    """
    table = Path(data_dir) / "train" / "frames.csv"
    if not table.is_file():
        return None
    try:
        found = {str(row.get("lasers", "")).strip() for row in read_csv(table)}
    except (InputError, UnicodeDecodeError):
        return None
    if len(found) != 1 or not next(iter(found)):
        return None
    try:
        return tuple(int(part) for part in next(iter(found)).split())
    except ValueError:
        return None


def recorded_laser_count(data_dir: str | os.PathLike[str]) -> int | None:
    """How many lasers a cycle of the training acquisition had, from ``train/frames.csv``.

    Two picked cycles of one stack are ``lasers`` stack frames apart per cycle between
    them. None when the table is missing, unreadable, holds fewer than two cycles of a
    stack, or its stacks disagree.
    """
    table = Path(data_dir) / "train" / "frames.csv"
    if not table.is_file():
        return None
    first_frames: dict[str, dict[int, int]] = {}
    try:
        for row in read_csv(table):
            laser = int(str(row["lasers"]).split()[0])
            frame = int(str(row["stack_frames"]).split()[0])
            # The stack frame laser 1 of this cycle would have.
            first_frames.setdefault(str(row.get("stack", "")), {})[int(row["cycle"])] = frame - laser + 1
    except (InputError, UnicodeDecodeError, KeyError, IndexError, ValueError):
        return None
    counts = set()
    for frames in first_frames.values():
        cycles = sorted(frames)
        counts |= {(frames[b] - frames[a]) / (b - a) for a, b in zip(cycles, cycles[1:])}
    if len(counts) != 1 or not float(next(iter(counts))).is_integer():
        return None
    count = int(next(iter(counts)))
    return count if count >= 1 else None


def _frame_suffix(stack: LaserStack, channels: int) -> str:
    """``.png`` for 8/16-bit single-laser frames; ``.tif`` for composites and for the
    32-bit and float frames a PNG cannot hold."""
    return ".png" if channels == 1 and stack.data.dtype in (np.uint8, np.uint16) else ".tif"


def _holds(path: Path, image: np.ndarray) -> bool:
    """True when ``path`` already holds exactly ``image``."""
    if not path.is_file():
        return False
    try:
        return np.array_equal(read_image(path), image)
    except InputError:
        return False


def _masks_of(masks_dir: Path, stem: str) -> list[Path]:
    if not masks_dir.is_dir():
        return []
    return [path for path in sorted(masks_dir.iterdir())
            if path.stem == stem and not path.name.startswith(".")]


def _move_aside(masks: list[Path], masks_dir: Path) -> Path:
    """Move masks whose frames are being replaced into a dated folder beside ``masks/``."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = ensure_folder(masks_dir.parent / f"masks_replaced_{stamp}")
    for mask in masks:
        os.replace(mask, aside / mask.name)
    warnings.warn(f"{masks_dir}: moved {len(masks)} mask(s) ({', '.join(m.name for m in masks[:5])}"
                  f"{' ...' if len(masks) > 5 else ''}) to {aside}: their frames were replaced by "
                  "other cycles, so those masks no longer match. Draw new masks for them.",
                  UnetlibWarning, stacklevel=3)
    return aside


def _other_rows(table: Path, rows: list[dict[str, str]], frames_dir: Path) -> list[dict[str, str]]:
    """Rows of ``table`` for earlier frames this pick leaves in place (stems beyond its count)."""
    if not table.is_file():
        return []
    stems = {row["stem"] for row in rows}
    return [{key: row.get(key, "") for key in FRAMES_FIELDS} for row in read_csv(table)
            if row.get("stem") not in stems and (frames_dir / str(row.get("file"))).is_file()]


def _already_picked(table: Path, rows: list[dict[str, str]], files: list[Path]) -> bool:
    """True when a previous run picked exactly these frames (re-running is then a no-op)."""
    if not table.is_file() or not all(path.is_file() for path in files):
        return False
    identity = ("stem", "file", "cycle", "lasers", "stack_frames", "stack")
    stored = read_csv(table)
    return [{key: row.get(key) for key in identity} for row in stored] == [
        {key: row[key] for key in identity} for row in rows]


