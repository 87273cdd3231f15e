"""Reading and writing images, tables and JSON, dtype-preserving and atomic.

Images are numpy arrays of shape ``(H, W)`` or ``(H, W, C)`` (channel-last) whose dtype
is the file's own: a 16-bit frame stays ``uint16``, it is never rescaled to 8 bits here.
Every write goes to a temporary file in the destination folder and is renamed into place,
so an interrupted run never leaves a truncated file under the final name, and an existing
file is only replaced when the caller says ``overwrite=True``.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from unetlib.core.errors import InputError, OutputError, describe

PNG_SUFFIXES = (".png",)
TIFF_SUFFIXES = (".tif", ".tiff")
PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
IMAGE_SUFFIXES = PILLOW_SUFFIXES + TIFF_SUFFIXES
# A single frame larger than this is not a frame (a stack, or a corrupt header that would
# make the reader allocate it): refused before reading. 2 GB is a 32k x 32k 16-bit image.
MAX_IMAGE_BYTES = 2 * 1024 ** 3


def natural_key(path: str | os.PathLike[str]) -> list[Any]:
    """Sort key that orders ``2.png`` before ``10.png`` (numbers compared as numbers)."""
    stem = Path(path).name
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", stem)]


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Return the image files directly inside ``folder``, in natural order.

    Hidden files (GIMP and editors leave ``.`` files behind) and non-image files are
    ignored. Raises :class:`InputError` when the folder does not exist.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(describe(folder, "folder not found", "Check the path."))
    files = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES]
    return sorted(files, key=natural_key)


def missing_file_error(path: str | os.PathLike[str]) -> InputError:
    """The error for a path that is not a readable file: missing, a folder, or a broken link."""
    path = Path(path)
    if path.is_dir():
        return InputError(describe(path, "is a folder, not a file", "Give the path of a file."))
    if path.is_symlink():
        return InputError(describe(path, "is a broken symbolic link (its target is missing, or "
                                   "it points to itself)", "Replace it with the real file."))
    return InputError(describe(path, "file not found", "Check the path."))


def progress_wanted(enabled: bool) -> bool:
    """Whether to draw a progress bar: asked for, and stderr is a terminal. In a log file
    or a pipe a bar writes a carriage-return line per update; the step's own summary line
    says the same once."""
    return enabled and sys.stderr.isatty()


def progress_bar(items: Iterable | None = None, *, description: str, unit: str,
                 enabled: bool, total: int | None = None) -> tqdm:
    """A tqdm bar over ``items`` (or of ``total`` steps), drawn only when
    :func:`progress_wanted`; iterating it yields ``items`` either way."""
    return tqdm(items, total=total, desc=description, unit=unit,
                disable=not progress_wanted(enabled))


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one 2-D image, keeping its dtype.

    Parameters
    ----------
    path : path-like
        A PNG, JPEG, BMP, GIF or single-image TIFF.

    Returns
    -------
    ndarray of shape (H, W) or (H, W, C)
        ``uint8`` or ``uint16`` as stored (TIFF may also give float). Palette images are
        expanded to RGB, or RGBA when the palette has transparency.

    Raises
    ------
    InputError
        When the file is missing, unreadable, not an image, or holds more than one image.
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return _read_tiff_image(path)
    try:
        with Image.open(path) as image:
            image.load()
            return _pillow_to_array(image)
    except Image.DecompressionBombError as error:
        raise InputError(describe(path, f"is too large to be a frame ({error})",
                                  "Give a single frame of the acquisition.")) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise InputError(describe(path, f"not a readable image ({error})",
                                  "Re-export it as PNG or TIFF.")) from None


def _pillow_to_array(image: Image.Image) -> np.ndarray:
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    elif image.mode in ("LA", "PA"):
        image = image.convert("RGBA")
    elif image.mode in ("CMYK", "YCbCr", "HSV", "LAB"):
        image = image.convert("RGB")
    elif image.mode == "1":
        image = image.convert("L")
    array = np.asarray(image)
    if image.mode in ("I", "I;16", "I;16B", "I;16L") and array.dtype != np.uint16:
        # Pillow widens 16-bit PNGs to int32 in some versions; the values fit in uint16.
        if array.size and (array.min() < 0 or array.max() > np.iinfo(np.uint16).max):
            return array.astype(np.int32)
        array = array.astype(np.uint16)
    return np.array(array)


def _read_tiff_image(path: Path) -> np.ndarray:
    with tifffile_problems() as problems:
        try:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                if series.nbytes > MAX_IMAGE_BYTES:
                    raise InputError(describe(path, f"holds {series.nbytes / 1e9:.1f} GB of "
                                              f"image data (shape {series.shape})",
                                              "Give a single frame; use split-stack for stacks."))
                array = series.asarray()
                axes = series.axes
        except (tifffile.TiffFileError, ValueError, OSError, IndexError) as error:
            if problems:
                raise damaged_tiff_error(path, problems[0]) from None
            raise InputError(describe(path, f"not a readable TIFF ({error})",
                                      "Re-export it as TIFF or PNG.")) from None
    if problems:
        raise damaged_tiff_error(path, problems[0])
    # Channel axes ("C" channels, "S" samples) go last; other singleton axes are dropped.
    for axis_name in "CS":
        if axis_name in axes and array.ndim >= 3:
            index = axes.index(axis_name)
            array = np.moveaxis(array, index, -1)
            axes = axes[:index] + axes[index + 1:] + axis_name
    keep = [i for i, size in enumerate(array.shape) if size != 1 or i >= array.ndim - 2]
    array = array.reshape([array.shape[i] for i in keep]) if len(keep) != array.ndim else array
    if array.ndim == 3 and array.shape[-1] > 4:
        raise InputError(describe(path, f"holds {array.shape[0]} images (shape {array.shape}), "
                                  "not one", "Give a single frame; use split-stack for stacks."))
    if array.ndim not in (2, 3):
        raise InputError(describe(path, f"has shape {array.shape}, not a single 2-D image",
                                  "Give a single frame; use split-stack for stacks."))
    return array


PART_MARKER = ".part"
STAGING_SUFFIX = ".staging"


def process_umask() -> int:
    """The process's file-creation mask, read without changing it where the OS allows.

    ``os.umask`` can only be read by setting it, which is not thread-safe; Linux reports
    it in ``/proc/self/status``.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def give_normal_permissions(path: str | os.PathLike[str]) -> None:
    """Set the permissions a plain ``open()`` or ``mkdir()`` would have given ``path``.

    Temporary files and folders are created private (0600 / 0700); renamed into place as
    they are, colleagues could not read the results. Final outputs follow the umask.
    """
    path = Path(path)
    mode = 0o777 if path.is_dir() else 0o666
    os.chmod(path, mode & ~process_umask())


