"""How much memory and disk a step needs, checked before it starts.

A size typed by mistake (``--patch-size 100000``, a synthetic stack of 100000 x 100000
frames) must end in one clear line, not in the kernel killing the process after it took
every other job's memory on a shared lab server. Each step estimates what it will
allocate or write and compares it with what this machine has *now*.

The estimates are deliberately simple and on the generous side: they exist to stop
sizes that cannot work, not to squeeze the last gigabyte out of a machine.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from unetlib.core.config import ModelConfig
from unetlib.core.errors import OutputError, ParameterError, describe

__all__ = ["QUANTIFY_WORKER_BYTES", "available_memory_bytes", "format_bytes", "free_disk_bytes", "require_disk",
           "require_memory", "training_memory_bytes"]

# Training keeps every activation for the backward pass and briefly holds their gradients
# as well; measured peaks (benchmarks/bench_train.py) stay below twice the activations.
_BACKWARD_FACTOR = 2.0
# TensorFlow's runtime, the model's weights and optimiser state, the input pipeline.
_FIXED_TRAINING_BYTES = 512 * 1024 ** 2


# One quantify worker process: Python, TensorFlow's runtime, the model and a cycle's tiles
# (measured: 8 local workers on small stacks took 7.5 GB together; one process on the demo
# study's 508 x 636 mice peaked at 0.96 GB).
QUANTIFY_WORKER_BYTES = 1000 * 1000 ** 2


def format_bytes(count: float) -> str:
    """``1234567`` -> ``"1.2 MB"`` (decimal units, as file managers show them).

    Examples
    --------
    >>> format_bytes(1234567)
    '1.2 MB'
    >>> format_bytes(512)
    '512 bytes'
    """
    for unit in ("bytes", "KB", "MB", "GB"):
        if abs(count) < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "bytes" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


def available_memory_bytes() -> int:
    """Memory a new allocation can get without pushing others out (``MemAvailable``).

    Falls back to the physical memory size where ``/proc/meminfo`` does not exist.
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # pragma: no cover - exotic platforms
        return 8 * 1024 ** 3


# How TensorFlow says an allocation failed: its own out-of-memory error, and oneDNN's
# "could not create a primitive" (raised as AbortedError) when a kernel's scratch memory
# cannot be had.
_TENSORFLOW_OUT_OF_MEMORY = ("OOM when allocating", "could not create a primitive",
                             "out of memory")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is a failed allocation: Python's ``MemoryError`` or TensorFlow's.

    TensorFlow's errors are recognised by class name and message, so callers need not
    import TensorFlow to catch them.
    """
    if isinstance(error, MemoryError) or (isinstance(error, OSError)
                                          and error.errno == errno.ENOMEM):
        return True
    name = type(error).__name__
    if name == "ResourceExhaustedError":
        return True
    return (name in ("AbortedError", "InternalError", "UnknownError")
            and any(text in str(error) for text in _TENSORFLOW_OUT_OF_MEMORY))


def _existing(folder: str | os.PathLike[str]) -> Path:
    """``folder``, or its nearest parent that exists (outputs are often not made yet)."""
    folder = Path(folder).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_disk_bytes(folder: str | os.PathLike[str]) -> int:
    """Free space on the file system that holds ``folder`` (or its nearest existing parent)."""
    return shutil.disk_usage(_existing(folder)).free


def _read_only(folder: str | os.PathLike[str]) -> bool:
    return bool(os.statvfs(_existing(folder)).f_flag & os.ST_RDONLY)


def training_memory_bytes(config: ModelConfig, *, patch_size: int, batch_size: int) -> int:
    """Estimated peak memory of training ``config`` on ``batch_size`` patches of ``patch_size``².

    Counts the activations a U-Net keeps per input pixel: at level ``l`` (``F * 2**l``
    filters on ``1 / 4**l`` of the pixels) the encoder's two convolutions (each with its
    batch-norm and ReLU outputs), the pooled map, the decoder's up-sampled map,
    concatenation and two convolutions; then the bottleneck.
    """
    per_conv = 3 if config.batch_norm else 2
    floats_per_pixel = 0.0
    for level in range(config.depth):
        filters = config.base_filters * 2 ** level
        share = 1.0 / 4 ** level
        encoder = 2 * per_conv * filters + filters / 4
        decoder = filters + 2 * filters + 2 * per_conv * filters
        floats_per_pixel += (encoder + decoder) * share
    floats_per_pixel += 2 * per_conv * config.base_filters * 2 ** config.depth / 4 ** config.depth
    floats_per_pixel += 2 * config.input_channels + 2  # the input, mask and output
    activations = 4.0 * floats_per_pixel * patch_size ** 2 * batch_size
    return int(_BACKWARD_FACTOR * activations + _FIXED_TRAINING_BYTES)


def require_memory(needed: int, where: str | os.PathLike[str], what: str, fix: str) -> None:
    """Raise :class:`ParameterError` when ``needed`` bytes exceed the memory available now."""
    available = available_memory_bytes()
    if needed > available:
        raise ParameterError(describe(where, f"{what} needs about {format_bytes(needed)} of "
                                      f"memory, more than the {format_bytes(available)} "
                                      "available on this machine", fix))


def require_disk(needed: int, folder: str | os.PathLike[str], what: str, fix: str) -> None:
    """Raise :class:`OutputError` when ``needed`` bytes exceed the free space at ``folder``.

    A read-only file system reports no free space; it is named as what it is.
    """
    if _read_only(folder):
        raise OutputError(describe(folder, "is on a read-only file system",
                                   "Choose an output folder on a writable disk."))
    free = free_disk_bytes(folder)
    if needed > free:
        raise OutputError(describe(folder, f"{what} needs {format_bytes(needed)} of disk, more "
                                   f"than the {format_bytes(free)} free there", fix))
