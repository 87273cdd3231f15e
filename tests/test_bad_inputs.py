"""A catalogue of bad inputs: every CLI command against files and options users get wrong.

Each case in ``CASES`` builds a small workspace in a temporary folder (copies of shared
fixtures plus hand-made broken files), runs ``main(["-q", COMMAND, ...])`` in this
process and checks what the user would see and keep:

1. a non-zero exit status;
2. exactly one line on stderr starting with ``error:``, naming the offending file or
   folder (or, for a bad number, the option or the data folder);
3. no traceback: nothing escapes ``main`` and ``Traceback`` is printed nowhere (stdout,
   stderr, log records);
4. the user's files are untouched: every file, folder and link in the workspace keeps its
   sha256 (or target), and nothing new appears outside the folders a case allows.

Argparse usage errors (an unknown choice, a value that is not a number, a missing
required option) exit through ``SystemExit(2)`` with argparse's ``usage:`` and
``... error: ...`` lines instead; cases marked ``usage_error`` expect exactly that.

``check-masks`` reports problems as a table on stdout plus one ``error:`` summary line
naming the data folder; its cases also say, as a pattern, what the table must show.

Two safety nets keep a case that the library does not yet handle from taking the test
run down with it: in-process cases run under an address-space limit a few GiB above the
current use (a huge allocation then fails with MemoryError instead of exhausting the
machine) and an alarm; cases whose failure could crash the interpreter itself (a huge
TensorFlow batch) run ``main`` in a child Python with the same checks.

Some cases describe behaviour the library is still gaining; they fail until it does.

How to add a case: append a ``Case`` to ``CASES``. Give it an id ``command/what``, the
arguments after ``-q`` (``{ws}`` stands for the case's workspace folder), the setup
steps that build its inputs (``Copy`` a shared fixture, ``WriteText``, ``WriteTiff``,
``WritePicture``, ``TruncatedStack``, ``MakeFolder``, ``Remove``, ``Symlink``,
``RunCommand``) and ``names``: substrings of which at least one must appear in the error
line. Shared fixtures are ``stack.tif`` (3 cycles x 4 lasers of 32 x 48), ``data`` (4
frame/mask pairs of 48 x 64 in ``train/``, the frames again in ``test/``, 0/255 masks in
``truth/``), ``predictions`` (``<i>_predict.png`` matching ``truth``) and ``run`` (a
1-epoch run of the small network trained on ``data``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tifffile

from unetlib.app.cli import main
from unetlib.core.config import SyntheticConfig
from unetlib.core.io import write_image
from unetlib.data.synthetic import write_synthetic_stack

FRAME_SHAPE = (48, 64)
STACK_CONFIG = SyntheticConfig(cycles=3, lasers=4, height=32, width=48)
# The fewest arguments that make an accidental training run take a second, not minutes.
QUICK_TRAINING = ("--preset", "small", "--epochs", "1", "--steps-per-epoch", "1",
                  "--batch-size", "2", "--patch-size", "32", "--val-fraction", "0.25")
# Longest a case may run in this process before it is interrupted and failed.
CASE_TIMEOUT_SECONDS = 60
# Address space a case may add to what the process already maps (TensorFlow included).
MEMORY_HEADROOM_BYTES = 4 * 2**30
# Address-space limit of the child Python that runs ``isolated`` cases.
CHILD_MEMORY_LIMIT_BYTES = 4 * 2**30


# --- what the workspace holds -----------------------------------------------------------


def disc_mask(index: int, shape: tuple[int, int] = FRAME_SHAPE) -> np.ndarray:
    """A 0/1 uint8 disc, moved down by ``index`` pixels."""
    rows, columns = np.mgrid[:shape[0], :shape[1]]
    return (((rows - 20 - index) ** 2 + (columns - 30) ** 2) < 100).astype(np.uint8)


def noisy_frame(index: int, shape: tuple[int, int] = FRAME_SHAPE) -> np.ndarray:
    """A uint16 frame: noise with a bright disc where ``disc_mask(index)`` is 1."""
    random = np.random.default_rng(index)
    return (random.random(shape) * 800 + disc_mask(index, shape) * 3000.0).astype(np.uint16)


def frame_with_nan() -> np.ndarray:
    """A float32 frame whose upper-left corner is NaN (a failed export, a dead sensor)."""
    frame = noisy_frame(2).astype(np.float32)
    frame[:8, :8] = np.nan
    return frame


def label_mask() -> np.ndarray:
    """A mask with three levels 0, 1 and 2 (two organs painted differently)."""
    mask = disc_mask(1)
    mask[:, 30:] *= 2
    return mask


def build_data_folder(root: Path) -> Path:
    """``root/train/{frames,masks}``, ``root/test`` and ``root/truth``: 4 frames each."""
    for index in range(4):
        write_image(root / "train" / "frames" / f"{index}.png", noisy_frame(index))
        write_image(root / "train" / "masks" / f"{index}.png", disc_mask(index))
        write_image(root / "test" / f"{index}.png", noisy_frame(index))
        write_image(root / "truth" / f"{index}.png", disc_mask(index) * 255)
    return root


@dataclass(frozen=True)
class Shared:
    """Where the shared fixtures are; ``run`` is trained only when a case copies it."""

    files: Path
    trained_run: Callable[[], Path]

    def locate(self, name: str) -> Path:
        first, _, rest = name.partition("/")
        if first == "run":
            return self.trained_run() / rest if rest else self.trained_run()
        return self.files / name


def expand(text: str, workspace: Path) -> str:
    return text.replace("{ws}", str(workspace))


# --- setup steps: each builds one part of a case's workspace ------------------------------


@dataclass(frozen=True)
class Copy:
    """Copy a shared fixture (file or folder) to ``destination`` (default: same name)."""

    source: str
    destination: str | None = None

    def __call__(self, workspace: Path, shared: Shared) -> None:
        source = shared.locate(self.source)
        destination = workspace / (self.destination or self.source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination)
        else:
            shutil.copy2(source, destination)


@dataclass(frozen=True)
class WriteText:
    """A text file (also a text file with an image's or a model's name)."""

    path: str
    text: str = "this is not what the name says\n"

    def __call__(self, workspace: Path, shared: Shared) -> None:
        path = workspace / self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.text, encoding="utf-8")


@dataclass(frozen=True)
class WriteTiff:
    """A TIFF written directly with tifffile (``make`` gives the array)."""

    path: str
    make: Callable[[], np.ndarray]
    photometric: str = "minisblack"

    def __call__(self, workspace: Path, shared: Shared) -> None:
        path = workspace / self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        tifffile.imwrite(path, self.make(), photometric=self.photometric)


@dataclass(frozen=True)
class WritePicture:
    """An image written with ``unetlib.core.io.write_image`` (PNG or TIFF by suffix), replacing
    any file of that name."""

    path: str
    make: Callable[[], np.ndarray]

    def __call__(self, workspace: Path, shared: Shared) -> None:
        path = workspace / self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        write_image(path, self.make(), overwrite=True)


@dataclass(frozen=True)
class TruncatedStack:
    """A valid uncompressed 12-page uint16 stack cut to ``fraction`` of its size (a copy
    interrupted halfway)."""

    path: str
    fraction: float = 0.6

    def __call__(self, workspace: Path, shared: Shared) -> None:
        path = workspace / self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        frames = np.stack([noisy_frame(index, (32, 48)) for index in range(12)])
        tifffile.imwrite(path, frames, photometric="minisblack")
        os.truncate(path, int(path.stat().st_size * self.fraction))


@dataclass(frozen=True)
class MakeFolder:
    path: str

    def __call__(self, workspace: Path, shared: Shared) -> None:
        (workspace / self.path).mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class Remove:
    """Remove a file, link or folder the earlier steps made."""

    path: str

    def __call__(self, workspace: Path, shared: Shared) -> None:
        path = workspace / self.path
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


@dataclass(frozen=True)
class Symlink:
    """A symbolic link at ``path`` pointing at ``target`` (relative to the link's folder)."""

    path: str
    target: str

    def __call__(self, workspace: Path, shared: Shared) -> None:
        path = workspace / self.path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(self.target, path)


@dataclass(frozen=True)
class RunCommand:
    """A preliminary CLI command that must succeed (e.g. a first split or pick)."""

    argv: tuple[str, ...]

    def __call__(self, workspace: Path, shared: Shared) -> None:
        argv = ["-q", *(expand(part, workspace) for part in self.argv)]
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            status = main(argv)
        assert status == 0, f"setup command {argv} failed with status {status}"


Step = Callable[[Path, Shared], None]


@dataclass(frozen=True)
class Case:
    """One bad input and what the user must get.

    Attributes
    ----------
    name : str
        The test id, ``command/what-is-wrong``.
    argv : tuple of str
        Arguments after ``-q``; ``{ws}`` is the case's workspace folder.
    names : tuple of str
        At least one must appear in the ``error:`` line (``{ws}`` expanded).
    setup : tuple of steps
        Build the workspace, in order, before the checksums are taken.
    new_files_in : tuple of str
        Workspace folders (relative) where new files may appear; none by default.
    usage_error : bool
        Argparse refuses the arguments: SystemExit(2), ``usage:`` and one ``error:`` line.
    isolated : bool
        Run ``main`` in a child Python (the case could crash the interpreter today).
    output_matches : str or None
        A regular expression that stdout + stderr must match (e.g. the table row).
    output_must_not_match : str or None
        A regular expression that stdout + stderr must not match (a wrong diagnosis).
    max_seconds : float or None
        The refusal must come within this time (huge sizes must not be allocated first).
    """

    name: str
    argv: tuple[str, ...]
    names: tuple[str, ...]
    setup: tuple[Step, ...] = ()
    new_files_in: tuple[str, ...] = ()
    usage_error: bool = False
    isolated: bool = False
    output_matches: str | None = None
    output_must_not_match: str | None = None
    max_seconds: float | None = None


# --- argument builders for the commands that take many --------------------------------------


def split(*extra: str, stack: str = "{ws}/stack.tif", out: str = "{ws}/split") -> tuple[str, ...]:
    return ("split-stack", stack, "--out", out, *extra)


def pick(*extra: str, stack: str = "{ws}/stack.tif", out: str = "{ws}/data") -> tuple[str, ...]:
    return ("pick-frames", stack, "--out", out, *extra)


def train(*extra: str, data: str = "{ws}/data", out: str = "{ws}/run") -> tuple[str, ...]:
    return ("train", data, "--out", out, *QUICK_TRAINING, *extra)


def predict(*extra: str, model: str = "{ws}/run", source: str = "{ws}/test",
            out: str = "{ws}/results") -> tuple[str, ...]:
    return ("predict", model, source, "--out", out, *extra)


def evaluate(*extra: str, predictions: str = "{ws}/predictions",
             truth: str = "{ws}/truth") -> tuple[str, ...]:
    return ("evaluate", predictions, truth, *extra)


def quantify(*extra: str, run: str = "{ws}/run", stacks: tuple[str, ...] = ("{ws}/stack.tif",),
             out: str = "{ws}/quantified") -> tuple[str, ...]:
    # The shared run is a 1-channel model trained on frames without a frames.csv: it takes
    # laser 1, which only --model-input can say.
    return ("quantify", run, *stacks, "--out", out, *extra)


def study(*extra: str, sheet: str = "{ws}/study.csv", run: str = "{ws}/run",
          out: str = "{ws}/study") -> tuple[str, ...]:
    return ("study", sheet, "--run", run, "--out", out, "--model-input", "1", *extra)


def sheet(*rows: str, header: str = "stack,mouse,group") -> WriteText:
    return WriteText("study.csv", "\n".join((header, *rows)) + "\n")


def notebooks(*extra: str) -> tuple[str, ...]:
    # --notebooks points at an empty folder: even if validation let a case through,
    # no notebook could ever be executed.
    return ("run-notebooks", "--out", "{ws}/nb", "--notebooks", "{ws}/notebooks", *extra)


def demo(*extra: str) -> tuple[str, ...]:
    return ("demo-stack", "--out", "{ws}/demo", "--cycles", "3", "--height", "32",
            "--width", "48", *extra)


STACK = Copy("stack.tif")
DATA = Copy("data")
RUN = Copy("run")
TEST_FRAMES = Copy("data/test", "test")
PREDICTIONS = Copy("predictions")
TRUTH = Copy("data/truth", "truth")
NOTEBOOKS_FOLDER = MakeFolder("notebooks")
NOTES = WriteText("notes.txt", "the user's notes\n")
def EMPTY_MASK():  # named like the catalogue's other inputs
    return np.zeros(FRAME_SHAPE, np.uint8)


# --- the catalogue ------------------------------------------------------------------------

CASES: list[Case] = [
    # demo-stack
    Case("demo-stack/cycles-zero", demo("--cycles", "0"), ("--cycles", "cycles=0")),
    Case("demo-stack/lasers-zero", demo("--lasers", "0"), ("--lasers", "lasers=0")),
    Case("demo-stack/frames-too-small", demo("--height", "8"), ("--height", "height")),
    Case("demo-stack/negative-width", demo("--width", "-5"), ("--width", "width")),
    Case("demo-stack/huge-acquisition",
         demo("--cycles", "1000", "--height", "100000", "--width", "100000"),
         ("--height", "--width", "height", "width", "{ws}/demo"), max_seconds=10),
    Case("demo-stack/existing-stack", demo(), ("{ws}/demo/stack.tif",),
         setup=(Copy("stack.tif", "demo/stack.tif"),)),
    Case("demo-stack/out-is-a-file", demo("--out", "{ws}/notes.txt"), ("{ws}/notes.txt",),
         setup=(NOTES,)),
    Case("demo-stack/out-inside-a-file", demo("--out", "{ws}/notes.txt/demo"),
         ("{ws}/notes.txt",), setup=(NOTES,)),
    Case("demo-stack/negative-seed", demo("--seed", "-5"), ("--seed", "seed=-5")),
    Case("demo-stack/usage-cycles-not-a-number", demo("--cycles", "three"), ("--cycles",),
         usage_error=True),

    # split-stack
    Case("split-stack/missing-file", split(), ("{ws}/stack.tif",)),
    Case("split-stack/text-file-named-tif", split(), ("{ws}/stack.tif",),
         setup=(WriteText("stack.tif"),)),
    Case("split-stack/empty-file", split(), ("{ws}/stack.tif",),
         setup=(WriteText("stack.tif", ""),)),
    Case("split-stack/folder-named-tif", split(), ("{ws}/stack.tif",),
         setup=(MakeFolder("stack.tif"),)),
    Case("split-stack/single-2d-image", split(), ("{ws}/stack.tif",),
         setup=(WriteTiff("stack.tif", lambda: noisy_frame(0, (32, 48))),)),
    Case("split-stack/fewer-frames-than-lasers", split(), ("{ws}/stack.tif",),
         setup=(WriteTiff("stack.tif", lambda: np.zeros((2, 32, 48), np.uint16)),)),
    Case("split-stack/rgb-stack", split(), ("{ws}/stack.tif",),
         setup=(WriteTiff("stack.tif", lambda: np.zeros((8, 32, 48, 3), np.uint8), "rgb"),)),
    Case("split-stack/truncated-stack", split(), ("{ws}/stack.tif",),
         setup=(TruncatedStack("stack.tif"),)),
    Case("split-stack/stack-links-to-itself", split(), ("{ws}/stack.tif",),
         setup=(Symlink("stack.tif", "stack.tif"),)),
    Case("split-stack/lasers-zero", split("--lasers", "0"), ("--lasers", "lasers=0"),
         setup=(STACK,)),
    Case("split-stack/offset-beyond-stack", split("--offset", "50"),
         ("{ws}/stack.tif", "--offset", "offset=50"), setup=(STACK,)),
    Case("split-stack/negative-offset", split("--offset", "-1"), ("--offset", "offset=-1"),
         setup=(STACK,)),
    Case("split-stack/workers-zero", split("--workers", "0"), ("--workers", "workers=0"),
         setup=(STACK,)),
    Case("split-stack/composite3-repeats-a-laser", split("--composite3", "1,1,2"),
         ("--composite3", "composite3"), setup=(STACK,)),
    Case("split-stack/composite3-named-by-its-flag", split("--composite3", "1,1,2"),
         ("--composite3 1,1,2 is invalid",), setup=(STACK,),
         output_must_not_match=r"composite3=|\("),
    Case("split-stack/composite3-laser-beyond-lasers",
         split("--lasers", "4", "--composite3", "1,2,9"), ("--composite3", "composite3"),
         setup=(STACK,)),
    Case("split-stack/out-inside-a-file", split(out="{ws}/notes.txt/split"),
         ("{ws}/notes.txt",), setup=(STACK, NOTES)),
    Case("split-stack/out-is-the-stack-itself", split(out="{ws}/stack.tif"),
         ("{ws}/stack.tif",), setup=(STACK,)),
    Case("split-stack/existing-split-with-other-lasers", split("--lasers", "2"), ("{ws}/split",),
         setup=(STACK, RunCommand(split("--lasers", "4")))),
    Case("split-stack/unicode-path-with-spaces",
         split(stack="{ws}/données souris/pile 1.tif", out="{ws}/données souris/split"),
         ("{ws}/données souris/pile 1.tif",),
         setup=(WriteText("données souris/pile 1.tif"),)),
    Case("split-stack/float-stack-to-png", split(), ("{ws}/stack.tif",),
         setup=(WriteTiff("stack.tif", lambda: np.stack([noisy_frame(i, (32, 48))
                                                         for i in range(12)]).astype(np.float32)),),
         output_matches="--format tif"),
    Case("split-stack/int32-stack-to-png", split(), ("{ws}/stack.tif",),
         setup=(WriteTiff("stack.tif", lambda: np.stack([noisy_frame(i, (32, 48))
                                                         for i in range(12)]).astype(np.int32)),),
         output_matches="--format tif"),
    Case("split-stack/lock-is-a-symlink", split(), ("{ws}/split/.unetlib.lock",),
         setup=(STACK, NOTES, MakeFolder("split"), Symlink("split/.unetlib.lock", "../notes.txt"))),
    Case("split-stack/usage-composite3-not-numbers", split("--composite3", "red,green,blue"),
         ("--composite3",), setup=(STACK,), usage_error=True),
    Case("split-stack/usage-missing-out", ("split-stack", "{ws}/stack.tif"), ("--out",),
         setup=(STACK,), usage_error=True),

    # demo-study: sizes are refused before a mouse is written
    Case("demo-study/one-mouse-per-group", ("demo-study", "--out", "{ws}/demo", "--mice", "1"),
         ("--mice", "--mice 1")),
    Case("demo-study/cycles-beyond-the-bound",
         ("demo-study", "--out", "{ws}/demo", "--cycles", "100000"), ("--cycles", "--cycles 100000"),
         max_seconds=30),
    Case("demo-study/run-that-does-not-exist",
         ("demo-study", "--out", "{ws}/demo", "--run", "{ws}/norun", "--mice", "2", "--cycles", "10"),
         ("{ws}/norun",), new_files_in=("demo",)),

    # pick-frames
    Case("pick-frames/count-zero", pick("--count", "0"), ("--count", "count=0"), setup=(STACK,)),
    Case("pick-frames/count-beyond-cycles", pick("--count", "999"), ("--count", "count=999"),
         setup=(STACK,)),
    Case("pick-frames/laser-beyond-lasers", pick("--laser", "9"), ("--laser", "laser=9"),
         setup=(STACK,)),
    Case("pick-frames/composite-laser-the-stack-lacks",
         pick("--channels", "3", "--lasers", "2", "--count", "1"), ("--channels 3",),
         setup=(STACK,), output_must_not_match=r"laser=|--laser \d"),
    Case("pick-frames/uncertain-without-run", pick("--method", "uncertain", "--count", "1"),
         ("--run",), setup=(STACK,), output_must_not_match=r"None|run=|method="),
    Case("pick-frames/every-cycle-excluded", pick("--count", "1", "--exclude", "0,1,2"),
         ("--exclude", "exclude", "count=1"), setup=(STACK,)),
    Case("pick-frames/missing-stack", pick("--count", "2"), ("{ws}/stack.tif",)),
    Case("pick-frames/a-stack-given-twice",
         ("pick-frames", "{ws}/stack.tif", "{ws}/stack.tif", "--out", "{ws}/data", "--count", "2"),
         ("{ws}/stack.tif", "given twice"), setup=(STACK,)),
    Case("pick-frames/fewer-frames-than-stacks",
         ("pick-frames", "{ws}/stack.tif", "{ws}/copy/stack.tif", "--out", "{ws}/data",
          "--count", "1"), ("--count", "count=1", "2 stacks"),
         setup=(STACK, Copy("stack.tif", "copy/stack.tif"))),
    Case("pick-frames/one-of-several-stacks-missing",
         ("pick-frames", "{ws}/stack.tif", "{ws}/mouse2.tif", "--out", "{ws}/data", "--count", "2"),
         ("{ws}/mouse2.tif",), setup=(STACK,)),
    Case("pick-frames/truncated-stack", pick("--count", "2"), ("{ws}/stack.tif",),
         setup=(TruncatedStack("stack.tif"),)),
    Case("pick-frames/out-inside-a-file", pick("--count", "2", out="{ws}/notes.txt/data"),
         ("{ws}/notes.txt",), setup=(STACK, NOTES)),
    Case("pick-frames/over-frames-and-drawn-masks", pick("--count", "3"), ("{ws}/data",),
         setup=(STACK, RunCommand(pick("--count", "2")),
                WritePicture("data/train/masks/0.png", lambda: disc_mask(0, (32, 48)) * 255),
                WritePicture("data/train/masks/1.png", lambda: disc_mask(3, (32, 48)) * 255))),
    Case("pick-frames/over-drawn-masks-without-frames", pick("--count", "2"),
         ("{ws}/data/train/masks/0.png", "{ws}/data"),
         setup=(STACK, WritePicture("data/train/masks/0.png",
                                    lambda: disc_mask(0, (32, 48)) * 255))),
    Case("pick-frames/usage-channels-two", pick("--channels", "2"), ("--channels",),
         setup=(STACK,), usage_error=True),

    # check-masks: a table on stdout, one error line naming the data folder
    Case("propose/missing-run", ("propose", "{ws}/run", "{ws}/data"), ("{ws}/run",),
         setup=(DATA,)),
    Case("propose/data-folder-without-frames", ("propose", "{ws}/run", "{ws}/nowhere"),
         ("{ws}/nowhere",), setup=(RUN,), output_matches="pick-frames"),
    Case("propose/unknown-frame", ("propose", "{ws}/run", "{ws}/data", "--frames", "12"),
         ("{ws}/data",), setup=(RUN, DATA), output_matches="has no frame 12"),
    Case("propose/organs-for-a-one-foreground-run", ("propose", "{ws}/run", "{ws}/data"),
         ("{ws}/data",), setup=(RUN, DATA, WriteText("data/organs.csv", "value,name\n1,liver\n")),
         output_matches="segments one foreground"),
    Case("check-masks/missing-folder", ("check-masks", "{ws}/data"), ("{ws}/data",)),
    Case("check-masks/a-file-not-a-folder", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(WriteText("data"),)),
    Case("check-masks/folder-without-train", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(MakeFolder("data"),)),
    Case("check-masks/all-background-mask", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, WritePicture("data/train/masks/1.png", EMPTY_MASK)),
         output_matches=r"masks/1\.png[^\n]*background"),
    Case("check-masks/mask-size-differs", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, WritePicture("data/train/masks/2.png",
                                   lambda: disc_mask(0, (20, 20)) * 255)),
         output_matches=r"masks/2\.png[^\n]*20x20"),
    Case("check-masks/mask-is-a-text-file", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, WriteText("data/train/masks/3.png")),
         output_matches=r"masks/3\.png"),
    Case("check-masks/frame-without-mask", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, Remove("data/train/masks/0.png")),
         output_matches=r"frames/0\.png[^\n]*no mask"),
    Case("check-masks/mask-links-to-itself", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, Remove("data/train/masks/0.png"),
                Symlink("data/train/masks/0.png", "0.png")),
         output_matches=r"(?i)masks/0\.png[^\n]*(link|loop)",
         output_must_not_match=r"has no mask"),
    Case("check-masks/mask-links-to-missing-file", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, Remove("data/train/masks/1.png"),
                Symlink("data/train/masks/1.png", "drawn-elsewhere.png")),
         output_matches=r"(?i)masks/1\.png[^\n]*(link|not found|missing)",
         output_must_not_match=r"has no mask"),
    Case("check-masks/mask-is-a-folder", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, Remove("data/train/masks/2.png"), MakeFolder("data/train/masks/2.png")),
         output_matches=r"(?i)masks/2\.png[^\n]*(folder|directory)"),
    Case("check-masks/label-image-mask", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, WritePicture("data/train/masks/1.png", label_mask)),
         output_matches=r"masks/1\.png[^\n]*levels"),
    Case("check-masks/two-masks-for-one-frame", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, WriteTiff("data/train/masks/0.tif", lambda: disc_mask(0) * 255)),
         output_matches=r"masks/0\.(png|tif)[^\n]*shares the name"),
    Case("check-masks/masks-without-frames", ("check-masks", "{ws}/data"), ("{ws}/data",),
         setup=(DATA, Remove("data/train/frames"), MakeFolder("data/train/frames")),
         output_matches=r"masks/0\.png[^\n]*no frame"),
    Case("check-masks/unicode-folder-with-spaces", ("check-masks", "{ws}/mäuse daten/data1d"),
         ("{ws}/mäuse daten/data1d",),
         setup=(Copy("data", "mäuse daten/data1d"),
                WritePicture("mäuse daten/data1d/train/masks/1.png", EMPTY_MASK))),

    # train
    Case("train/missing-data-folder", train(), ("{ws}/data",)),
    Case("train/data-is-a-file", train(), ("{ws}/data",), setup=(WriteText("data"),)),
    Case("train/no-masks-folder", train(), ("{ws}/data",),
         setup=(DATA, Remove("data/train/masks"))),
    Case("train/single-pair", train(), ("{ws}/data",),
         setup=(DATA, *(Remove(f"data/train/{kind}/{index}.png")
                        for kind in ("frames", "masks") for index in (1, 2, 3)))),
    Case("train/patch-size-huge", train("--patch-size", "100000"),
         ("--patch-size", "patch_size", "{ws}/data"), setup=(DATA,), max_seconds=10),
    Case("train/batch-size-huge", train("--batch-size", "100000"),
         ("--batch-size", "batch_size", "{ws}/data"), setup=(DATA,), isolated=True,
         max_seconds=30),
    Case("train/patch-size-not-multiple-of-16", train("--patch-size", "40"),
         ("--patch-size", "patch_size"), setup=(DATA,)),
    Case("train/val-fraction-zero", train("--val-fraction", "0"),
         ("--val-fraction", "val_fraction"), setup=(DATA,)),
    Case("train/val-fraction-above-one", train("--val-fraction", "1.5"),
         ("--val-fraction", "val_fraction"), setup=(DATA,)),
    Case("train/epochs-zero", train("--epochs", "0"), ("--epochs", "epochs=0"), setup=(DATA,)),
    Case("train/steps-per-epoch-zero", train("--steps-per-epoch", "0"),
         ("--steps-per-epoch", "steps_per_epoch"), setup=(DATA,)),
    Case("train/max-minutes-negative", train("--max-minutes", "-1"),
         ("--max-minutes", "max_minutes"), setup=(DATA,)),
    Case("train/checkpoint-minutes-nan", train("--max-minutes", "5", "--checkpoint-minutes",
                                                 "nan"),
         ("--checkpoint-minutes", "checkpoint_minutes"), setup=(DATA,)),
    Case("train/learning-rate-negative", train("--lr", "-1"), ("--lr", "learning_rate"),
         setup=(DATA,)),
    Case("train/seed-negative", train("--seed", "-1"), ("--seed", "seed=-1"), setup=(DATA,)),
    Case("train/frame-with-nan", train(), ("{ws}/data/train/frames/2.tif",),
         setup=(DATA, Remove("data/train/frames/2.png"),
                WriteTiff("data/train/frames/2.tif", frame_with_nan))),
    Case("train/all-background-mask", train(), ("{ws}/data/train/masks/1.png", "{ws}/data"),
         setup=(DATA, WritePicture("data/train/masks/1.png", EMPTY_MASK))),
    Case("train/mask-size-differs", train(), ("{ws}/data/train/masks/2.png", "{ws}/data"),
         setup=(DATA, WritePicture("data/train/masks/2.png",
                                   lambda: disc_mask(0, (20, 20)) * 255))),
    Case("train/mixed-channel-frames", train(), ("{ws}/data/train/frames/3.tif", "{ws}/data"),
         setup=(DATA, Remove("data/train/frames/3.png"),
                WritePicture("data/train/frames/3.tif",
                             lambda: np.repeat(noisy_frame(3)[..., None], 3, axis=-1)))),
    Case("train/over-finished-run", train("--epochs", "2"), ("{ws}/run",), setup=(DATA, RUN)),
    Case("train/resume-empty-folder", train("--resume"), ("{ws}/run",),
         setup=(DATA, MakeFolder("run"))),
    Case("train/resume-missing-folder", train("--resume"), ("{ws}/run",), setup=(DATA,)),
    Case("train/resume-finished-run", train("--epochs", "2", "--resume"), ("{ws}/run",),
         setup=(DATA, RUN)),
    Case("train/resume-finished-run-same-epochs", train("--resume"), ("{ws}/run",),
         setup=(DATA, RUN)),
    Case("train/out-inside-a-file", train(out="{ws}/notes.txt/run"), ("{ws}/notes.txt",),
         setup=(DATA, NOTES)),
    Case("train/seed-beyond-64-bits", train("--seed", "100000000000000000000000"),
         ("--seed",), setup=(DATA,)),
    Case("train/out-inside-the-frames", train(out="{ws}/data/train/frames"),
         ("{ws}/data/train/frames",), setup=(DATA,)),
    Case("train/out-is-the-data-folder", train(out="{ws}/data"), ("{ws}/data",), setup=(DATA,)),
    Case("train/usage-unknown-preset", train("--preset", "huge"), ("--preset",),
         setup=(DATA,), usage_error=True),

    # predict
    Case("predict/missing-model", predict(model="{ws}/model.keras"), ("{ws}/model.keras",),
         setup=(TEST_FRAMES,)),
    Case("predict/text-file-named-model-keras", predict(model="{ws}/model.keras"),
         ("{ws}/model.keras",), setup=(TEST_FRAMES, WriteText("model.keras"))),
    Case("predict/run-folder-without-model", predict(), ("{ws}/run",),
         setup=(RUN, TEST_FRAMES, Remove("run/model.keras"))),
    Case("predict/missing-input", predict(), ("{ws}/test",), setup=(RUN,)),
    Case("predict/empty-input-folder", predict(), ("{ws}/test",),
         setup=(RUN, MakeFolder("test"))),
    Case("predict/threshold-above-one", predict("--threshold", "1.5"),
         ("--threshold", "threshold=1.5"), setup=(RUN, TEST_FRAMES)),
    Case("predict/threshold-zero", predict("--threshold", "0"), ("--threshold", "threshold=0"),
         setup=(RUN, TEST_FRAMES)),
    Case("predict/overlap-not-below-tile", predict("--tile", "64", "--overlap", "64"),
         ("--overlap", "overlap=64"), setup=(RUN, TEST_FRAMES)),
    Case("predict/tile-zero", predict("--tile", "0"), ("--tile", "tile=0"),
         setup=(RUN, TEST_FRAMES)),
    Case("predict/three-channel-frame", predict(), ("{ws}/test/0.png",),
         setup=(RUN, MakeFolder("test"),
                WritePicture("test/0.png", lambda: np.zeros((*FRAME_SHAPE, 3), np.uint8)))),
    Case("predict/outputs-exist", predict(), ("{ws}/results",),
         setup=(RUN, TEST_FRAMES, WritePicture("results/0_predict.png", EMPTY_MASK))),
    Case("predict/truncated-stack-input", predict(source="{ws}/stack.tif"), ("{ws}/stack.tif",),
         setup=(RUN, TruncatedStack("stack.tif"))),
    Case("predict/text-file-named-tif-input", predict(source="{ws}/frame.tif"),
         ("{ws}/frame.tif",), setup=(RUN, WriteText("frame.tif"))),
    Case("predict/text-file-among-frames", predict(), ("{ws}/test/4.png",),
         setup=(RUN, TEST_FRAMES, WriteText("test/4.png"))),
    Case("predict/out-inside-a-file", predict(out="{ws}/notes.txt/results"),
         ("{ws}/notes.txt",), setup=(RUN, TEST_FRAMES, NOTES)),
    Case("predict/two-frames-with-one-name", predict(), ("{ws}/test/0.png",),
         setup=(RUN, TEST_FRAMES, WriteTiff("test/0.tif", lambda: noisy_frame(0))),
         output_matches=r"0\.png.* 0\.tif"),
    Case("predict/two-frames-with-one-name-forced", predict("--force"), ("{ws}/test/0.png",),
         setup=(RUN, TEST_FRAMES, WriteTiff("test/0.tif", lambda: noisy_frame(0))),
         output_matches=r"0\.png.* 0\.tif"),
    Case("predict/lock-is-a-symlink", predict(), ("{ws}/results/.unetlib.lock",),
         setup=(RUN, TEST_FRAMES, NOTES, MakeFolder("results"),
                Symlink("results/.unetlib.lock", "../notes.txt"))),
    Case("predict/usage-threshold-not-a-number", predict("--threshold", "high"),
         ("--threshold",), setup=(RUN, TEST_FRAMES), usage_error=True),

    # evaluate
    Case("evaluate/missing-prediction-folder", evaluate(), ("{ws}/predictions",),
         setup=(TRUTH,)),
    Case("evaluate/missing-truth-folder", evaluate(), ("{ws}/truth",), setup=(PREDICTIONS,)),
    Case("evaluate/no-predict-files", evaluate(), ("{ws}/predictions",),
         setup=(Copy("data/test", "predictions"), TRUTH)),
    Case("evaluate/no-matching-truth", evaluate(), ("{ws}/predictions", "{ws}/truth"),
         setup=(PREDICTIONS, WritePicture("truth/10.png", lambda: disc_mask(0) * 255))),
    Case("evaluate/size-mismatch", evaluate(),
         ("{ws}/predictions/0_predict.png", "{ws}/truth/0.png"),
         setup=(PREDICTIONS, TRUTH, WritePicture("predictions/0_predict.png",
                                                 lambda: disc_mask(0, (20, 20)) * 255))),
    Case("evaluate/prediction-is-a-text-file", evaluate(), ("{ws}/predictions/1_predict.png",),
         setup=(PREDICTIONS, TRUTH, Remove("predictions/1_predict.png"),
                WriteText("predictions/1_predict.png"))),
    Case("evaluate/truth-of-other-organs", evaluate(), ("{ws}/truth/organs.csv",),
         setup=(PREDICTIONS, TRUTH, WriteText("predictions/organs.csv", "value,name\n255,liver\n"),
                WriteText("truth/organs.csv", "value,name\n255,spleen\n"))),
    Case("evaluate/json-over-existing-file", evaluate("--json", "{ws}/scores.csv"),
         ("{ws}/scores.csv",),
         setup=(PREDICTIONS, TRUTH, WriteText("scores.csv", "stem,dice\n0,0.93\n"))),
    Case("evaluate/json-is-a-truth-mask-forced", evaluate("--json", "{ws}/truth/0.png", "--force"),
         ("{ws}/truth/0.png",), setup=(PREDICTIONS, TRUTH)),
    Case("evaluate/json-is-a-prediction-forced",
         evaluate("--json", "{ws}/predictions/1_predict.png", "--force"),
         ("{ws}/predictions/1_predict.png",), setup=(PREDICTIONS, TRUTH)),
    Case("evaluate/json-is-a-folder", evaluate("--json", "{ws}/reports"), ("{ws}/reports",),
         setup=(PREDICTIONS, TRUTH, MakeFolder("reports"))),
    Case("evaluate/json-inside-a-file", evaluate("--json", "{ws}/notes.txt/scores.json"),
         ("{ws}/notes.txt",), setup=(PREDICTIONS, TRUTH, NOTES)),

    # quantify
    Case("quantify/missing-run", quantify("--model-input", "1"), ("{ws}/run",), setup=(STACK,)),
    Case("quantify/run-without-recorded-lasers", quantify(), ("{ws}/run",),
         setup=(RUN, STACK)),
    Case("quantify/model-input-wrong-length", quantify("--model-input", "1,2"),
         ("--model-input", "model_input="), setup=(RUN, STACK)),
    Case("quantify/model-input-named-by-its-flag", quantify("--model-input", "1,2"),
         ("--model-input 1,2 is invalid",), setup=(RUN, STACK),
         output_must_not_match=r"model_input="),
    Case("quantify/model-input-laser-the-stack-lacks", quantify("--model-input", "7"),
         ("{ws}/stack.tif",), setup=(RUN, STACK)),
    Case("quantify/frames-not-whole-cycles", quantify("--model-input", "1", "--lasers", "5"),
         ("{ws}/stack.tif",), setup=(RUN, STACK)),
    Case("quantify/more-lasers-than-frames", quantify("--model-input", "1", "--lasers", "20"),
         ("{ws}/stack.tif",), setup=(RUN, STACK)),
    Case("quantify/stack-without-timing", quantify("--model-input", "1"), ("{ws}/stack.tif",),
         setup=(RUN, WriteTiff("stack.tif", lambda: np.stack([noisy_frame(i, (32, 48))
                                                              for i in range(12)])))),
    Case("quantify/align-max-shift-beyond-a-quarter-frame",
         quantify("--model-input", "1", "--align-max-shift", "3"), ("--align-max-shift",),
         setup=(RUN, STACK)),
    Case("quantify/interval-negative", quantify("--model-input", "1", "--interval", "-5"),
         ("--interval",), setup=(RUN, STACK)),
    Case("quantify/unknown-background-organ",
         quantify("--model-input", "1", "--background", "spleen"), ("--background",),
         setup=(RUN, STACK)),
    Case("quantify/truncated-stack", quantify("--model-input", "1"), ("{ws}/stack.tif",),
         setup=(RUN, TruncatedStack("stack.tif"))),
    Case("quantify/text-file-named-tif", quantify("--model-input", "1"), ("{ws}/stack.tif",),
         setup=(RUN, WriteText("stack.tif"))),
    Case("quantify/out-inside-a-file", quantify("--model-input", "1", out="{ws}/notes.txt/q"),
         ("{ws}/notes.txt",), setup=(RUN, STACK, NOTES)),
    Case("quantify/workers-zero", quantify("--model-input", "1", "--workers", "0"),
         ("--workers",), setup=(RUN, STACK)),
    Case("quantify/two-stacks-with-one-name",
         quantify("--model-input", "1", stacks=("{ws}/stack.tif", "{ws}/other/stack.tif")),
         ("{ws}/other/stack.tif",), setup=(RUN, STACK, Copy("stack.tif", "other/stack.tif"))),
    Case("quantify/results-of-other-settings", quantify("--model-input", "1", "--interval", "5"),
         ("{ws}/quantified/stack",),
         setup=(RUN, STACK, RunCommand(quantify("--model-input", "1", "--interval", "10")))),
    Case("quantify/stack-links-to-itself", quantify("--model-input", "1"), ("{ws}/stack.tif",),
         setup=(RUN, Symlink("stack.tif", "stack.tif"))),
    Case("quantify/one-pixel-frames", quantify("--model-input", "1", "--interval", "10"),
         ("{ws}/stack.tif",),
         setup=(RUN, WriteTiff("stack.tif", lambda: np.ones((12, 1, 1), np.uint16)))),
    Case("quantify/usage-interval-not-a-number", quantify("--interval", "ten"), ("--interval",),
         setup=(RUN, STACK), usage_error=True),

    # study: the sheet, the settings and the corrections, before anything is quantified
    Case("study/missing-sheet", study(), ("{ws}/study.csv",), setup=(RUN, STACK)),
    Case("study/sheet-without-group", study(), ("{ws}/study.csv",),
         setup=(RUN, STACK, sheet("stack.tif,m1", header="stack,mouse")),
         output_matches="has no group column"),
    Case("study/stack-that-does-not-exist", study(), ("{ws}/study.csv",),
         setup=(RUN, STACK, sheet("stack.tif,m1,a", "gone.tif,m2,b")),
         output_matches="the stack gone.tif does not exist"),
    Case("study/stack-listed-twice", study(), ("{ws}/study.csv",),
         setup=(RUN, STACK, sheet("stack.tif,m1,a", "stack.tif,m2,b")),
         output_matches="rows 2 and 3 both list stack.tif"),
    Case("study/mouse-in-two-groups", study(), ("{ws}/study.csv",),
         setup=(RUN, STACK, Copy("stack.tif", "other.tif"),
                sheet("stack.tif,m1,a", "other.tif,m1,b")),
         output_matches="put mouse m1 in the groups a and b"),
    Case("study/injection-negative", study(), ("{ws}/study.csv",),
         setup=(RUN, STACK, sheet("stack.tif,m1,a,-10", header="stack,mouse,group,injection_s")),
         output_matches="injection_s='-10' is not a number"),
    Case("study/injection-not-a-number", study(), ("{ws}/study.csv",),
         setup=(RUN, STACK, sheet("stack.tif,m1,a,soon", header="stack,mouse,group,injection_s"))),
    Case("study/injection-after-the-last-cycle", study(), ("{ws}/study.csv",),
         setup=(RUN, STACK, sheet("stack.tif,m1,a,100000",
                                  header="stack,mouse,group,injection_s")),
         output_matches="lies after the last cycle of stack.tif"),
    Case("study/reference-that-is-no-group", study("--reference", "placebo"),
         ("{ws}/study.csv",), setup=(RUN, STACK, sheet("stack.tif,m1,a")),
         output_matches="has no group 'placebo'"),
    Case("study/flat-field-with-zeros", study("--flat", "{ws}/flat.tif"), ("{ws}/flat.tif",),
         setup=(RUN, STACK, sheet("stack.tif,m1,a"),
                WriteTiff("flat.tif", lambda: np.zeros(FRAME_SHAPE, np.uint16)))),
    Case("study/dark-frame-unreadable", study("--dark", "{ws}/dark.tif"), ("{ws}/dark.tif",),
         setup=(RUN, STACK, sheet("stack.tif,m1,a"), WriteText("dark.tif"))),
    Case("study/usage-unknown-test", study("--test", "anova"), ("--test",),
         setup=(RUN, STACK, sheet("stack.tif,m1,a")), usage_error=True),

    # run-notebooks: only failures found before any notebook would run
    Case("run-notebooks/params-missing", notebooks("--params", "{ws}/sets.yaml"),
         ("{ws}/sets.yaml",), setup=(NOTEBOOKS_FOLDER,)),
    Case("run-notebooks/params-not-yaml", notebooks("--params", "{ws}/sets.yaml"),
         ("{ws}/sets.yaml",),
         setup=(NOTEBOOKS_FOLDER, WriteText("sets.yaml", "sets: {p128: {patch_size: 128}\n"))),
    Case("run-notebooks/params-a-list", notebooks("--params", "{ws}/sets.yaml"),
         ("{ws}/sets.yaml",),
         setup=(NOTEBOOKS_FOLDER, WriteText("sets.yaml", "- patch_size: 128\n- epochs: 2\n"))),
    Case("run-notebooks/set-name-not-a-folder-name", notebooks("--params", "{ws}/sets.yaml"),
         ("{ws}/sets.yaml",),
         setup=(NOTEBOOKS_FOLDER, WriteText("sets.yaml", "sets:\n  ../escape: {epochs: 1}\n"))),
    Case("run-notebooks/set-not-a-mapping", notebooks("--params", "{ws}/sets.yaml"),
         ("{ws}/sets.yaml",),
         setup=(NOTEBOOKS_FOLDER, WriteText("sets.yaml", "sets:\n  quick: [1, 2]\n"))),
    Case("run-notebooks/defaults-not-a-mapping", notebooks("--params", "{ws}/sets.yaml"),
         ("{ws}/sets.yaml",),
         setup=(NOTEBOOKS_FOLDER, WriteText("sets.yaml", "defaults: 3\nsets:\n  a: {epochs: 1}\n"))),
    Case("run-notebooks/parameter-not-yaml", notebooks("-p", "epochs", "[1,"), ("epochs",),
         setup=(NOTEBOOKS_FOLDER,)),
    Case("run-notebooks/params-is-a-folder", notebooks("--params", "{ws}/sets.yaml"),
         ("{ws}/sets.yaml",), setup=(NOTEBOOKS_FOLDER, MakeFolder("sets.yaml"))),
    Case("run-notebooks/usage-parameter-without-value", notebooks("-p", "epochs"),
         ("--parameter",), setup=(NOTEBOOKS_FOLDER,), usage_error=True),

    # crossval: refused before any fold is trained
    Case("crossval/missing-data-folder",
         ("crossval", "{ws}/data", "--out", "{ws}/cv", *QUICK_TRAINING), ("{ws}/data",)),
    Case("crossval/more-folds-than-frames",
         ("crossval", "{ws}/data", "--out", "{ws}/cv", "--folds", "5", *QUICK_TRAINING),
         ("--folds",), setup=(DATA,)),
    Case("crossval/negative-fold-seed",
         ("crossval", "{ws}/data", "--out", "{ws}/cv", "--folds", "2", "--fold-seed", "-1",
          *QUICK_TRAINING), ("--fold-seed -1 is invalid",), setup=(DATA,)),
    Case("crossval/out-inside-a-file",
         ("crossval", "{ws}/data", "--out", "{ws}/notes.txt/cv", "--folds", "2",
          *QUICK_TRAINING), ("{ws}/notes.txt",), setup=(DATA, NOTES)),

    # demo: refused before the acquisition is written or anything trained
    Case("demo/out-inside-a-file", ("demo", "--out", "{ws}/notes.txt/demo"), ("{ws}/notes.txt",),
         setup=(NOTES,), max_seconds=30),

    # export
    Case("export/missing-run", ("export", "{ws}/run", "--out", "{ws}/run.zip"), ("{ws}/run",)),
    Case("export/out-inside-a-file", ("export", "{ws}/run", "--out", "{ws}/notes.txt/run.zip"),
         ("{ws}/notes.txt",), setup=(RUN, NOTES)),
    Case("export/author-with-a-slash",
         ("export", "{ws}/run", "--out", "{ws}/run.zip", "--author", "a/b"), ("--author",),
         setup=(RUN,), output_must_not_match=r"authors="),
    Case("export/usage-missing-out", ("export", "{ws}/run"), ("--out",), setup=(RUN,),
         usage_error=True),

    # the top-level parser
    Case("cli/usage-unknown-command", ("segment", "{ws}/data"), ("segment",), usage_error=True),
]


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_files(tmp_path_factory) -> Path:
    """The stack, the data folder and the predictions every case copies from."""
    root = tmp_path_factory.mktemp("shared")
    write_synthetic_stack(root / "stack.tif", STACK_CONFIG)
    build_data_folder(root / "data")
    for index in range(4):
        write_image(root / "predictions" / f"{index}_predict.png", disc_mask(index) * 255)
    return root


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, shared_files) -> Path:
    """A finished 1-epoch run of the small network on ``data`` (trained once per module)."""
    run = tmp_path_factory.mktemp("trained") / "run"
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        status = main(["-q", "train", str(shared_files / "data"), "--out", str(run),
                       *QUICK_TRAINING])
    assert status == 0, "training the shared run failed; see the captured stderr"
    return run


