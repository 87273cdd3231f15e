"""Small data folders shared by several test modules (import: ``from helpers import ...``)."""

from __future__ import annotations

import numpy as np

from unetlib.io import write_image


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
