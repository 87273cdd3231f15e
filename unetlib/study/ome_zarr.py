"""A stack's quantify results as OME-Zarr, which napari and the OME ecosystem open as they are.

:func:`write_ome_zarr` writes ``<results>/<stem>.ome.zarr`` (OME-Zarr 0.5 on Zarr v3, with
the ``ome-zarr`` library): the acquisition as one ``t, c, y, x`` image (each laser a
channel, named ``laser 1`` ..., the cycle interval as the time scale in seconds) and the
organ labels of every cycle in its ``labels/organs`` group, whose ``image-label`` metadata
give each organ value its name and organs.csv colour. napari opens it with the
``napari-ome-zarr`` reader, without unetlib installed.

It reads what ``quantify`` wrote (``quantify.json``, ``labels.tif``, ``organs.csv``,
``cycles.csv``) and the stack it names, so it also exports results quantified earlier.
The store is written under a temporary name and renamed into place: an interrupted export
leaves no half-written store behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import tifffile

from unetlib.core.config import SplitConfig
from unetlib.core.errors import InputError, OutputError, describe
from unetlib.core.io import read_csv
from unetlib.data.organs import read_organ_table
from unetlib.data.stack import contrast_limits, load_stack
from unetlib.study.results_folder import CYCLES_FILE, LABELS_FILE, read_results_record

__all__ = ["ome_zarr_path", "write_ome_zarr"]


def ome_zarr_path(results_dir: str | os.PathLike[str]) -> Path:
    """Where :func:`write_ome_zarr` writes a stack's store: ``<results>/<stem>.ome.zarr``."""
    results_dir = Path(results_dir)
    return results_dir / f"{results_dir.name}.ome.zarr"


def write_ome_zarr(results_dir: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write a stack's quantify results as OME-Zarr (see the module docstring).

    Parameters
    ----------
    results_dir : path-like
        One stack's results folder, ``<quantify out>/<stem>/``.
    force : bool
        Replace an existing store.

    Returns
    -------
    Path
        The store, ``<results>/<stem>.ome.zarr``.

    Raises
    ------
    InputError
        Results that are not complete, or a stack that moved or changed since.
    OutputError
        The store exists (without ``force``), or cannot be written.
    """
    import dask.array
    import zarr  # the optional OME-Zarr libraries load only when asked for
    from ome_zarr.format import FormatV05
    from ome_zarr.writer import write_image, write_labels

    results_dir = Path(results_dir)
    record = read_results_record(results_dir)
    target = ome_zarr_path(results_dir)
    if target.exists() and not force:
        raise OutputError(describe(target, "exists", "Pass --force to write it again."))
    split = record.get("request", {}).get("config", {}).get("split", {})
    stack_path = Path(str(record.get("stack", "")))
    if not stack_path.is_file():
        raise InputError(describe(stack_path, "not found (the stack these results are of)",
                                  "Put it back where it was quantified, or quantify it again."))
    stack = load_stack(stack_path, SplitConfig(lasers=int(split.get("lasers", record["lasers"])),
                                               offset=int(split.get("offset", 0))))
    labels = tifffile.imread(results_dir / LABELS_FILE)
    if labels.shape != (stack.cycles, *stack.frame_shape):
        raise InputError(describe(results_dir / LABELS_FILE, f"holds {labels.shape[0]} cycles of "
                                  f"{labels.shape[1]} x {labels.shape[2]}, {stack_path.name} "
                                  f"{stack.cycles} of {stack.frame_shape[0]} x {stack.frame_shape[1]}",
                                  "Quantify the stack again (--force): it changed since."))
    organs = read_organ_table(results_dir / "organs.csv")
    times = [float(row["time_s"]) for row in read_csv(results_dir / CYCLES_FILE)]
    interval = float(np.median(np.diff(times))) if len(times) > 1 else 1.0

    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        root = zarr.open_group(str(partial), mode="w", zarr_format=3)
        chunks = (1, 1, *stack.frame_shape)
        # The cycle interval as the time axis' scale, in seconds; pixels have no calibration.
        placement = {"axes": "tcyx", "scale": {"t": interval, "c": 1.0, "y": 1.0, "x": 1.0},
                     "axes_units": {"t": "second"}}
        middle = np.asarray(stack.data[stack.cycles // 2])
        windows = [contrast_limits(middle[laser]) for laser in range(stack.lasers)]
        frames = dask.array.from_array(stack.data, chunks=chunks)  # one frame in memory at a time
        write_image(frames, root, scale_factors=[], fmt=FormatV05(), **placement,
                    storage_options={"chunks": chunks},
                    omero={"channels": [
                        {"label": f"laser {laser + 1}", "active": True, "color": "FFFFFF",
                         "window": {"start": float(low), "end": float(high),
                                    "min": float(low), "max": float(high)}}
                        for laser, (low, high) in enumerate(windows)]})
        write_labels(labels[:, None], root, name="organs", scaler=None, scale_factors=[],
                     fmt=FormatV05(), **placement,
                     storage_options={"chunks": chunks},
                     label_metadata={
                         "colors": [{"label-value": organ.value, "rgba": [*organ.rgb, 255]}
                                    for organ in organs.organs],
                         "properties": [{"label-value": organ.value, "name": organ.name}
                                        for organ in organs.organs]})
        if target.exists():
            shutil.rmtree(target)
        partial.rename(target)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise OutputError(describe(target, f"cannot be written ({error})",
                                   "Free disk space or choose another results folder.")) from None
    return target