# --- checks ---------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root``: files by sha256, folders as such, links by target."""
    entries: dict[str, str] = {}
    for folder, folder_names, file_names in os.walk(root):
        for name in [*folder_names, *file_names]:
            path = Path(folder) / name
            relative = path.relative_to(root).as_posix()
            if path.is_symlink():
                entries[relative] = f"link to {os.readlink(path)}"
            elif path.is_dir():
                entries[relative] = "folder"
            else:
                try:
                    entries[relative] = sha256(path)
                except OSError as error:
                    entries[relative] = f"unreadable ({error.strerror})"
    return entries


def compare_snapshots(before: dict[str, str], after: dict[str, str],
                      new_files_in: tuple[str, ...]) -> list[str]:
    """What changed, as readable problems: modified or removed entries, unexpected new ones."""
    problems = []
    for relative, state in before.items():
        if relative not in after:
            problems.append(f"{relative} was removed")
        elif after[relative] != state:
            problems.append(f"{relative} was changed")
    allowed = tuple(folder.rstrip("/") + "/" for folder in new_files_in)
    created = [relative for relative in sorted(set(after) - set(before))
               if not (relative + "/").startswith(allowed)]
    for relative in created:
        parent = relative.rpartition("/")[0]
        if parent in created:
            continue  # reported with its new folder
        inside = sum(1 for other in created if other.startswith(relative + "/"))
        problems.append(f"{relative} was created"
                        + (f" (with {inside} entries inside)" if inside else ""))
    return problems