def write_error(path: str | os.PathLike[str], error: OSError) -> OutputError:
    """The one-line :class:`OutputError` for an ``OSError`` raised while writing ``path``."""
    reason = error.strerror or str(error) or type(error).__name__
    if error.errno is None and _disk_nearly_full(Path(path).parent):
        # Some writers (tifffile: "327680 requested and 186216 written") report a short
        # write without an errno; a full file system is then the reason.
        reason = f"No space left on device: {reason}"
        error = OSError(errno.ENOSPC, reason)
    if error.errno == errno.ENOSPC:
        fix = "Free disk space (or choose an output on another disk) and run the step again."
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "Choose a writable location, or ask for write permission."
    else:
        fix = "Check free space and permissions."
    return OutputError(describe(path, f"cannot be written ({reason})", fix))


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def tifffile_problems() -> Iterator[list[str]]:
    """Collect what tifffile logs about a damaged file instead of letting it print.

    tifffile reports truncated or corrupt files (``invalid page offset``, a series that
    fails to reshape) by logging and carrying on with what it could read; callers turn a
    non-empty list into one clear error naming the file.
    """
    tiff_logger = logging.getLogger("tifffile")
    handler = _Collect()
    previous = tiff_logger.propagate
    tiff_logger.addHandler(handler)
    tiff_logger.propagate = False
    try:
        yield handler.messages
    finally:
        tiff_logger.removeHandler(handler)
        tiff_logger.propagate = previous


def damaged_tiff_error(path: Path, problem: str) -> InputError:
    """The error for a TIFF that tifffile can only partly read (truncated copy, bad IFD).

    Raises ``MemoryError`` instead when what tifffile met was a failed allocation
    (``[Errno 12]``): the file is fine, the machine is short of memory.
    """
    problem = re.sub(r"^<[^>]*>\s*", "", problem)
    if f"[Errno {errno.ENOMEM}]" in problem or "MemoryError" in problem:
        raise MemoryError(f"{path}: {problem}")
    size = path.stat().st_size if path.exists() else 0
    return InputError(describe(path, f"is damaged or truncated ({problem}; {size} bytes on disk)",
                               "Copy it again from the acquisition computer and check that the "
                               "copy finished."))


REPLACE_FIX = "Choose another output or pass --force to replace it."


