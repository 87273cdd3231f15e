"""A data folder's annotated pairs: pair frames with masks, and report what is wrong.

A data folder (``data1d/``, ``data3d/``) holds ``train/frames/<stem>.*`` and
``train/masks/<stem>.*``. :func:`find_pairs` pairs them by file stem; :func:`check_pairs`
reads every pair, collects every finding (unpaired or unreadable files, size mismatches,
empty masks, frames changed since they were picked, ...) in a :class:`MaskReport` -- a
table for the CLI and notebooks -- and :meth:`MaskReport.raise_for_errors` turns the
errors into one :class:`~unetlib.core.errors.InputError`. How each mask's encoding becomes
labels is :mod:`unetlib.data.masks`.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unetlib.core.errors import InputError, describe
from unetlib.core.io import IMAGE_SUFFIXES, file_sha256, natural_key, read_csv, read_image
from unetlib.data.masks import (
    ALL_BACKGROUND_FIX,
    LabelInfo,
    MaskInfo,
    format_values,
    normalize_mask,
    read_labels,
)
from unetlib.data.normalize import non_finite_pixels
from unetlib.data.organs import ORGANS_FILE, OrganTable, organ_table_path, read_organ_table

logger = logging.getLogger(__name__)

# Files beside the images that are metadata, not annotations (frames.csv, notes).
METADATA_SUFFIXES = (".csv", ".json", ".txt", ".md", ".yaml", ".yml")
# Files that operating systems and editors leave in any folder (hidden ``.`` files, like
# macOS's .DS_Store, are skipped too), and editor backups ending in ``~``.
SYSTEM_FILES = ("thumbs.db", "ehthumbs.db", "desktop.ini")
# GIMP's own project format: fine beside the exported mask of the same name.
PROJECT_SUFFIXES = (".xcf",)


# ---------------------------------------------------------------------------------------
# Pairing frames with masks
# ---------------------------------------------------------------------------------------


def train_folders(data_dir: str | os.PathLike[str]) -> tuple[Path, Path]:
    """Return ``(frames_dir, masks_dir)`` of a data folder such as ``data1d/``.

    The folder may also be given as ``data1d/train``.
    """
    data_dir = Path(data_dir)
    train = data_dir / "train"
    if not (train / "frames").is_dir() and (data_dir / "frames").is_dir():
        train = data_dir
    return train / "frames", train / "masks"


@dataclass(frozen=True)
class _Listing:
    """What a frames or masks folder holds: images by stem, and what is wrong with it."""

    by_stem: dict[str, Path]
    duplicates: dict[str, list[Path]]
    not_images: list[Path]


def _is_ignored(path: Path) -> bool:
    name = path.name.lower()
    return (path.name.startswith(".") or name in SYSTEM_FILES or name.endswith("~")
            or path.suffix.lower() in METADATA_SUFFIXES)


def _list_folder(folder: Path) -> _Listing:
    by_stem: dict[str, Path] = {}
    duplicates: dict[str, list[Path]] = {}
    not_images: list[Path] = []
    projects: list[Path] = []
    for path in sorted(folder.iterdir(), key=natural_key):
        # A broken link stays in the listing: reading it then says what is wrong with it.
        # So does a folder named like an image: reading it says it is a folder.
        misplaced = (path.is_symlink() and not path.exists()) or (
            path.is_dir() and path.suffix.lower() in IMAGE_SUFFIXES)
        if _is_ignored(path) or not (path.is_file() or misplaced):
            continue
        suffix = path.suffix.lower()
        if suffix in PROJECT_SUFFIXES:
            projects.append(path)
        elif suffix not in IMAGE_SUFFIXES:
            not_images.append(path)
        elif path.stem in by_stem:
            duplicates.setdefault(path.stem, [by_stem[path.stem]]).append(path)
        else:
            by_stem[path.stem] = path
    # A GIMP project is only a problem when its exported image is missing.
    not_images += [path for path in projects if path.stem not in by_stem]
    return _Listing(by_stem, duplicates, sorted(not_images, key=natural_key))


def find_pairs(data_dir: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """Pair each frame in ``train/frames`` with the mask of the same stem in ``train/masks``.

    Frames and masks may be ``.png``, ``.tif`` or ``.tiff`` (any suffix
    :func:`unetlib.core.io.read_image` reads); unpaired files are left out here and reported
    by :func:`check_pairs`.

    Returns
    -------
    list of (frame_path, mask_path)
        In natural order of the stems (``2`` before ``10``).

    Raises
    ------
    InputError
        When either folder does not exist.
    """
    frames_dir, masks_dir = train_folders(data_dir)
    for folder in (frames_dir, masks_dir):
        if not folder.is_dir():
            raise InputError(_missing_folder_message(folder))
    frames = _list_folder(frames_dir).by_stem
    masks = _list_folder(masks_dir).by_stem
    stems = sorted(set(frames) & set(masks), key=natural_key)
    return [(frames[stem], masks[stem]) for stem in stems]


def _missing_folder_message(folder: Path) -> str:
    return describe(folder, "folder not found",
                    f"Put the frames in {folder.parent / 'frames'} and their masks, with the "
                    f"same names, in {folder.parent / 'masks'}.")


# ---------------------------------------------------------------------------------------
# Checking a data folder
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One problem found in a data folder.

    Attributes
    ----------
    level : {"error", "warning"}
    path : Path
        The file (or folder) at fault.
    problem, fix : str
        What is wrong and what to do.
    stem : str
        The pair it belongs to, or ``""`` for folder-level findings.
    """

    level: str
    path: Path
    problem: str
    fix: str
    stem: str = ""

    @property
    def message(self) -> str:
        """The one-line message: ``<path>: <problem>. <fix>``."""
        return describe(self.path, self.problem, self.fix)