class CaseTimeout(Exception):
    """Raised by the alarm when an in-process case runs too long."""


def _current_address_space() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmSize not found in /proc/self/status")


@contextlib.contextmanager
def memory_and_time_guard(seconds: int) -> Iterator[None]:
    """Limit the address space to the current one plus a headroom, and the time, so a case
    that tries a huge allocation fails instead of exhausting the shared machine."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = _current_address_space() + MEMORY_HEADROOM_BYTES
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)

    def interrupt(signal_number, frame):
        raise CaseTimeout(f"still running after {seconds} s")

    previous_handler = signal.signal(signal.SIGALRM, interrupt)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
        signal.signal(signal.SIGALRM, previous_handler)


@dataclass
class Outcome:
    """What running ``main`` produced."""

    status: object = None           # the return value, or SystemExit's code
    system_exit: bool = False
    escaped: str = ""               # an exception that escaped main, with where it came from
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0


def run_in_process(argv: list[str], capsys) -> Outcome:
    outcome = Outcome()
    started = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            with memory_and_time_guard(CASE_TIMEOUT_SECONDS):
                outcome.status = main(argv)
    except SystemExit as exit_info:
        outcome.status, outcome.system_exit = exit_info.code, True
    except BaseException as error:  # noqa: BLE001 - any escape is the finding
        last = traceback.extract_tb(error.__traceback__)[-1]
        outcome.escaped = f"{error!r} at {Path(last.filename).name}:{last.lineno}"
    outcome.seconds = time.monotonic() - started
    captured = capsys.readouterr()
    outcome.stdout, outcome.stderr = captured.out, captured.err
    return outcome


CHILD_PROGRAM = f"""
import resource, sys, warnings
hard = resource.getrlimit(resource.RLIMIT_AS)[1]
limit = {CHILD_MEMORY_LIMIT_BYTES}
resource.setrlimit(resource.RLIMIT_AS,
                   (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
warnings.simplefilter("default")
from unetlib.app.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_in_child(argv: list[str]) -> Outcome:
    """Run ``main`` in a fresh Python with a memory limit: a crash there fails one case."""
    outcome = Outcome()
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-c", CHILD_PROGRAM, *argv],
                                capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as expired:
        outcome.escaped = "still running after 120 s (killed)"
        outcome.stdout, outcome.stderr = (
            text.decode("utf-8", "replace") if isinstance(text, bytes) else (text or "")
            for text in (expired.stdout, expired.stderr))
    else:
        outcome.status, outcome.stdout, outcome.stderr = (result.returncode, result.stdout,
                                                          result.stderr)
        if result.returncode < 0:
            outcome.escaped = f"the interpreter died of {signal.Signals(-result.returncode).name}"
        elif "Traceback" in result.stderr:
            outcome.escaped = result.stderr.strip().splitlines()[-1]
    outcome.seconds = time.monotonic() - started
    return outcome


def judge(case: Case, workspace: Path, outcome: Outcome, log_text: str) -> list[str]:
    """Every way the outcome falls short of what the case requires."""
    problems = []
    names = [expand(name, workspace) for name in case.names]
    stderr_lines = outcome.stderr.splitlines()
    if outcome.escaped:
        problems.append(f"main did not return: {outcome.escaped}")
    for stream, text in (("stdout", outcome.stdout), ("stderr", outcome.stderr),
                         ("the log", log_text)):
        if "Traceback" in text:
            problems.append(f"a traceback was printed to {stream}")
    if case.usage_error:
        if not (outcome.system_exit or case.isolated) or outcome.status != 2:
            problems.append(f"expected argparse's SystemExit(2), got status {outcome.status!r}"
                            f"{' (returned)' if not outcome.system_exit else ''}")
        if "usage:" not in outcome.stderr:
            problems.append("no usage: line on stderr")
        error_lines = [line for line in stderr_lines if "error:" in line]
    else:
        if outcome.system_exit:
            problems.append(f"main raised SystemExit({outcome.status!r}) instead of returning")
        elif not outcome.escaped and (not isinstance(outcome.status, int) or outcome.status == 0):
            problems.append(f"exit status {outcome.status!r}, expected non-zero")
        error_lines = [line for line in stderr_lines if line.startswith("error:")]
    if len(error_lines) != 1:
        problems.append(f"{len(error_lines)} error lines on stderr, expected 1")
    elif not any(name in error_lines[0] for name in names):
        problems.append(f"the error line names none of {names}")
    output = outcome.stdout + outcome.stderr
    if case.output_matches and not re.search(case.output_matches, output):
        problems.append(f"output does not match {case.output_matches!r}")
    if case.output_must_not_match and re.search(case.output_must_not_match, output):
        problems.append(f"output matches {case.output_must_not_match!r} (wrong diagnosis)")
    if case.max_seconds is not None and outcome.seconds > case.max_seconds:
        problems.append(f"took {outcome.seconds:.1f} s, more than {case.max_seconds} s")
    return problems


def shorten(text: str, limit: int = 1500) -> str:
    text = text.strip()
    return text if len(text) <= limit else f"...{text[-limit:]}"


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
@pytest.mark.slow
def test_bad_input_is_refused_with_one_line(case, tmp_path, capsys, caplog, request,
                                            shared_files):
    shared = Shared(files=shared_files, trained_run=lambda: request.getfixturevalue("trained_run"))
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    for step in case.setup:
        step(workspace, shared)
    capsys.readouterr()
    caplog.clear()
    before = snapshot(workspace)

    argv = ["-q", *(expand(part, workspace) for part in case.argv)]
    outcome = run_in_child(argv) if case.isolated else run_in_process(argv, capsys)

    problems = judge(case, workspace, outcome, caplog.text)
    problems += compare_snapshots(before, snapshot(workspace), case.new_files_in)
    assert not problems, ("\n".join(problems) + f"\n--- status {outcome.status!r} in "
                          f"{outcome.seconds:.1f} s\n--- stderr:\n{shorten(outcome.stderr)}"
                          f"\n--- stdout:\n{shorten(outcome.stdout, 800)}")


def test_the_catalogue_is_large_and_covers_every_command():
    from unetlib.app.cli import build_parser

    names = [case.name for case in CASES]
    assert len(names) == len(set(names)), "case ids must be unique"
    assert len(CASES) >= 45
    # Every command the CLI has (asked of its parser, so a new command needs cases), and
    # only those ("cli/" is the top-level parser itself).
    parser = build_parser()
    commands = set(next(a for a in parser._actions if a.dest == "command").choices)
    assert {name.split("/")[0] for name in names} == commands | {"cli"}
