"""What to annotate next: the cycles a trained model is least sure about.

An hour in GIMP is best spent on frames the current model gets wrong, and a model is
usually unsure where it is wrong. Every cycle of the stack not yet annotated is segmented
with the run (flip test-time augmentation: the frame and its 3 flips, averaged) and
scored by the mean entropy of those averaged probabilities inside the mouse's body, in
[0, 1] (1: every class equally likely everywhere). Averaging over flips makes the score
also count where the flips disagree; the body mask keeps the air, which every model
finds easy, from diluting it.

The chosen cycles are written as new frames after the existing ones (annotated frames
and masks stay untouched), with their scores in ``frames.csv`` and every candidate's
score in ``train/uncertainty.csv``. Given several stacks (the mice of a study), the cycles
of all of them are ranked together, so the next frames come from the mice the model
knows least.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from unetlib.core.config import PickConfig, SplitConfig
from unetlib.core.errors import InputError, ParameterError, describe
from unetlib.core.io import file_sha256, progress_bar, read_csv, read_image, write_csv
from unetlib.core.locking import output_lock
from unetlib.data.body import body_mask
from unetlib.data.frames import (
    PickResult,
    Source,
    append_frames,
    frame_lasers,
    load_for_picking,
    names_stack,
    recorded_lasers,
    stack_labels,
    stack_paths,
)
from unetlib.data.frames import pick_frames as pick_spread_or_diverse
from unetlib.data.normalize import normalize_image
from unetlib.data.organs import find_organ_table, organ_table_path
from unetlib.data.stack import LaserStack

if TYPE_CHECKING:
    from unetlib.runs.run import LoadedRun

# Imports inside functions are lazy: only ranking by a model needs TensorFlow; picking by
# spread or diversity (pick_frames' default, notebook 01, ``pick-frames``) and
# mean_entropy do not, and would otherwise wait 4-5 s for it to load.

logger = logging.getLogger(__name__)

__all__ = ["choose_uncertain", "mean_entropy", "pick_frames", "pick_uncertain",
           "uncertainty_scores"]

# Cycles segmented together: the tiles of several cycles share forward passes.
CHUNK = 4


def mean_entropy(probabilities: np.ndarray, region: np.ndarray | None = None) -> float:
    """Mean normalised entropy of per-pixel probabilities, in [0, 1].

    Parameters
    ----------
    probabilities : ndarray of shape (H, W) or (H, W, classes)
        A binary model's foreground probability, or a softmax over classes.
    region : ndarray of shape (H, W), bool, optional
        Pixels to average over (all when None or empty).
    """
    p = np.asarray(probabilities, dtype=np.float64)
    if p.ndim == 2:
        p = np.stack([1.0 - p, p], axis=-1)
    p = np.clip(p, 1e-12, 1.0)
    entropy = -(p * np.log(p)).sum(axis=-1) / math.log(p.shape[-1])
    if region is not None and region.any():
        entropy = entropy[region]
    return float(np.clip(entropy.mean(), 0.0, 1.0))


def uncertainty_scores(run: LoadedRun, stack: LaserStack, cycles: Sequence[int],
                       lasers: Sequence[int], *, progress: bool = False) -> np.ndarray:
    """Each cycle's uncertainty under ``run``: mean entropy of its flip-averaged
    probabilities inside the body (see the module docstring).

    Parameters
    ----------
    run : LoadedRun
        The model, with the normalisation its training frames had.
    stack : LaserStack
        The acquisition (read cycle by cycle, memory-mapped).
    cycles : sequence of int
        The cycles to score.
    lasers : sequence of int
        The lasers (1-based) that make the model's input, in channel order.

    Returns
    -------
    ndarray of shape (len(cycles),), float
    """
    from unetlib.nn.sliding_window import predict_probabilities_batch

    scores = []
    chunks = [list(cycles[i:i + CHUNK]) for i in range(0, len(cycles), CHUNK)]
    for chunk in progress_bar(chunks, description=f"scoring cycles ({CHUNK} a step)",
                              unit="step", enabled=progress):
        raw = [stack.composite(cycle, tuple(lasers)) for cycle in chunk]
        images = np.stack([normalize_image(frame, run.normalize) for frame in raw])
        probabilities = predict_probabilities_batch(run.model, images, tta=True)
        scores += [mean_entropy(probability, body_mask(frame))
                   for probability, frame in zip(probabilities, raw)]
    return np.asarray(scores, dtype=np.float64)


def choose_uncertain(cycles: Sequence, scores: Sequence[float], count: int, *,
                     gap: int) -> list:
    """The ``count`` most uncertain cycles, no two of one stack closer than ``gap`` cycles.

    Neighbouring cycles of an acquisition look alike, so the most uncertain ones tend
    to come in runs; annotating a run of near-copies teaches the model one thing.
    Greedy: the highest score first, then the highest one at least ``gap`` cycles from
    every cycle of its stack chosen so far; when the gap leaves too few, the rest by score
    alone.

    Parameters
    ----------
    cycles : sequence of int, or of (stack, cycle) pairs
        The candidates: cycles of one stack, or pairs naming the stack (several stacks,
        ranked together; the gap holds within a stack only).

    Returns
    -------
    list
        Candidates in the order chosen (most uncertain first).

    Examples
    --------
    >>> choose_uncertain([("a", 0), ("a", 1), ("b", 1)], [0.9, 0.8, 0.7], 2, gap=2)
    [('a', 0), ('b', 1)]
    """
    keys = [candidate if isinstance(candidate, tuple) else ("", candidate)
            for candidate in cycles]
    order = sorted(range(len(keys)), key=lambda i: (-float(scores[i]), keys[i]))
    chosen: list[int] = []
    for index in order:
        if len(chosen) == count:
            break
        stack, cycle = keys[index]
        if all(keys[other][0] != stack or abs(cycle - keys[other][1]) >= gap
               for other in chosen):
            chosen.append(index)
    for index in order:
        if len(chosen) == count:
            break
        if index not in chosen:
            chosen.append(index)
    return [cycles[index] for index in chosen]


def _cycles_of(rows: list[dict[str, str]], stack: LaserStack) -> set[int]:
    """The cycles of ``stack`` that rows of a ``frames.csv`` were picked from."""
    return {int(row["cycle"]) for row in rows
            if names_stack(row.get("stack"), stack) and str(row.get("cycle", "")).isdigit()}


def _check_same_folder(run: LoadedRun, stack: LaserStack, data_dir: Path,
                       rows: list[dict[str, str]], lasers: tuple[int, ...]) -> None:
    """Refuse to add frames unlike the data folder's: other lasers (channels), a run of
    other organs, or another stack under the file name its frames were picked from.

    Raises
    ------
    ParameterError
        The lasers or the organs differ.
    InputError
        ``stack`` is not the stack of that name the folder's frames came from.
    """

    table = data_dir / "train" / "frames.csv"
    recorded = recorded_lasers(data_dir) if rows else None
    if recorded is not None and recorded != lasers:
        raise ParameterError(describe(table, f"holds frames of laser(s) "
                                      f"{','.join(map(str, recorded))} ({len(recorded)} "
                                      f"channel(s)), not of laser(s) {','.join(map(str, lasers))}"
                                      " as asked", "Pick with the --channels (and --laser) of "
                                      "the folder's frames, or into another data folder."))
    organs = find_organ_table(data_dir)
    if organs is not None and run.organs is not None and \
            sorted(map(str.lower, organs.names)) != sorted(map(str.lower, run.organs.names)):
        raise ParameterError(describe(organ_table_path(data_dir), f"names the organs "
                                      f"{', '.join(organs.names)}, but {run.model_path.parent} "
                                      f"segments {', '.join(run.organs.names)}",
                                      "Choose with a run trained on this data folder's organs."))
    for row in rows:
        frame = data_dir / "train" / "frames" / str(row.get("file", ""))
        row_lasers = tuple(int(n) for n in str(row.get("lasers", "")).split() if n.isdigit())
        if not names_stack(row.get("stack"), stack) or not str(row.get("cycle", "")).isdigit() \
                or not frame.is_file() or int(row["cycle"]) >= stack.cycles \
                or not row_lasers or max(row_lasers) > stack.lasers:
            continue
        image = stack.composite(int(row["cycle"]), row_lasers)
        image = image[..., 0] if image.shape[-1] == 1 else image
        if not np.array_equal(read_image(frame), image):
            raise InputError(describe(stack.path, f"is not the {stack.path.name} that {frame} "
                                      f"was picked from (cycle {row['cycle']} differs)",
                                      "Give the acquisition the folder's frames came from, or "
                                      "pick into another data folder."))
        break  # one frame tells the stacks apart


def pick_uncertain(stacks: LaserStack | Sequence[LaserStack], data_dir: Path,
                   config: PickConfig, split: SplitConfig) -> PickResult:
    """``pick-frames --method uncertain``: add the ``config.count`` cycles ``config.run``
    is least sure about to ``data_dir``'s training frames.

    Candidates are the cycles of every stack given not yet in ``train/frames.csv`` nor
    in ``test/frames.csv`` (for that stack) nor in ``config.exclude``, ranked together.
    Picks of one stack are at least a third of an even spread's spacing apart
    (:func:`choose_uncertain`). Re-running with the same model adds nothing: the rows it
    added name it in ``picked_by``.

    Raises
    ------
    ParameterError
        The run's input channels differ from the frames asked for, or too few cycles
        are left to choose from.
    """
    from unetlib.nn.model import model_input_channels
    from unetlib.runs.run import load_run

    stacks = [stacks] if isinstance(stacks, LaserStack) else list(stacks)
    names = stack_labels([stack.path for stack in stacks])
    run = load_run(config.run)
    lasers = frame_lasers(config, split)
    channels = model_input_channels(run.model)
    if channels != len(lasers):
        raise ParameterError(describe(run.model_path, f"takes {channels}-channel frames, not "
                                      f"the {len(lasers)}-channel frames asked for",
                                      "Pick with the --channels (and --laser) the run was "
                                      "trained on."))
    tag = f"uncertain {file_sha256(run.model_path)[:12]}"
    table = data_dir / "train" / "frames.csv"
    rows = read_csv(table) if table.is_file() else []
    for stack in stacks:
        _check_same_folder(run, stack, data_dir, rows, lasers)
    mine = [row for row in rows if row.get("picked_by") == tag]
    if len(mine) >= config.count:
        logger.info("%s already holds %d frames this model chose; nothing to do", data_dir,
                    len(mine))
        frames_dir = data_dir / "train" / "frames"
        return PickResult(frames=[frames_dir / row["file"] for row in mine],
                          annotate=[data_dir / "train" / "annotate" / f"{row['stem']}.png"
                                    for row in mine],
                          table=table, cycles=[int(row["cycle"]) for row in mine],
                          stacks=[row.get("stack", "") for row in mine])
    # Test frames are never offered for training: they would stop being a test.
    test_table = data_dir / "test" / "frames.csv"
    test_rows = read_csv(test_table) if test_table.is_file() else []
    candidates, scores, annotated = [], [], 0
    for index, stack in enumerate(stacks):
        done = _cycles_of(rows, stack)
        annotated += len(done)
        excluded = done | _cycles_of(test_rows, stack) | set(config.exclude)
        own = [cycle for cycle in range(stack.cycles) if cycle not in excluded]
        candidates += [(index, cycle) for cycle in own]
        scores += uncertainty_scores(run, stack, own, lasers, progress=True).tolist()
    if len(candidates) < config.count:
        where = stacks[0].path if len(stacks) == 1 else f"{len(stacks)} stacks"
        raise ParameterError(f"{where}: count={config.count} is invalid: only "
                             f"{len(candidates)} of the cycles are not annotated or excluded; "
                             "pick fewer frames.")
    longest = max(stack.cycles for stack in stacks)
    gap = max(1, longest * len(stacks) // (3 * (config.count + annotated)))
    chosen = choose_uncertain(candidates, scores, config.count, gap=gap)
    score_of = dict(zip(candidates, scores))
    ranking = sorted(candidates, key=lambda candidate: -score_of[candidate])
    with output_lock(data_dir):
        write_csv(data_dir / "train" / "uncertainty.csv",
                  [{"stack": names[index], "cycle": cycle,
                    "uncertainty": f"{score_of[(index, cycle)]:.6f}", "rank": rank + 1,
                    "chosen": int((index, cycle) in chosen), "model": str(run.model_path.resolve())}
                   for rank, (index, cycle) in enumerate(ranking)],
                  ("stack", "cycle", "uncertainty", "rank", "chosen", "model"), overwrite=True)
        return append_frames([Source(stacks[index], names[index], cycle) for index, cycle in chosen],
                             data_dir, lasers, split,
                             [{"uncertainty": f"{score_of[key]:.6f}", "picked_by": tag}
                              for key in chosen])


def pick_frames(stack_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                data_dir: str | os.PathLike[str],
                config: PickConfig = PickConfig(), split: SplitConfig = SplitConfig()
                ) -> PickResult:
    """Pick frames of one stack or several into ``data_dir`` by any method of ``config``.

    ``spread`` and ``diverse`` need only the stacks
    (:func:`unetlib.data.frames.pick_frames`, which shares the frames out over them);
    ``uncertain`` adds the cycles ``config.run`` is least sure about, over every stack
    given (:func:`pick_uncertain`). ``pick-frames`` and the notebooks call this.
    """
    if config.method != "uncertain":
        return pick_spread_or_diverse(stack_path, data_dir, config, split)
    paths = stack_paths(stack_path)
    stack_labels(paths)  # a stack given twice is refused before the model loads
    stacks = [load_for_picking(path, config, split)[0] for path in paths]
    return pick_uncertain(stacks, Path(data_dir), config, split)