@dataclass(frozen=True)
class PairRow:
    """One line of the check table: a frame, its mask and what was found.

    ``height``, ``width``, ``channels``, ``foreground_fraction`` and ``mask_rule`` are
    ``None`` when the file was missing or could not be read. ``organ_pixels`` (label
    masks only) counts the pixels of each class, background first.
    """

    stem: str
    frame_path: Path | None
    mask_path: Path | None
    height: int | None
    width: int | None
    channels: int | None
    foreground_fraction: float | None
    mask_rule: str | None
    status: str
    notes: str
    organ_pixels: tuple[int, ...] | None = None


@dataclass(frozen=True)
class MaskReport:
    """Every finding of :func:`check_pairs` for one data folder.

    Attributes
    ----------
    data_dir : Path
    rows : tuple of PairRow
        One per stem found in either folder, in natural order.
    findings : tuple of Finding
        Errors and warnings, including folder-level ones (missing folder, no pairs).
    """

    data_dir: Path
    rows: tuple[PairRow, ...]
    findings: tuple[Finding, ...]
    organs: OrganTable | None = None

    def organ_summary(self) -> list[dict[str, Any]]:
        """Per organ: its value, in how many (readable) masks it appears, its pixel share.

        Empty for a binary data folder (no ``organs.csv``).
        """
        if self.organs is None:
            return []
        counted = [row.organ_pixels for row in self.rows if row.organ_pixels is not None]
        total = sum(sum(counts) for counts in counted) or 1
        return [{"organ": organ.name, "value": organ.value,
                 "frames": sum(1 for counts in counted if counts[klass]),
                 "pixel_percent": round(100 * sum(counts[klass] for counts in counted) / total, 3),
                 "missing_in": [row.stem for row in self.rows
                                if row.organ_pixels is not None and not row.organ_pixels[klass]]}
                for klass, organ in enumerate(self.organs.organs, start=1)]

    @property
    def errors(self) -> list[Finding]:
        """Findings that stop training."""
        return [finding for finding in self.findings if finding.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """Findings the user should look at but that do not stop training."""
        return [finding for finding in self.findings if finding.level == "warning"]

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings allowed)."""
        return not self.errors

    def to_dicts(self) -> list[dict[str, Any]]:
        """Rows as dicts (e.g. for ``pandas.DataFrame`` in a notebook)."""
        return [{"stem": row.stem,
                 "frame": row.frame_path.name if row.frame_path else "",
                 "mask": row.mask_path.name if row.mask_path else "",
                 "height": row.height, "width": row.width, "channels": row.channels,
                 "foreground_percent": (None if row.foreground_fraction is None
                                        else round(100 * row.foreground_fraction, 2)),
                 "mask_rule": row.mask_rule or "", "status": row.status, "notes": row.notes}
                for row in self.rows]

    def format_table(self) -> str:
        """The report as a plain-text table with a summary line (what ``check-masks`` prints)."""
        columns = ("stem", "frame", "mask", "size", "ch", "fg %", "status", "mask rule / notes")
        lines = [[row["stem"], row["frame"] or "-", row["mask"] or "-",
                  f"{row['height']}x{row['width']}" if row["height"] is not None else "-",
                  "-" if row["channels"] is None else str(row["channels"]),
                  "-" if row["foreground_percent"] is None else f"{row['foreground_percent']:.2f}",
                  row["status"], "; ".join(part for part in (row["mask_rule"], row["notes"]) if part)]
                 for row in self.to_dicts()]
        widths = [max(len(str(cell)) for cell in column) for column in zip(columns, *lines)]
        text = [_format_line(columns, widths), _format_line(["-" * w for w in widths], widths)]
        text += [_format_line(line, widths) for line in lines]
        if self.organs is not None:
            text += ["", "organ  value  frames  pixel %  missing in"]
            for organ in self.organ_summary():
                missing = ", ".join(organ["missing_in"][:8]) + (
                    " ..." if len(organ["missing_in"]) > 8 else "")
                text.append(f"{organ['organ']}  {organ['value']}  {organ['frames']}  "
                            f"{organ['pixel_percent']:.2f}  {missing or '-'}")
            text.append("")
        pairs_ok = sum(row.status != "error" for row in self.rows)
        text.append(f"{len(self.rows)} stems, {pairs_ok} usable pairs, {len(self.errors)} errors, "
                    f"{len(self.warnings)} warnings in {self.data_dir}")
        text += [f"{finding.level}: {finding.message}" for finding in self.findings]
        return "\n".join(text)

    def raise_for_errors(self) -> list[Finding]:
        """Raise one :class:`InputError` listing every error; return the warnings otherwise.

        The message has a summary line, then one line per bad file with its fix.
        """
        errors = self.errors
        if errors:
            lines = [f"{self.data_dir}: {len(errors)} problem(s) with the frames and masks "
                     "(run `python -m unetlib check-masks` for the table):"]
            lines += [f"  - {finding.message}" for finding in errors]
            raise InputError("\n".join(lines))
        return self.warnings


def _format_line(cells: Sequence[Any], widths: Sequence[int]) -> str:
    return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip()


def check_pairs(data_dir: str | os.PathLike[str], *, binary: bool = True) -> MaskReport:
    """Check every frame/mask pair of a data folder and collect all findings.

    Errors: a missing folder; no pairs at all; a frame without a mask or a mask without
    a frame; two files with the same stem; a file that is not a readable image; a mask
    whose height and width differ from its frame's; a mask that is all background after
    normalisation; frames with different channel counts; and, when ``binary`` is true,
    a mask with more than two levels (a label image). A mask that is all foreground is
    a warning.

    Parameters
    ----------
    data_dir : path-like
        A data folder such as ``data1d/`` holding ``train/frames`` and ``train/masks``.
    binary : bool
        The task is foreground/background; several labels in one mask are an error.

    Returns
    -------
    MaskReport
        Never raises for problems in the data; call :meth:`MaskReport.raise_for_errors`.
    """
    data_dir = Path(data_dir)
    frames_dir, masks_dir = train_folders(data_dir)
    findings: list[Finding] = []
    missing = [folder for folder in (frames_dir, masks_dir) if not folder.is_dir()]
    for folder in missing:
        findings.append(Finding("error", folder, "folder not found",
                                _missing_folder_message(folder).split(". ", 1)[-1]))
    if missing:
        return MaskReport(data_dir, (), tuple(findings))
    table_path = organ_table_path(data_dir)
    try:
        organs = None if table_path is None else read_organ_table(table_path)
    except InputError as error:
        problem = _problem_of(error, table_path)
        fix = str(error).split(f"{problem}. ", 1)[-1]
        return MaskReport(data_dir, (), (Finding("error", table_path, problem, fix),))
    frames, masks = _list_folder(frames_dir), _list_folder(masks_dir)
    for listing in (frames, masks):
        findings += _listing_findings(listing)
    changed = _changed_frames(frames_dir, frames.by_stem, masks.by_stem)
    findings += changed
    rows = [_check_stem(stem, frames.by_stem.get(stem), masks.by_stem.get(stem),
                        frames_dir, masks_dir, binary, findings, organs)
            for stem in sorted(set(frames.by_stem) | set(masks.by_stem), key=natural_key)]
    problems = {finding.stem: finding.problem for finding in changed}
    rows = [PairRow(**{**row.__dict__, "status": "error", "notes": "; ".join(
        filter(None, (problems[row.stem], row.notes)))}) if row.stem in problems else row
        for row in rows]
    rows = _check_channels(rows, findings)
    if not any(row.status != "error" for row in rows) and not any(
            finding.level == "error" and finding.stem for finding in findings):
        findings.append(Finding("error", frames_dir, "no frame/mask pairs found",
                                f"Put frames in {frames_dir} and masks with the same names "
                                f"in {masks_dir}."))
    report = MaskReport(data_dir, tuple(rows), tuple(findings), organs)
    report = MaskReport(data_dir, report.rows, (*report.findings, *_organ_findings(report)),
                        organs)
    logger.info("checked %d pairs in %s: %d errors, %d warnings", len(rows), data_dir,
                len(report.errors), len(report.warnings))
    return report


def _changed_frames(frames_dir: Path, frames: dict[str, Path],
                    masks: dict[str, Path]) -> list[Finding]:
    """Frames whose content differs from what ``frames.csv`` recorded when they were picked.

    Their masks were drawn on another image (the frame was replaced afterwards), so the
    pair would teach the network a wrong outline.
    """
    table = frames_dir.parent / "frames.csv"
    if not table.is_file():
        return []
    try:
        recorded = {row.get("stem"): row.get("sha256") for row in read_csv(table)}
    except (InputError, UnicodeDecodeError, csv.Error):
        return []
    findings = []
    for stem, path in frames.items():
        expected = recorded.get(stem)
        if expected and stem in masks and file_sha256(path) != expected:
            findings.append(Finding(
                "error", path, f"changed since it was picked ({table.name} records another "
                "image), so its mask may have been drawn on a different frame",
                f"Restore the picked frame, or draw the mask again on this one and clear its "
                f"sha256 in {table}.", stem))
    return findings


def _organ_findings(report: MaskReport) -> list[Finding]:
    """Warnings per organ: missing from some frames (it may be out of view), or seen in
    fewer than 2 (too few to both train and validate it)."""
    findings = []
    table = organ_table_path(report.data_dir) or report.data_dir / ORGANS_FILE
    for organ in report.organ_summary():
        if organ["frames"] < 2:
            findings.append(Finding("warning", table, f"{organ['organ']} (value {organ['value']}) "
                                    f"appears in {organ['frames']} mask(s), too few to train and "
                                    "validate it", "Annotate it in more frames, or remove it "
                                    "from organs.csv."))
        elif organ["missing_in"]:
            findings.append(Finding("warning", table, f"{organ['organ']} is missing from "
                                    f"frame(s) {', '.join(organ['missing_in'])}",
                                    "Fine if it is out of view there; otherwise draw it."))
    return findings


def _listing_findings(listing: _Listing) -> list[Finding]:
    findings = [Finding("error", path, f"is not an image unetlib reads ({path.suffix or 'no suffix'})",
                        "Export it as PNG or TIFF (GIMP: File > Export As), or move it out "
                        "of the folder.") for path in listing.not_images]

    for stem, paths in listing.duplicates.items():
        names = ", ".join(path.name for path in paths)
        findings.append(Finding("error", paths[-1], f"shares the name {stem!r} with another file ({names})",
                                "Keep one file per frame and remove or rename the others.", stem))
    return findings


def _check_stem(stem: str, frame_path: Path | None, mask_path: Path | None, frames_dir: Path,
                masks_dir: Path, binary: bool, findings: list[Finding],
                organs: OrganTable | None = None) -> PairRow:
    """Check one stem and append its findings; return its table row."""
    new: list[Finding] = []
    frame_shape = mask_shape = None
    info = None
    labels: LabelInfo | None = None
    if frame_path is None:
        new.append(Finding("error", mask_path, f"has no frame in {frames_dir}",
                           "Rename the mask to its frame's name, or remove it.", stem))
    else:
        try:
            frame = read_image(frame_path)
            frame_shape = frame.shape
        except InputError as error:
            new.append(Finding("error", frame_path, _problem_of(error, frame_path),
                               "Re-export the frame as PNG or TIFF.", stem))
        else:
            bad = non_finite_pixels(frame)
            if bad is not None:
                new.append(Finding("error", frame_path, f"has {int(bad.sum())} pixel(s) that are "
                                   "NaN or infinite", "Replace them (e.g. with their neighbours' "
                                   "values) and save the frame again, or pick another frame.",
                                   stem))
    if mask_path is None:
        new.append(Finding("error", frame_path, f"has no mask in {masks_dir}",
                           f"Draw its mask and save it as {masks_dir / (stem + '.png')}, "
                           "or remove the frame.", stem))
    else:
        try:
            if organs is None:
                raw = read_image(mask_path)
                mask_shape = raw.shape
                _, info = normalize_mask(raw, source=mask_path)
            else:
                classes, labels = read_labels(mask_path, organs)
                mask_shape = classes.shape
        except InputError as error:
            new.append(Finding("error", mask_path, _problem_of(error, mask_path),
                               "Re-export the mask as PNG (File > Export As in GIMP).", stem))
    if frame_shape is not None and mask_shape is not None and frame_shape[:2] != mask_shape[:2]:
        new.append(Finding("error", mask_path,
                           f"is {mask_shape[0]}x{mask_shape[1]} (height x width) but its frame "
                           f"{frame_path.name} is {frame_shape[0]}x{frame_shape[1]}",
                           "Export the mask at the frame's size, without scaling or cropping.",
                           stem))
    if info is not None:
        new += _mask_findings(mask_path, info, stem, binary)
    if labels is not None and not labels.organ_classes:
        new.append(Finding("error", mask_path, "mask has no organ of organs.csv (all background)",
                           ALL_BACKGROUND_FIX, stem))
    findings += new
    levels = {finding.level for finding in new}
    status = "error" if "error" in levels else "warning" if "warning" in levels else "ok"
    height, width = (frame_shape or mask_shape or (None, None))[:2]
    channels = None if frame_shape is None else (1 if len(frame_shape) == 2 else frame_shape[2])
    if labels is not None:
        foreground = 1.0 - labels.counts[0] / max(1, sum(labels.counts))
        rule = f"labels ({labels.encoding}): " + ", ".join(
            organs.organs[klass - 1].name for klass in labels.organ_classes)
    else:
        foreground = None if info is None else info.foreground_fraction
        rule = None if info is None else info.describe()
    return PairRow(stem=stem, frame_path=frame_path, mask_path=mask_path, height=height,
                   width=width, channels=channels, foreground_fraction=foreground,
                   mask_rule=rule, status=status,
                   notes="; ".join(finding.problem for finding in new),
                   organ_pixels=None if labels is None else labels.counts)


def _mask_findings(path: Path, info: MaskInfo, stem: str, binary: bool) -> list[Finding]:
    if info.is_all_background:
        return [Finding("error", path, "mask is all background after normalisation "
                                       f"(values {format_values(info.values)})",
                        ALL_BACKGROUND_FIX, stem)]
    findings = []
    if binary and info.is_label_image:
        findings.append(Finding("error", path,
                                f"has {len(info.levels)} distinct levels "
                                f"{format_values(info.levels)}, but the task is binary",
                                "Give every organ the same value (e.g. 255), or check with "
                                "--allow-labels to merge them into one foreground.", stem))
    if info.is_all_foreground:
        findings.append(Finding("warning", path, "mask is all foreground "
                                                 f"(values {format_values(info.values)})",
                                "Check it is not inverted: the organ should be the bright "
                                "part, the background black.", stem))
    return findings


def _problem_of(error: InputError, path: Path) -> str:
    """The problem part of an InputError message, without the path prefix."""
    text = str(error)
    prefix = f"{path}: "
    problem = text[len(prefix):] if text.startswith(prefix) else text
    return problem.split(". ", 1)[0]


def _check_channels(rows: list[PairRow], findings: list[Finding]) -> list[PairRow]:
    """All frames must have the same channel count; flag the ones that differ."""
    counts = [row.channels for row in rows if row.channels is not None]
    if len(set(counts)) <= 1:
        return rows
    usual = max(set(counts), key=counts.count)
    checked = []
    for row in rows:
        if row.channels is None or row.channels == usual:
            checked.append(row)
            continue
        problem = f"has {row.channels} channels but most frames have {usual}"
        findings.append(Finding("error", row.frame_path, problem,
                                "Export every frame with the same channels (all grey or all "
                                "composites).", row.stem))
        checked.append(PairRow(**{**row.__dict__, "status": "error",
                                  "notes": "; ".join(filter(None, (row.notes, problem)))}))
    return checked
