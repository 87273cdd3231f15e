"""A data folder's annotations and where they came from: proposals, masks, frames.csv.

:mod:`unetlib.inference.proposals` writes a model's proposals into ``train/proposals/``
and records each in ``proposals.csv``; this module owns those files' layout and what
follows from them without a model (so the napari plugin's viewer, which never loads
TensorFlow, can use it): saving an annotator's mask (:func:`save_mask`), and recording in
``frames.csv`` whether each mask was drawn or corrected from a proposal, by which model,
and how many pixels the annotator changed (:func:`mask_origins`,
:func:`record_mask_origins`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from unetlib.core.errors import InputError, OutputError, describe
from unetlib.core.io import file_sha256, list_images, read_csv, read_image, write_csv, write_image
from unetlib.core.locking import output_lock
from unetlib.data.dataset import train_folders
from unetlib.data.masks import read_labels, read_mask
from unetlib.data.organs import OrganTable, organ_table_path, read_organ_table

__all__ = ["CORRECTED", "DRAWN", "ORIGIN_FIELDS", "PROPOSALS_FIELDS", "PROPOSALS_TABLE",
           "data_organs", "mask_origins", "proposals_folder", "read_proposals_table",
           "record_mask_origins", "save_mask"]

PROPOSALS_TABLE = "proposals.csv"
PROPOSALS_FIELDS = ("stem", "file", "frame_sha256", "proposed_by", "model_sha256", "sha256",
                    "created")
# Columns record_mask_origins adds to frames.csv: drawn, or corrected from a proposal.
ORIGIN_FIELDS = ("mask_origin", "proposed_by", "changed_px")
DRAWN, CORRECTED = "drawn", "corrected"


def proposals_folder(data_dir: str | os.PathLike[str]) -> Path:
    """``<data_dir>/train/proposals``: beside ``frames/`` and ``masks/``, read by neither
    check-masks nor training."""
    return train_folders(data_dir)[0].parent / "proposals"


def data_organs(data_dir: str | os.PathLike[str]) -> OrganTable | None:
    """The data folder's organs.csv, or None for a binary folder."""
    path = organ_table_path(data_dir)
    return None if path is None else read_organ_table(path)


def read_proposals_table(folder: Path) -> dict[str, dict[str, str]]:
    """``{stem: row}`` of a proposals folder's ``proposals.csv`` (empty without one)."""
    table = folder / PROPOSALS_TABLE
    return {row["stem"]: row for row in read_csv(table)} if table.is_file() else {}


def _classes(path: Path, organs: OrganTable | None) -> np.ndarray:
    if organs is None:
        return read_mask(path)[0] > 0
    return read_labels(path, organs)[0]