def refuse_existing(paths: Iterable[str | os.PathLike[str]], *, overwrite: bool = False,
                    folder: str | os.PathLike[str] | None = None, fix: str = REPLACE_FIX) -> None:
    """Raise :class:`OutputError` when any of ``paths`` exists, unless ``overwrite``.

    The one place that decides "this would replace something of yours": every step calls it
    before long work, so nothing is overwritten without ``--force`` and the refusal reads
    alike everywhere.

    Parameters
    ----------
    paths : iterable of path-like
        Where the step is about to write (files or folders).
    overwrite : bool
        Replacing is allowed (``--force``): nothing is checked.
    folder : path-like, optional
        The output folder the paths lie in: the message then names the folder and the
        entries it already holds (``out: already holds laser1, manifest.csv``) rather than
        the first file.
    fix : str
        What the user can do instead, ending the message.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> out = Path(tempfile.mkdtemp())
    >>> (out / "a.png").touch()
    >>> refuse_existing([out / "a.png", out / "b.png"], overwrite=True)  # --force: allowed
    >>> try:
    ...     refuse_existing([out / "a.png", out / "b.png"], folder=out)
    ... except OutputError as error:
    ...     print(str(error).replace(str(out), "OUT"))
    OUT: already holds a.png. Choose another output or pass --force to replace it.
    """
    if overwrite:
        return
    existing = [Path(path) for path in paths if Path(path).exists() or Path(path).is_symlink()]
    if not existing:
        return
    if folder is not None:
        folder = Path(folder)
        names = [str(path.relative_to(folder)) if path.is_relative_to(folder) else str(path)
                 for path in existing]
        shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        raise OutputError(describe(folder, f"already holds {shown}", fix))
    more = f" (and {len(existing) - 1} more of the outputs)" if len(existing) > 1 else ""
    raise OutputError(describe(existing[0], f"already exists{more}", fix))


def check_output_file(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Return ``path`` if a file may be written there, else raise :class:`OutputError`.

    A folder is never a file's destination, and an existing file is only replaced with
    ``overwrite`` (:func:`refuse_existing`): call this before long work whose result goes
    to ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise OutputError(describe(path, "is a folder, not a file",
                                   "Give a file name for this output."))
    refuse_existing([path], overwrite=overwrite)
    return path


def _disk_nearly_full(folder: Path, margin: int = 1024 ** 2) -> bool:
    """True when the file system holding ``folder`` has less than ``margin`` bytes free."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free < margin
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place when the block succeeds.

    The temporary file is hidden (``.<name>.<random>.part<suffix>``: the suffix is kept so
    writers that choose a format by suffix still work) and removed when the block fails;
    one left by a killed process is found by :func:`unetlib.core.locking.remove_leftovers`.
    The final file gets the permissions a normal write would give.

    Raises
    ------
    OutputError
        When ``path`` is a folder, exists and ``overwrite`` is false, or cannot be written
        (no space, no permission: every ``OSError`` of the block becomes one).
    """
    path = check_output_file(path, overwrite=overwrite)
    ensure_folder(path.parent)
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.stem}.",
                                             suffix=f"{PART_MARKER}{path.suffix}", dir=path.parent)
    except OSError as error:
        raise write_error(path, error) from None
    os.close(handle)
    temporary_path = Path(temporary)
    try:
        yield temporary_path
        give_normal_permissions(temporary_path)
        os.replace(temporary_path, path)
    except OutputError:
        raise
    except OSError as error:
        raise write_error(path, error) from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            temporary_path.unlink()


def ensure_folder(folder: str | os.PathLike[str]) -> Path:
    """Create ``folder`` (and parents) or raise :class:`OutputError` saying why it can't be."""
    folder = Path(folder)
    blocker = next((parent for parent in (folder, *folder.parents)
                    if parent.exists() and not parent.is_dir()), None)
    if blocker is not None:
        raise OutputError(describe(folder, f"cannot create the output folder: {blocker} is a file",
                                   "Choose an output folder path that is not inside a file."))
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OutputError(describe(folder, f"cannot create the output folder ({error.strerror})",
                                   "Choose a writable location.")) from None
    if not os.access(folder, os.W_OK):
        raise OutputError(describe(folder, "output folder is not writable",
                                   "Choose a writable location."))
    return folder


