"""Load a multi-laser TIFF stack, de-interleave its lasers and export frames and composites.

A SWIR acquisition is one TIFF stack whose frames cycle through the lasers: frame ``i``
was taken with laser ``(i - offset) % lasers``. :func:`load_stack` opens it memory-mapped
where the file allows (a 510 MB stack is not read into memory) and returns a
:class:`LaserStack`, a ``(cycles, lasers, H, W)`` view. ImageJ/OME hyperstacks that already
carry a channel axis are taken as they are. :func:`split_stack` exports per-laser frames
(bit depth kept), 3-laser composites (8-bit display PNG for GIMP plus lossless TIFF) and
4-laser composites (TIFF), with a ``manifest.csv`` mapping each file to its stack frames.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import signal
import threading
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from unetlib.core.config import SplitConfig, to_dict
from unetlib.core.errors import (
    InputError,
    Interrupted,
    OutputError,
    ParameterError,
    UnetlibWarning,
    describe,
)
from unetlib.core.io import (
    damaged_tiff_error,
    ensure_folder,
    missing_file_error,
    progress_bar,
    read_csv,
    read_json,
    refuse_existing,
    staged_folder,
    tifffile_problems,
    write_csv,
    write_image,
    write_json,
)
from unetlib.core.locking import output_lock
from unetlib.core.records import as_record, same_request

logger = logging.getLogger(__name__)

MANIFEST_FIELDS = ("file", "cycle", "lasers", "stack_frames")
# More writer threads than this only add contention on a laptop's disk.
MAX_WORKERS = 32
# Up to this many pixels per channel, contrast_limits takes the percentiles of every pixel.
EXACT_PERCENTILE_PIXELS = 256 * 256


@dataclass(frozen=True)
class LaserStack:
    """A de-interleaved acquisition.

    Attributes
    ----------
    path : Path
        The TIFF file it was read from.
    data : ndarray of shape (cycles, lasers, H, W)
        Frames by cycle and laser, a memory-mapped view where the file allows.
    frame_numbers : ndarray of shape (cycles, lasers), int
        Index of each frame in the original stack (its page order).
    dropped : int
        Frames of a trailing incomplete cycle (and before ``offset``) left out.
    hyperstack : bool
        The lasers are a channel axis of the file (ImageJ/OME), not interleaved frames;
        its recorded frame interval is then per time point, not per frame.
    """

    path: Path
    data: np.ndarray
    frame_numbers: np.ndarray
    dropped: int = 0
    hyperstack: bool = False

    @property
    def cycles(self) -> int:
        """Number of complete laser cycles (time points)."""
        return int(self.data.shape[0])

    @property
    def lasers(self) -> int:
        """Number of lasers."""
        return int(self.data.shape[1])

    @property
    def frame_shape(self) -> tuple[int, int]:
        """``(H, W)`` of one frame."""
        return int(self.data.shape[2]), int(self.data.shape[3])

    def summary(self) -> str:
        """One line describing the acquisition, for notebooks and logs."""
        height, width = self.frame_shape
        text = (f"{self.path.name}: {self.cycles} cycles x {self.lasers} lasers of "
                f"{height} x {width} pixels, {self.data.dtype}")
        return text + (f"; {self.dropped} frame(s) left out" if self.dropped else "")

    def laser(self, number: int) -> np.ndarray:
        """All frames of laser ``number`` (1-based), shape ``(cycles, H, W)``."""
        self._check_laser(number)
        return self.data[:, number - 1]

    def composite(self, cycle: int, lasers: tuple[int, ...]) -> np.ndarray:
        """The frames of ``lasers`` (1-based) at ``cycle`` as one ``(H, W, len(lasers))`` image."""
        for number in lasers:
            self._check_laser(number)
        return np.stack([self.data[cycle, number - 1] for number in lasers], axis=-1)

    def _check_laser(self, number: int) -> None:
        if not 1 <= number <= self.lasers:
            raise ParameterError(f"laser={number} is invalid: {self.path} has lasers 1 to "
                                 f"{self.lasers}.")


def load_stack(path: str | os.PathLike[str], config: SplitConfig = SplitConfig()) -> LaserStack:
    """Open a TIFF stack and de-interleave its lasers without reading it whole.

    Parameters
    ----------
    path : path-like
        A multi-page TIFF (frames interleaved by laser) or an ImageJ/OME hyperstack with
        a channel axis (then each channel is a laser and ``config.lasers`` must match).
    config : SplitConfig
        ``lasers`` and ``offset`` are used.

    Returns
    -------
    LaserStack

    Raises
    ------
    InputError
        Missing file, not a TIFF, a single 2-D image, fewer frames than lasers.
    ParameterError
        ``lasers < 1``, or a hyperstack whose channel count differs from ``lasers``.

    Examples
    --------
    >>> from unetlib.core.config import SyntheticConfig
    >>> from unetlib.data.synthetic import write_synthetic_stack
    >>> path, _ = write_synthetic_stack(getfixture("tmp_path") / "mouse.tif",
    ...                                 SyntheticConfig(cycles=5, height=32, width=40))
    >>> stack = load_stack(path)
    >>> stack.cycles, stack.lasers, stack.laser(3).shape  # laser 3's frames, one per cycle
    (5, 4, (5, 32, 40))
    """
    path = Path(path)
    try:
        config.validate()
    except ParameterError as error:
        raise ParameterError(f"{path}: {error}") from None
    array, axes = open_tiff_series(path)
    if "C" in axes:
        return _from_hyperstack(path, array, axes, config)
    spatial = [axis for axis in axes if axis not in "YX"]
    if array.ndim < 3 or not spatial:
        raise InputError(describe(path, f"is a single 2-D image (shape {array.shape}), not a stack",
                                  "Give the multi-page TIFF of the whole acquisition."))
    if "S" in axes:
        raise InputError(describe(path, f"holds colour (RGB) frames, axes {axes!r}",
                                  "Give the camera's single-channel multi-page TIFF."))
    frames = array.reshape(-1, *array.shape[-2:])
    return _deinterleave(path, frames, config)


def open_tiff_series(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """Return a TIFF's first image series, memory-mapped, and its axes: the one stack reader.

    Uncompressed files are mapped (nothing is read until used); compressed or tiled ones
    are decoded once into a temporary memory-mapped file, so memory stays small either
    way. Prediction and quantification read stacks through this function too.

    Raises
    ------
    InputError
        When the file is missing, not a TIFF, or truncated/damaged (a partial copy is
        refused outright: its missing frames would otherwise read as zeros or crash
        halfway through an export).
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path)
    with tifffile_problems() as problems:
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                axes = series.axes
                shape = series.shape
        except (tifffile.TiffFileError, ValueError, OSError, IndexError, KeyError) as error:
            if problems:
                raise damaged_tiff_error(path, problems[0]) from None
            raise InputError(describe(path, f"is not a TIFF file ({error})",
                                      "Give a .tif stack exported by the camera software.")
                             ) from None
        if problems:
            raise damaged_tiff_error(path, problems[0])
        try:
            array = tifffile.memmap(path, mode="r")
        except (ValueError, OSError) as error:
            if "larger than file size" in str(error) or "greater than file size" in str(error):
                raise damaged_tiff_error(path, "the image data ends before the last frame"
                                         ) from None
            # Compressed or tiled files cannot be mapped: decode once into a temporary memmap
            # so memory stays small; this is slower than mapping but works for any layout.
            logger.info("%s is not memory-mappable; decoding it into a temporary file", path)
            try:
                with tifffile.TiffFile(path) as tif:
                    array = tif.series[0].asarray(out="memmap")
            except (tifffile.TiffFileError, ValueError, OSError, IndexError) as error:
                raise damaged_tiff_error(path, str(error)) from None
        if problems:
            raise damaged_tiff_error(path, problems[0])
    return array.reshape(shape), axes


