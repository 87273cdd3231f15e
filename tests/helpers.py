"""Small data folders shared by several test modules (import: ``from helpers import ...``)."""

from __future__ import annotations

import logging
import socket
import warnings
from dataclasses import dataclass

import numpy as np

from unetlib.core.config import SyntheticConfig
from unetlib.core.io import write_image

# The acquisition of organ_data: 16 cycles of 96 x 128 pixels, 3 organs.
ORGAN_STACK = SyntheticConfig(cycles=16, height=96, width=128)


def write_data_folder(root, count=4, size=(48, 64), dtype=np.uint16):
    """A data folder of frames with a bright disc each and its 0/1 mask.

    Also ``test/`` (the same frames) and ``truth/`` (the discs as 0/255). Float ``dtype``
    writes TIFF frames, integer ones PNG.
    """
    rng = np.random.default_rng(0)
    rows, cols = np.mgrid[:size[0], :size[1]]
    suffix = ".tif" if np.issubdtype(dtype, np.floating) else ".png"
    for index in range(count):
        disc = (rows - 20 - index) ** 2 + (cols - 30) ** 2 < 100
        frame = (rng.random(size) * 800 + disc * 3000).astype(dtype)
        write_image(root / "train" / "frames" / f"{index}{suffix}", frame)
        write_image(root / "train" / "masks" / f"{index}.png", disc.astype(np.uint8))
        write_image(root / "test" / f"{index}{suffix}", frame)
        write_image(root / "truth" / f"{index}.png", disc.astype(np.uint8) * 255)
    return root


def organ_data(root, config=None):
    """A tiny synthetic acquisition with 3 named organs: 8 annotated frames, 4 held out."""
    from unetlib.core.config import PickConfig
    from unetlib.data.frames import pick_frames
    from unetlib.data.organs import write_organ_table
    from unetlib.data.synthetic import export_truth_masks, organ_table, write_synthetic_stack

    stack, truth = write_synthetic_stack(root / "stack.tif",
                                         config or ORGAN_STACK,
                                         truth_path=root / "truth.tif")
    data = root / "data"
    picked = pick_frames(stack, data, PickConfig(count=8)).cycles
    write_organ_table(data / "organs.csv", organ_table())
    export_truth_masks(truth, data / "train" / "frames.csv", data / "train" / "masks",
                       organs=True)
    pick_frames(stack, data, PickConfig(count=4, subset="test", exclude=tuple(picked)))
    export_truth_masks(truth, data / "test" / "frames.csv", root / "truth", organs=True)
    return data


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (for servers the tests start)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class CliOutcome:
    """What ``python -m unetlib`` returned and printed."""

    returncode: int
    stdout: str
    stderr: str


def run_main(capsys, *args) -> CliOutcome:
    """``python -m unetlib ARGS`` through the CLI's ``main`` in this test process.

    For tests of what a command writes, prints and returns, where a fresh process is not
    the point: it saves the 4-5 s of CPU that loading TensorFlow costs each new process.
    Tests of signals, kills, encodings and the interpreter's exit keep real processes.
    The root logger is bare while it runs, so ``main`` installs its own handler as in a
    fresh process and its log lines (warnings, and with ``-q`` only those) reach stderr.
    """
    from unetlib.app.cli import main

    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    for handler in saved_handlers:
        root.removeHandler(handler)
    capsys.readouterr()  # only this command's output
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")  # shown (as the CLI's one-line warnings), not raised
            status = main([str(arg) for arg in args])
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in saved_handlers:
            root.addHandler(handler)
        root.setLevel(saved_level)
    captured = capsys.readouterr()
    return CliOutcome(status, captured.out, captured.err)