def mask_origins(data_dir: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """How every mask of ``train/masks/`` came about: ``{stem: {mask_origin, proposed_by,
    changed_px}}``.

    ``corrected`` when a proposal of the same frame was made (its frame unchanged since),
    with the model that proposed it and the pixels whose organ differs between the mask
    and the proposal (0: saved as proposed); ``drawn`` otherwise.
    """
    data_dir = Path(data_dir)
    frames_dir, masks_dir = train_folders(data_dir)
    if not masks_dir.is_dir():
        return {}
    organs = data_organs(data_dir)
    folder = proposals_folder(data_dir)
    recorded = read_proposals_table(folder)
    frames = {path.stem: path for path in list_images(frames_dir)} if frames_dir.is_dir() else {}
    origins = {}
    for mask in list_images(masks_dir):
        row = recorded.get(mask.stem)
        proposal = folder / f"{mask.stem}.png"
        frame = frames.get(mask.stem)
        if row is None or not proposal.is_file() or frame is None \
                or file_sha256(frame) != row["frame_sha256"]:
            origins[mask.stem] = {"mask_origin": DRAWN, "proposed_by": "", "changed_px": ""}
            continue
        try:
            changed = int(np.count_nonzero(_classes(mask, organs) != _classes(proposal, organs)))
        except (InputError, ValueError):
            changed = -1  # unreadable or another size: check-masks reports the mask itself
        origins[mask.stem] = {"mask_origin": CORRECTED, "proposed_by": row["proposed_by"],
                              "changed_px": str(changed) if changed >= 0 else ""}
    return origins


def record_mask_origins(data_dir: str | os.PathLike[str]) -> dict[str, dict[str, str]]:
    """Write :func:`mask_origins` into ``train/frames.csv`` (its rows keep every other
    column; frames without a mask get empty cells). Returns the origins.

    Does nothing to a folder without ``frames.csv`` (frames not picked by unetlib).
    """
    data_dir = Path(data_dir)
    origins = mask_origins(data_dir)
    table = train_folders(data_dir)[0].parent / "frames.csv"
    if not table.is_file():
        return origins
    rows = read_csv(table)
    empty = dict.fromkeys(ORIGIN_FIELDS, "")
    updated = [{**row, **origins.get(row.get("stem", ""), empty)} for row in rows]
    if updated == rows:
        return origins
    fields = list(rows[0]) if rows else []
    fields += [field for field in ORIGIN_FIELDS if field not in fields]
    with output_lock(data_dir):
        write_csv(table, updated, fields, overwrite=True)
    return origins


def save_mask(data_dir: str | os.PathLike[str], stem: str, values: np.ndarray, *,
              overwrite: bool = False) -> Path:
    """Save an annotator's mask of one frame as ``train/masks/<stem>.png`` and record its
    origin in ``frames.csv`` (:func:`record_mask_origins`).

    What the napari plugin's Save does; the file is what GIMP would save (a palette PNG in
    the organs' colours; 0/255 for a binary folder), so check-masks and train read it.

    Parameters
    ----------
    data_dir : path-like
        The data folder.
    stem : str
        The frame's stem in ``train/frames/``.
    values : ndarray of shape (H, W)
        Organ values (0 background); a binary folder takes any non-zero as foreground.
    overwrite : bool
        Replace an existing mask (the plugin asks first).

    Raises
    ------
    InputError
        No such frame, another size than the frame, values organs.csv does not list, or
        nothing drawn.
    OutputError
        The mask exists (without ``overwrite``), or the folder cannot be written.
    """
    data_dir = Path(data_dir)
    frames_dir, masks_dir = train_folders(data_dir)
    frames = {path.stem: path for path in list_images(frames_dir)} if frames_dir.is_dir() else {}
    if stem not in frames:
        raise InputError(describe(frames_dir, f"has no frame {stem}",
                                  "Save masks of frames picked into the data folder."))
    values = np.asarray(values)
    shape = read_image(frames[stem]).shape[:2]
    if values.shape != shape:
        raise InputError(describe(frames[stem], f"is {shape[0]} x {shape[1]}, the mask "
                                  f"{' x '.join(map(str, values.shape))}",
                                  "Save the labels drawn on this frame."))
    organs = data_organs(data_dir)
    present = sorted(int(v) for v in np.unique(values) if v)
    if not present:
        raise InputError(describe(masks_dir / f"{stem}.png", "would be all background",
                                  "Draw the organs of this frame before saving it."))
    if organs is None:
        mask, palette = np.where(values > 0, 255, 0).astype(np.uint8), None
    else:
        unknown = sorted(set(present) - set(organs.values))
        if unknown:
            raise InputError(describe(masks_dir / f"{stem}.png", "would hold value(s) "
                                      f"{', '.join(map(str, unknown))} that organs.csv does "
                                      f"not list (it has {', '.join(map(str, organs.values))})",
                                      "Paint with the organs' values only, or add the organ "
                                      "to organs.csv."))
        mask = values.astype(np.uint8 if max(organs.values) < 256 else np.uint16)
        palette = organs.palette() if mask.dtype == np.uint8 else None
    target = masks_dir / f"{stem}.png"
    if target.is_file() and not overwrite:
        raise OutputError(describe(target, "exists", "Confirm replacing it (overwrite), or "
                                   "save another frame."))
    with output_lock(masks_dir.parent):
        masks_dir.mkdir(parents=True, exist_ok=True)
        write_image(target, mask, overwrite=True, palette=palette)
    record_mask_origins(data_dir)
    return target