def _from_hyperstack(path: Path, array: np.ndarray, axes: str, config: SplitConfig) -> LaserStack:
    channel = axes.index("C")
    rest = [i for i, axis in enumerate(axes) if axis not in "CYX"]
    order = rest + [channel, axes.index("Y"), axes.index("X")]
    data = np.transpose(array, order)
    channels = data.shape[-3]
    if channels != config.lasers:
        raise ParameterError(f"lasers={config.lasers} is invalid: {path} is a hyperstack "
                             f"with {channels} channels; pass --lasers {channels}.")
    data = data.reshape(-1, channels, *data.shape[-2:])
    numbers = np.arange(data.shape[0] * channels).reshape(data.shape[0], channels)
    return LaserStack(path=path, data=data, frame_numbers=numbers, dropped=0, hyperstack=True)


def _deinterleave(path: Path, frames: np.ndarray, config: SplitConfig) -> LaserStack:
    lasers, offset = config.lasers, config.offset
    total = frames.shape[0]
    usable = total - offset
    if usable < lasers:
        raise InputError(describe(
            path, f"has {total} frames, fewer than the {lasers} lasers of one cycle"
                  + (f" after skipping {offset}" if offset else ""),
            "Check --lasers and --offset, or give the whole acquisition."))
    cycles = usable // lasers
    dropped = usable - cycles * lasers
    if dropped:
        warnings.warn(f"{path}: the last {dropped} frame(s) form an incomplete laser cycle "
                      f"and were dropped ({cycles} complete cycles of {lasers} lasers kept).",
                      UnetlibWarning, stacklevel=3)
    data = frames[offset:offset + cycles * lasers].reshape(cycles, lasers, *frames.shape[-2:])
    numbers = offset + np.arange(cycles * lasers).reshape(cycles, lasers)
    return LaserStack(path=path, data=data, frame_numbers=numbers, dropped=dropped + offset)


