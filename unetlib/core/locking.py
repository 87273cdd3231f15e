"""One writer per output folder, and the leftovers of interrupted runs.

Two trainings into one run folder, or a split while another split of the same folder
runs, would each succeed and leave a folder mixed from both. :func:`output_lock` makes
the second one stop with a message naming the first: every step that writes a folder
(split, pick, train, predict) holds a lock file ``<folder>/.unetlib.lock`` that records
the owner's process id, host, command and start time.

The lock is an advisory ``flock`` on that file where the OS has it (Linux, macOS): the
kernel releases it when the owner dies, even by ``kill -9``, so a stale lock file never
blocks anyone. Elsewhere the recorded process id is checked for life instead.

Temporary files (``.<name>.<random>.part<suffix>``, see :func:`unetlib.core.io.atomic_path`)
and staging folders (``.<random>.staging``, see :func:`unetlib.core.io.staged_folder`) are
removed when their step fails, but a killed process leaves them behind. Whoever holds a
folder's lock is its only writer, so any such leftover in it is stale:
:func:`remove_leftovers` deletes them and says how much space came back.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from unetlib.core.errors import OutputError, describe
from unetlib.core.io import (
    PART_MARKER,
    STAGING_SUFFIX,
    ensure_folder,
    give_normal_permissions,
    write_error,
)
from unetlib.core.resources import format_bytes

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

__all__ = ["LOCK_NAME", "find_leftovers", "output_lock", "remove_leftovers"]

LOCK_NAME = ".unetlib.lock"
_LEFTOVER = re.compile(rf"^\..+{re.escape(PART_MARKER)}(\.[^.]+)?$|^\..*{re.escape(STAGING_SUFFIX)}$")

# Folders this process holds, with how many nested holders: a step that calls another
# step on the same folder (the demo, a notebook) must not lock itself out. Process-wide
# by nature, as the kernel's locks are.
_held: dict[Path, int] = {}


def find_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Temporary files and staging folders directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if _LEFTOVER.match(path.name))


def _size(path: Path) -> int:
    if path.is_symlink() or not path.is_dir():
        return path.lstat().st_size
    return sum(entry.lstat().st_size for entry in path.rglob("*") if not entry.is_dir())


def remove_leftovers(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files and staging folders that interrupted runs left in ``folder``.

    Only call this while holding the folder's lock (:func:`output_lock` does): then no
    other process is writing them. A warning names what was removed and its size.

    Returns
    -------
    list of Path
        What was removed.
    """
    leftovers = find_leftovers(folder)
    if not leftovers:
        return []
    total = 0
    for path in leftovers:
        with contextlib.suppress(OSError):
            total += _size(path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    logger.warning("%s: removed %d leftover(s) of an interrupted run (%s): %s", folder,
                   len(leftovers), format_bytes(total),
                   ", ".join(path.name for path in leftovers[:3])
                   + (" ..." if len(leftovers) > 3 else ""))
    return leftovers


def _owner_record() -> str:
    command = " ".join(Path(sys.argv[0]).name if index == 0 else arg
                       for index, arg in enumerate(sys.argv)) if sys.argv else "python"
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    return f"pid={os.getpid()}\nhost={socket.gethostname()}\nstarted={started}\ncommand={command}\n"


def _parse_record(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _busy_error(folder: Path, record: dict[str, str]) -> OutputError:
    owner = f"process {record.get('pid', '?')}"
    if record.get("host") and record["host"] != socket.gethostname():
        owner += f" on {record['host']}"
    details = ", ".join(f"{key} {record[key]}" for key in ("started", "command") if record.get(key))
    return OutputError(describe(
        folder, f"is in use by {owner}" + (f" ({details})" if details else ""),
        "Wait for it to finish or stop it, or choose another output folder."))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold ``folder`` as its only writer for the duration of the block.

    Creates ``folder`` when missing (and removes it again if the block leaves it empty),
    takes the lock, removes the leftovers of interrupted runs (:func:`remove_leftovers`),
    and yields the folder. Re-entrant within one process.

    Raises
    ------
    OutputError
        When another live process holds the folder (the message names it), or the folder
        cannot be created or written.
    """
    folder = Path(folder)
    created = not folder.exists()
    folder = ensure_folder(folder)
    key = folder.resolve()
    if _held.get(key):
        _held[key] += 1
        try:
            yield folder
        finally:
            _held[key] -= 1
        return
    lock_path = folder / LOCK_NAME
    handle = _acquire(folder, lock_path)
    _held[key] = 1
    try:
        remove_leftovers(folder)
        yield folder
    finally:
        del _held[key]
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        with contextlib.suppress(OSError):
            os.close(handle)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when the block left nothing in it


def _acquire(folder: Path, lock_path: Path) -> int:
    """Open and lock ``lock_path``; return its descriptor with our record written in it."""
    while True:
        if lock_path.is_symlink():
            # Never ours: following it would overwrite whatever it points at.
            raise OutputError(describe(lock_path, "is a symbolic link, which unetlib never "
                                       "follows", "Delete the link (not what it points at) "
                                       "and run again."))
        try:
            handle = os.open(lock_path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0),
                             0o666)
        except OSError as error:
            raise write_error(lock_path, error) from None
        previous = _parse_record(os.pread(handle, 4096, 0).decode("utf-8", "replace"))
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(handle)
                raise _busy_error(folder, previous) from None
            # The holder may have unlinked the file between our open and our lock: then we
            # locked a file nobody else will see. Start again on the current one.
            try:
                if os.fstat(handle).st_ino != os.stat(lock_path).st_ino:
                    os.close(handle)
                    continue
            except FileNotFoundError:
                os.close(handle)
                continue
            previous = _parse_record(os.pread(handle, 4096, 0).decode("utf-8", "replace"))
        elif previous.get("pid", "").isdigit() and int(previous["pid"]) != os.getpid() \
                and previous.get("host") == socket.gethostname() and _pid_alive(int(previous["pid"])):
            os.close(handle)
            raise _busy_error(folder, previous)
        break
    if previous.get("pid"):
        logger.warning("%s: taking over the lock of process %s, which is no longer running "
                       "(interrupted run)", folder, previous["pid"])
    os.ftruncate(handle, 0)
    # surrogateescape: a path that is not UTF-8 is recorded as the bytes it is
    os.pwrite(handle, _owner_record().encode("utf-8", "surrogateescape"), 0)
    give_normal_permissions(lock_path)
    return handle
