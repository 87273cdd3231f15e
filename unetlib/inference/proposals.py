"""Proposals: a model's masks of frames still to annotate, for the annotator to correct.

Drawing every organ of a frame from scratch is the slowest step of the whole workflow;
correcting a model's proposal is much faster (Cellpose 2.0's human-in-the-loop). For every
frame of ``train/frames/`` that has no mask yet, :func:`propose_masks` writes
``train/proposals/<stem>.png``: a palette PNG whose palette index is the organ value and
whose palette colours are ``organs.csv``'s, which GIMP opens and edits as it is (Indexed
mode; a binary run writes 0/255 grey). ``train/proposals/proposals.csv`` records the frame
and the model each proposal came from, and the proposal's own checksum.

A proposal is never an annotation: check-masks and training read ``train/masks/`` only.
It becomes one when the annotator saves it, corrected, as ``train/masks/<stem>.png``.
:mod:`unetlib.data.annotations` (the folder's records, which need no model) then writes
into ``frames.csv`` whether each mask was drawn or corrected from a proposal, which model
proposed it, and how many pixels the annotator changed -- the effort correcting took.

Nothing of the annotator's is overwritten: frames with a mask get no proposal, and a
proposal edited in place (its checksum differs from the recorded one) is kept unless
``force``; an unedited proposal of the same frame by the same model is reused.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
from pathlib import Path

import numpy as np

from unetlib.core.config import PredictConfig
from unetlib.core.errors import InputError, OutputError, describe
from unetlib.core.io import (
    file_sha256,
    list_images,
    natural_key,
    progress_bar,
    read_image,
    write_csv,
    write_image,
)
from unetlib.core.locking import output_lock
from unetlib.data.annotations import (
    PROPOSALS_FIELDS,
    PROPOSALS_TABLE,
    data_organs,
    proposals_folder,
    read_proposals_table,
)
from unetlib.data.dataset import train_folders
from unetlib.data.normalize import fill_non_finite, non_finite_pixels, normalize_image
from unetlib.data.organs import (
    ORGANS_FILE,
    OrganTable,
    write_organ_table,
)
from unetlib.nn.model import model_input_channels
from unetlib.nn.sliding_window import predict_probabilities, segment
from unetlib.runs.run import LoadedRun, load_run

__all__ = ["ProposalResult", "propose_masks"]

logger = logging.getLogger(__name__)



@dataclasses.dataclass(frozen=True)
class ProposalResult:
    """What :func:`propose_masks` did: proposals ``written`` now, ``kept`` (the same model's
    unedited proposal of the same frame), and the frames ``skipped`` for having a mask."""

    folder: Path
    written: list[Path]
    kept: list[Path]
    skipped: list[str]


def _value_map(run: LoadedRun, organs: OrganTable | None, data_dir: Path) -> np.ndarray | None:
    """Lookup from the run's organ values to the data folder's (organs matched by name);
    None for a binary run on a binary folder."""
    if run.organs is None and organs is None:
        return None
    if run.organs is None:
        raise InputError(describe(data_dir, "its organs.csv names organs and the run segments "
                                  "one foreground", "Propose with a run trained on organs."))
    if organs is None:  # the masks to come will be read with the run's organs
        organs = run.organs
        write_organ_table(data_dir / ORGANS_FILE, organs)
        logger.info("wrote %s from the run's organs", data_dir / ORGANS_FILE)
    if sorted(run.organs.names) != sorted(organs.names):
        raise InputError(describe(
            data_dir, f"its organs.csv lists {', '.join(organs.names)}, the run segments "
            f"{', '.join(run.organs.names)}", "Propose with a run of the same organs, or "
            "fine-tune one on this folder first."))
    by_name = {organ.name: organ.value for organ in organs.organs}
    lookup = np.zeros(max(run.organs.values) + 1, dtype=np.int64)
    for organ in run.organs.organs:
        lookup[organ.value] = by_name[organ.name]
    return lookup


def _propose(run: LoadedRun, frame_path: Path, lookup: np.ndarray | None,
             predict: PredictConfig) -> np.ndarray:
    """The run's mask of one frame, in the data folder's organ values (0/255 binary)."""
    raw = read_image(frame_path)
    channels = 1 if raw.ndim == 2 else raw.shape[-1]
    expected = model_input_channels(run.model)
    if channels != expected:
        raise InputError(describe(frame_path, f"has {channels} channel(s), the run takes "
                                  f"{expected}", "Propose with a run trained on frames like "
                                  "these (one laser, or the same composite)."))
    bad = non_finite_pixels(raw)
    if bad is not None:
        raw = fill_non_finite(raw, bad)
    probability = predict_probabilities(run.model, normalize_image(raw, run.normalize),
                                        tile=predict.tile, overlap=predict.overlap,
                                        tta=predict.tta, batch_size=predict.batch_size)
    mask = segment(probability, threshold=run.threshold, organs=run.organs)
    if bad is not None:
        mask[bad] = 0
    if lookup is None:
        return np.where(mask > 0, 255, 0).astype(np.uint8)
    return lookup[mask].astype(np.uint8 if lookup.max() < 256 else np.uint16)


def propose_masks(run_or_path: LoadedRun | str | os.PathLike[str],
                  data_dir: str | os.PathLike[str], *, stems: list[str] | None = None,
                  force: bool = False, predict: PredictConfig = PredictConfig(),
                  progress: bool = False) -> ProposalResult:
    """Write a run's proposal for every frame of a data folder that has no mask yet.

    Parameters
    ----------
    run_or_path : LoadedRun or path-like
        A run folder, its model file, or a bioimage.io package; its organs must be the
        data folder's (matched by name; the proposals use the folder's values). A folder
        without ``organs.csv`` gets the run's, which its masks will then be read with.
    data_dir : path-like
        A data folder with ``train/frames/`` (and ``organs.csv`` for organs).
    stems : list of str, optional
        Only these frames (e.g. the ones just picked); default: every frame without a mask.
    force : bool
        Replace proposals edited in place too.
    predict : PredictConfig
        Tiling and test-time flips, as in ``predict``.

    Returns
    -------
    ProposalResult

    Raises
    ------
    InputError
        A run of other organs or channels, a frame that cannot be read, an unknown stem.
    OutputError
        A proposal edited in place would be replaced (without ``force``), or the folder
        cannot be written.
    """
    data_dir = Path(data_dir)
    run = run_or_path if isinstance(run_or_path, LoadedRun) else load_run(run_or_path)
    predict.validate()
    frames_dir, masks_dir = train_folders(data_dir)
    if not frames_dir.is_dir():
        raise InputError(describe(frames_dir, "folder not found",
                                  "Pick frames into the data folder first (pick-frames)."))
    frames = {path.stem: path for path in list_images(frames_dir)}
    masks = {path.stem for path in list_images(masks_dir)} if masks_dir.is_dir() else set()
    unknown = sorted(set(stems or ()) - set(frames), key=natural_key)
    if unknown:
        raise InputError(describe(frames_dir, f"has no frame {', '.join(unknown)}",
                                  "Name frames of train/frames/ by their stem (e.g. 3)."))
    wanted = sorted(stems if stems is not None else frames, key=natural_key)
    skipped = [stem for stem in wanted if stem in masks]
    todo = [stem for stem in wanted if stem not in masks]
    lookup = _value_map(run, data_organs(data_dir), data_dir)
    palette = None if lookup is None else data_organs(data_dir).palette()  # read once
    folder = proposals_folder(data_dir)
    model_sha = file_sha256(run.model_path)
    with output_lock(folder):
        recorded = read_proposals_table(folder)
        plan, kept = [], []
        for stem in todo:
            target, frame_sha = folder / f"{stem}.png", file_sha256(frames[stem])
            row = recorded.get(stem)
            unedited = target.is_file() and row is not None and file_sha256(target) == row["sha256"]
            if unedited and (row["frame_sha256"], row["model_sha256"]) == (frame_sha, model_sha):
                kept.append(target)
                continue
            if target.is_file() and not unedited and not force:
                raise OutputError(describe(target, "was edited since it was proposed (or was "
                                           "not written by propose)", "Save it into "
                                           f"{masks_dir} if it is your correction, move it "
                                           "away, or pass --force to replace it."))
            plan.append((stem, target, frame_sha))
        written = []
        for stem, target, frame_sha in progress_bar(plan, description="proposing",
                                                    unit="frame", enabled=progress):
            mask = _propose(run, frames[stem], lookup, predict)
            write_image(target, mask, overwrite=True, palette=palette)
            recorded[stem] = {"stem": stem, "file": target.name, "frame_sha256": frame_sha,
                              "proposed_by": _model_name(run), "model_sha256": model_sha,
                              "sha256": file_sha256(target),
                              "created": datetime.datetime.now().isoformat(timespec="seconds")}
            written.append(target)
            # The table after every proposal: an interruption leaves each written one recorded.
            write_csv(folder / PROPOSALS_TABLE,
                      [recorded[key] for key in sorted(recorded, key=natural_key)],
                      PROPOSALS_FIELDS, overwrite=True)
    return ProposalResult(folder, written, kept, skipped)


def _model_name(run: LoadedRun) -> str:
    """How ``frames.csv`` names the model: its run folder, or its file when it has none."""
    path = Path(run.model_path)
    return path.parent.name if path.parent.name else path.name