def contrast_limits(image: np.ndarray,
                    percentiles: tuple[float, float] = (0.5, 99.8)) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's low and high percentile: the intensity range a frame is shown in.

    The one rule behind every picture of a frame (:func:`contrast_stretch`, hence
    :func:`display_scale` and the overlays; the feature-map plots): percentiles rather than
    the extremes, so a few hot pixels or a dark border do not wash out the rest, and frames of
    any bit depth look alike. Non-finite pixels (float TIFFs) are left out; a channel without
    finite pixels gets 0 and 0. Above :data:`EXACT_PERCENTILE_PIXELS` pixels per channel the
    percentiles come from every 4th row and column: 16 times less work for a range no one can
    tell apart on screen.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, C)
        Any dtype.
    percentiles : (float, float)
        Low and high percentile, 0 to 100.

    Returns
    -------
    (low, high) : float64 scalars for an (H, W) image, arrays of shape (C,) otherwise

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.stack([np.arange(100.0).reshape(10, 10), np.full((10, 10), 7.0)], axis=-1)
    >>> low, high = contrast_limits(frame, (1.0, 99.0))  # 2 channels
    >>> low.tolist(), high.tolist()
    ([0.99, 7.0], [98.01, 7.0])
    """
    values = np.asarray(image, dtype=np.float32)
    step = 4 if values.shape[0] * values.shape[1] > EXACT_PERCENTILE_PIXELS else 1
    sample = values[::step, ::step]
    finite = np.isfinite(sample)
    if finite.all():
        low, high = np.percentile(sample, percentiles, axis=(0, 1))
    else:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)  # such a channel gets 0, 0
            low, high = np.nan_to_num(np.nanpercentile(np.where(finite, sample, np.nan), percentiles,
                                                       axis=(0, 1)))
    return low, high


def contrast_stretch(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.8)) -> np.ndarray:
    """Map each channel's :func:`contrast_limits` to 0 and 1, clipping beyond: a frame for viewing.

    Non-finite pixels (float TIFFs) show as 0, black; the rest keeps its contrast.

    Parameters
    ----------
    image : ndarray of shape (H, W) or (H, W, C)
        Any dtype; each channel is stretched on its own.
    percentiles : (float, float)
        Low and high percentile, 0 to 100, mapped to 0 and 1.

    Returns
    -------
    ndarray of float32, the shape of ``image``, in [0, 1]

    Examples
    --------
    >>> import numpy as np
    >>> frame = np.array([[0, 10], [30, 1000]], np.uint16)  # 1000: a hot pixel
    >>> contrast_stretch(frame, (0.0, 50.0)).tolist()
    [[0.0, 0.5], [1.0, 1.0]]
    >>> contrast_stretch(np.array([[0.0, np.nan], [np.inf, 4.0]]), (0.0, 100.0)).tolist()
    [[0.0, 0.0], [0.0, 1.0]]
    """
    values = np.asarray(image, dtype=np.float32)
    low, high = contrast_limits(values, percentiles)
    finite = np.isfinite(values)
    if not finite.all():
        values = np.where(finite, values, low)
    return np.clip((values - low) / np.maximum(high - low, 1e-6), 0.0, 1.0).astype(np.float32, copy=False)


def display_scale(image: np.ndarray, percentiles: tuple[float, float] = (0.5, 99.8)) -> np.ndarray:
    """:func:`contrast_stretch` to 0-255: an 8-bit image for viewing and GIMP.

    Only for display and annotation: training reads the lossless frames.

    Examples
    --------
    >>> import numpy as np
    >>> picture = display_scale(np.arange(1000, dtype=np.uint16).reshape(25, 40))
    >>> picture.dtype, int(picture.min()), int(picture.max())
    (dtype('uint8'), 0, 255)
    """
    return np.rint(contrast_stretch(image, percentiles) * 255.0).astype(np.uint8)


@dataclass(frozen=True)
class SplitResult:
    """What :func:`split_stack` wrote: the output folder, its manifest and file counts."""

    out_dir: Path
    manifest: Path
    counts: dict[str, int]
    dropped: int


def split_stack(stack_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                config: SplitConfig = SplitConfig(), *, workers: int = 2,
                progress: bool = False) -> SplitResult:
    """De-interleave a stack and export per-laser frames and composites.

    Writes ``laser1/ … laserN/`` (bit depth kept), ``channels3/`` (lasers
    ``config.composite3``: ``<cycle>.png`` 8-bit display-scaled for annotation and
    ``<cycle>.tif`` lossless for training) and ``channels4/`` (``<cycle>.tif``; a
    4-channel PNG would be read as RGBA) when the stack has enough lasers, plus
    ``manifest.csv`` and ``split.json`` (the source file and parameters). Files are named
    by cycle (time point), zero-padded. Repeating the same split of the same file is a
    no-op, so notebooks can be re-run.

    Everything is written into a staging folder and moved into ``out_dir`` only when
    complete, so a failure leaves no half-written output. Existing outputs are replaced
    only with ``config.force``.

    Raises
    ------
    InputError, ParameterError
        See :func:`load_stack`.
    OutputError
        When the output folder cannot be written, or outputs exist and ``force`` is off.
    """
    if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ParameterError(f"workers={workers!r} is invalid: expected a whole number of writer "
                             f"threads from 1 to {MAX_WORKERS}.")
    stack = load_stack(stack_path, config)
    if config.frame_format == "png" and stack.data.dtype not in (np.uint8, np.uint16):
        raise ParameterError(describe(stack.path, f"holds {stack.data.dtype} frames, which a "
                                      "PNG cannot store without loss",
                                      "Split it with --format tif."))
    out_dir = Path(out_dir)
    folders = [f"laser{n}" for n in range(1, stack.lasers + 1)]
    # Composites need 3 (4) lasers; a stack with fewer simply has none, but naming a laser
    # the stack does not have is a mistake to report, not to skip.
    for name, lasers, size in (("composite3", config.composite3, 3),
                               ("composite4", config.composite4, 4)):
        if stack.lasers >= size and max(lasers) > stack.lasers:
            raise ParameterError(f"{stack.path}: {name}={','.join(map(str, lasers))} is invalid: "
                                 f"the stack has lasers 1 to {stack.lasers}.")
        if stack.lasers >= size:
            folders.append(f"channels{size}")
    width = max(4, len(str(stack.cycles - 1)))
    names = [f"{cycle:0{width}d}" for cycle in range(stack.cycles)]
    jobs = _export_jobs(stack, folders, names, config)
    rows = _manifest_rows(stack, jobs)
    record = {"stack": str(stack.path.resolve()), "bytes": stack.path.stat().st_size,
              "modified_ns": stack.path.stat().st_mtime_ns, "config": to_dict(config)}
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(describe(out_dir, "exists and is not a folder",
                                   "Choose an output folder path."))
    with output_lock(out_dir):
        if not config.force and _same_split(out_dir, rows, record):
            logger.info("%s already holds this split of %s; nothing to do", out_dir, stack.path)
        else:
            refuse_existing([out_dir / name for name in (*folders, "manifest.csv", "split.json")],
                            overwrite=config.force, folder=out_dir,
                            fix="Choose another --out or pass --force to replace them.")
            # With force, folders of the previous split that this one does not write (a
            # 4-laser split redone with 2 lasers) go too, or they would sit beside a manifest
            # that no longer lists them.
            stale = {name: files for name, files in _split_folders(out_dir).items()
                     if name not in folders}
            try:
                with staged_folder(out_dir) as staging:
                    for folder in folders:
                        ensure_folder(staging / folder)
                    _run_jobs(jobs, staging, workers=workers, progress=progress,
                              description=f"split {stack.path.name}")
                    write_csv(staging / "manifest.csv", rows, MANIFEST_FIELDS)
                    write_json(staging / "split.json", record)
            except KeyboardInterrupt:
                raise Interrupted(describe(out_dir, "split interrupted; nothing of it was kept "
                                           "(the staging folder was removed) and earlier "
                                           "contents are unchanged",
                                           "Run the same command again.")) from None
            for name, files in stale.items():
                _remove_split_folder(out_dir / name, files)
    counts = {folder: sum(1 for row in rows if str(row["file"]).startswith(folder + "/"))
              for folder in folders}
    logger.info("split %s into %s: %s", stack.path, out_dir, counts)
    return SplitResult(out_dir=out_dir, manifest=out_dir / "manifest.csv", counts=counts,
                       dropped=stack.dropped)


# The folders split_stack writes; only these are ever removed as a previous split's.
_SPLIT_FOLDER = re.compile(r"laser[1-9][0-9]*|channels[34]")
_SPLIT_FILE = re.compile(r"[0-9]+\.(png|tif)")


def _split_folders(out_dir: Path) -> dict[str, list[str]]:
    """The folders a previous split recorded in ``out_dir/manifest.csv`` (none without one),
    each with the file names it recorded there.

    Only entries a split writes count (``laser<n>/<cycle>.png`` and the like, directly
    inside ``out_dir``); anything else a manifest names, such as a user's folder or a path
    outside ``out_dir``, is ignored.
    """
    manifest = out_dir / "manifest.csv"
    if not manifest.is_file():
        return {}
    try:
        rows = read_csv(manifest)
    except (InputError, UnicodeDecodeError):
        return {}
    folders: dict[str, list[str]] = {}
    for row in rows:
        parts = str(row.get("file", "")).split("/")
        if (len(parts) == 2 and _SPLIT_FOLDER.fullmatch(parts[0])
                and _SPLIT_FILE.fullmatch(parts[1])):
            folders.setdefault(parts[0], []).append(parts[1])
    return {name: sorted(files) for name, files in sorted(folders.items())
            if (out_dir / name).is_dir() and not (out_dir / name).is_symlink()}


def _remove_split_folder(folder: Path, files: list[str]) -> None:
    """Delete the files a previous split wrote in ``folder``, then the folder if that
    emptied it; other files (a user's) stay, with a warning."""
    for name in files:
        path = folder / name
        if path.is_file() and not path.is_symlink():
            path.unlink()
    try:
        folder.rmdir()
    except OSError:
        warnings.warn(describe(folder, "was a folder of the previous split and keeps files "
                               "it did not write", "Move them elsewhere and delete the "
                               "folder if you no longer need it."), UnetlibWarning,
                      stacklevel=3)
    else:
        logger.info("removed %s of the previous split", folder)


def _manifest_rows(stack: LaserStack, jobs: list[Job]) -> list[dict[str, str]]:
    rows = []
    for relative, cycle, lasers in (job[3] for job in jobs):
        numbers = [int(stack.frame_numbers[cycle, n - 1]) for n in lasers]
        rows.append({"file": relative, "cycle": str(cycle), "lasers": " ".join(map(str, lasers)),
                     "stack_frames": " ".join(map(str, numbers))})
    rows.sort(key=lambda row: (row["file"].split("/")[0], int(row["cycle"]), row["file"]))
    return rows


def _same_split(out_dir: Path, rows: list[dict[str, str]], record: dict) -> bool:
    """True when ``out_dir`` already holds exactly this split of this file (a repeated run)."""
    if not (out_dir / "manifest.csv").is_file() or not (out_dir / "split.json").is_file():
        return False
    stored, current = as_record(read_json(out_dir / "split.json")), as_record(record)
    # The same file moved or reached by another path (a copied project) is the same source:
    # compare its name, size and modification time, not where it lives.
    for entry in (stored, current):
        entry["stack"] = Path(str(entry.get("stack", ""))).name
    return same_request(current, stored) and read_csv(out_dir / "manifest.csv") == rows


Job = tuple  # (function, arguments, keyword arguments, (relative path, cycle, lasers))


def _export_jobs(stack: LaserStack, folders: list[str], names: list[str],
                 config: SplitConfig) -> list[Job]:
    suffix = "." + config.frame_format
    jobs: list[Job] = []
    for cycle, name in enumerate(names):
        for folder in folders:
            if folder.startswith("laser"):
                number = int(folder[len("laser"):])
                relative = f"{folder}/{name}{suffix}"
                jobs.append((_write_laser_frame, (stack, cycle, number, relative), {},
                             (relative, cycle, (number,))))
            elif folder == "channels3":
                for extension in (".png", ".tif"):
                    relative = f"{folder}/{name}{extension}"
                    jobs.append((_write_composite, (stack, cycle, config.composite3, relative),
                                 {"display": extension == ".png",
                                  "percentiles": config.display_percentiles},
                                 (relative, cycle, config.composite3)))
            else:
                relative = f"{folder}/{name}.tif"
                jobs.append((_write_composite, (stack, cycle, config.composite4, relative),
                             {"display": False, "percentiles": config.display_percentiles},
                             (relative, cycle, config.composite4)))
    return jobs


def _write_laser_frame(stack: LaserStack, cycle: int, laser: int, path: Path) -> None:
    write_image(path, np.asarray(stack.data[cycle, laser - 1]))


def _write_composite(stack: LaserStack, cycle: int, lasers: tuple[int, ...], path: Path, *,
                     display: bool, percentiles: tuple[float, float]) -> None:
    image = stack.composite(cycle, lasers)
    write_image(path, display_scale(image, percentiles) if display else image)


def _run_jobs(jobs: list[Job], folder: Path, *, workers: int, progress: bool,
              description: str) -> None:
    """Run export jobs on a small thread pool (PNG/TIFF encoding releases the GIL).

    Jobs are submitted a few at a time and Ctrl-C is taken only between them: a
    ``KeyboardInterrupt`` raised inside the thread pool's or the import system's own
    locks (while the first writer loads Pillow's plugins) can hang the process.
    """
    from PIL import Image

    Image.init()  # load every image plugin now, before any writer thread needs one
    queue = iter(jobs)
    in_flight = 4 * workers
    with progress_bar(total=len(jobs), description=description, unit="file",
                      enabled=progress) as bar, \
            deferred_interrupt() as interrupted:
        pool = ThreadPoolExecutor(max_workers=workers)
        pending: set = set()
        try:
            while True:
                for function, args, kwargs, _ in itertools.islice(queue, in_flight - len(pending)):
                    pending.add(pool.submit(function, *args[:-1], folder / args[-1], **kwargs))
                if not pending:
                    break
                done, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()
                bar.update(len(done))
                if interrupted():
                    raise KeyboardInterrupt
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[Callable[[], bool]]:
    """Within the block, Ctrl-C only sets a flag; the yielded function says whether it came.

    The caller checks the flag at safe points and raises ``KeyboardInterrupt`` itself.
    Outside the main thread (where signal handlers cannot be set) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda number, frame: received.append(number))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGINT, previous)