def write_image(path: str | os.PathLike[str], image: np.ndarray, *,
                overwrite: bool = False, compress_level: int = 1,
                palette: Sequence[int] | None = None) -> Path:
    """Write ``image`` to ``path`` (PNG or TIFF by suffix) atomically, keeping its dtype.

    PNG takes ``uint8`` with 1, 3 or 4 channels and ``uint16`` with 1 channel; everything
    else (16-bit colour, 4-channel data that is not RGBA, float) must go to TIFF, which
    stores any dtype and channel count losslessly.

    Raises
    ------
    OutputError
        When the file exists and ``overwrite`` is false, or it cannot be written.
    ValueError
        When the array cannot be stored in the requested format.

    Notes
    -----
    With ``palette`` (768 RGB values), a 2-D ``uint8`` image is written as a palette PNG:
    its pixel values stay exact (label values) while any viewer shows them in colour.
    """
    path = Path(path)
    image = np.asarray(image)
    suffix = path.suffix.lower()
    if suffix in PNG_SUFFIXES:
        pil_image = _array_to_pillow(image, path)
        if palette is not None:
            if pil_image.mode != "L":
                raise ValueError(f"{path}: a palette PNG holds 8-bit single-channel values, "
                                 f"not {image.dtype} of shape {image.shape}")
            pil_image = pil_image.convert("P")
            pil_image.putpalette(list(palette))
    elif suffix not in TIFF_SUFFIXES:
        raise ValueError(f"{path}: unsupported image format {suffix!r}; use .png or .tif")
    with atomic_path(path, overwrite=overwrite) as temporary:
        if suffix in PNG_SUFFIXES:
            pil_image.save(temporary, format="PNG", compress_level=compress_level)
        else:
            _write_tiff(temporary, image)
    return path


def _array_to_pillow(image: np.ndarray, path: Path) -> Image.Image:
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype == np.uint8 and (image.ndim == 2 or image.shape[-1] in (3, 4)):
        return Image.fromarray(image)
    if image.dtype == np.uint16 and image.ndim == 2:
        return Image.fromarray(image)
    raise ValueError(f"{path}: a PNG cannot hold {image.dtype} data of shape {image.shape} "
                     "without loss; write a .tif instead")


def _write_tiff(path: Path, image: np.ndarray) -> None:
    if image.ndim == 3 and image.shape[-1] == 3 and image.dtype in (np.uint8, np.uint16):
        tifffile.imwrite(path, image, photometric="rgb")
    elif image.ndim == 3:
        tifffile.imwrite(path, image, photometric="minisblack", planarconfig="contig",
                         metadata={"axes": "YXS"})
    else:
        tifffile.imwrite(path, image, photometric="minisblack")


def write_csv(path: str | os.PathLike[str], rows: Iterable[Mapping[str, Any]],
              fieldnames: Sequence[str], *, overwrite: bool = False) -> Path:
    """Write ``rows`` as CSV with a header, atomically (an existing file only with
    ``overwrite``)."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as temporary:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(fieldnames))
            writer.writeheader()
            writer.writerows(rows)
    return path


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (how ``frames.csv`` remembers each picked frame)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_csv(path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Read a CSV file with a header into a list of dicts (a UTF-8 byte-order mark, as
    Excel saves one, is skipped)."""
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def write_json(path: str | os.PathLike[str], data: Any, *, overwrite: bool = False) -> Path:
    """Write ``data`` as indented JSON, atomically (an existing file only with
    ``overwrite``)."""
    path = Path(path)
    with atomic_path(path, overwrite=overwrite) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n",
                             encoding="utf-8")
    return path


def read_json(path: str | os.PathLike[str]) -> Any:
    """Read a JSON file, raising :class:`InputError` when it is missing or malformed."""
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(describe(path, f"is not valid JSON ({error})")) from None


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot store {type(value).__name__} in JSON")


@contextlib.contextmanager
def staged_folder(destination: str | os.PathLike[str], *,
                  last: Sequence[str] = ()) -> Iterator[Path]:
    """Build a folder's contents in a hidden staging folder; move them in on success.

    The staging folder (``.<random>.staging``) sits inside ``destination``, so the final
    moves are renames on one file system and a staging folder left by a killed process is
    found by :func:`unetlib.core.locking.remove_leftovers` when the next run locks the folder.
    When the block raises, the staging folder is removed and every existing entry of
    ``destination`` is left exactly as it was: no half-written output.

    Each top-level entry of the staging folder replaces the entry of the same name in
    ``destination``; callers check beforehand that replacing is allowed. Entries named in
    ``last`` are moved after all others: a marker that says the folder is complete.
    """
    created = not Path(destination).exists()
    destination = ensure_folder(destination)
    try:
        staging = Path(tempfile.mkdtemp(prefix=".", suffix=STAGING_SUFFIX, dir=destination))
    except OSError as error:
        raise write_error(destination, error) from None
    completed = False
    try:
        yield staging
        for entry in sorted(staging.iterdir(), key=lambda path: (path.name in last, path.name)):
            target = destination / entry.name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            os.replace(entry, target)
        completed = True
    except OutputError as error:
        # Name the file where it was going to be, not its hidden staging copy.
        raise OutputError(str(error).replace(str(staging), str(destination))) from None
    except OSError as error:
        raise write_error(destination, error) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created and not completed:
            with contextlib.suppress(OSError):
                destination.rmdir()  # only when nothing else was put there meanwhile
