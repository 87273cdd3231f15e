"""The organ table: which mask value (or colour) is which organ.

A data folder may hold ``organs.csv``::

    value,name,color
    1,liver,#e6194b
    2,kidney_left,#3cb44b
    3,bladder,#4363d8

``value`` is the pixel value the organ has in the masks (0 is always background);
``name`` names it in every table, plot and file that follows; ``color`` (optional,
``#rrggbb``) is how it is painted in RGB colour masks and in predicted overlays. Without
``organs.csv`` a data folder is binary: one foreground, exactly as before organs existed.

Inside unetlib an organ is addressed by its *class*: its 1-based row in the table (the
network's output channel), so organ values need not be consecutive.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from unetlib.core.errors import InputError, describe
from unetlib.core.io import read_csv, write_csv

__all__ = ["ORGANS_FILE", "Organ", "OrganTable", "find_organ_table", "organ_table_path",
           "read_organ_table", "write_organ_table"]

ORGANS_FILE = "organs.csv"
ORGANS_FIELDS = ("value", "name", "color")
MAX_ORGANS = 254
_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")
# Distinct colours for organs whose row gives none (Sasha Trubetskoy's 20 distinct colours).
DEFAULT_COLORS = ("#e6194b", "#3cb44b", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6",
                  "#bcf60c", "#fabebe", "#008080", "#e6beff", "#9a6324", "#fffac8", "#800000",
                  "#aaffc3", "#808000", "#ffd8b1", "#000075", "#808080", "#ffe119")


@dataclass(frozen=True)
class Organ:
    """One row of the organ table.

    Attributes
    ----------
    value : int
        The organ's pixel value in label masks (1 to 65535).
    name : str
    color : str
        ``#rrggbb``: its colour in RGB masks, palette outputs and overlays.
    """

    value: int
    name: str
    color: str

    @property
    def rgb(self) -> tuple[int, int, int]:
        """``color`` as an (r, g, b) tuple of 0-255 integers."""
        return tuple(int(self.color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


@dataclass(frozen=True)
class OrganTable:
    """The organs of a data folder or a run, in class order (class ``k`` is ``organs[k-1]``)."""

    organs: tuple[Organ, ...]
    explicit_colors: bool = False

    @property
    def names(self) -> list[str]:
        return [organ.name for organ in self.organs]

    @property
    def values(self) -> list[int]:
        return [organ.value for organ in self.organs]

    @property
    def classes(self) -> int:
        """Number of network outputs: background plus one per organ."""
        return len(self.organs) + 1

    def value_lookup(self) -> dict[int, int]:
        """Pixel value -> class (0 for background)."""
        return {0: 0, **{organ.value: index + 1 for index, organ in enumerate(self.organs)}}

    def class_values(self) -> np.ndarray:
        """Class -> pixel value, as an array indexable by a class map (0 for background)."""
        return np.array([0, *self.values], dtype=np.uint16 if max(self.values) > 255 else np.uint8)

    def palette(self) -> list[int]:
        """A flat 768-entry RGB palette: black for background, each organ's colour at its value."""
        palette = [0] * 768
        for organ in self.organs:
            if organ.value < 256:
                palette[3 * organ.value:3 * organ.value + 3] = organ.rgb
        return palette

    def to_rows(self) -> list[dict[str, str]]:
        return [{"value": str(organ.value), "name": organ.name, "color": organ.color}
                for organ in self.organs]


def _parse_value(text: str, path: Path, line: int) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        raise InputError(describe(path, f"line {line}: value {text!r} is not a whole number",
                                  "Give each organ's pixel value in the masks (1, 2, ...).")
                         ) from None
    if not 0 <= value <= 65535:
        raise InputError(describe(path, f"line {line}: value {value} is outside 0-65535",
                                  "Mask values are 8- or 16-bit pixel values."))
    return value


def read_organ_table(path: str | os.PathLike[str]) -> OrganTable:
    """Read and check ``organs.csv``.

    A row with value 0 may name the background; it is not an organ. Colours are optional
    but, when given, every organ needs one, distinct and not black (black is background).

    Raises
    ------
    InputError
        Naming the file, the line and what to fix: missing columns, a value that is not a
        whole number in 1-65535, duplicate values or names, an invalid or repeated colour.

    Examples
    --------
    >>> path = getfixture("tmp_path") / "organs.csv"
    >>> _ = path.write_text("name,value,color\\nliver,1,#aa3322\\nkidney,2,#3377cc\\n")
    >>> table = read_organ_table(path)
    >>> table.names, table.values
    (['liver', 'kidney'], [1, 2])
    """
    path = Path(path)
    try:
        rows = read_csv(path)
    except (UnicodeDecodeError, csv.Error) as error:
        raise InputError(describe(path, f"is not a readable CSV file ({error})",
                                  "Save it as plain text: value,name[,color]")) from None
    header = set(rows[0]) if rows else set()
    if not rows or not {"value", "name"} <= {key.strip().lower() for key in header if key}:
        raise InputError(describe(path, "needs a header line 'value,name' (optional ',color') "
                                  "and one line per organ", "For example: 'value,name' then "
                                  "'1,liver' and '2,kidney'."))
    organs: list[Organ] = []
    seen_values: set[int] = set()
    seen_names: set[str] = set()
    seen_keys: dict[str, str] = {}
    colors_given = [bool(str(_field(row, "color") or "").strip()) for row in rows]
    for line, row in enumerate(rows, start=2):
        value = _parse_value(_field(row, "value"), path, line)
        name = str(_field(row, "name") or "").strip()
        color = str(_field(row, "color") or "").strip().lower()
        if value == 0:
            continue  # the background may be named; it is not an organ
        if not name:
            raise InputError(describe(path, f"line {line}: value {value} has no name",
                                      "Name every organ (liver, kidney, ...)."))
        if value in seen_values or name.lower() in seen_names:
            what = f"value {value}" if value in seen_values else f"name {name!r}"
            raise InputError(describe(path, f"line {line}: {what} is listed twice",
                                      "Give each organ its own value and name."))
        if any(colors_given) and not color:
            raise InputError(describe(path, f"line {line}: {name} has no color while other "
                                      "organs have one", "Give every organ a #rrggbb colour, "
                                      "or none at all."))
        if color and (not _COLOR.match(color) or color == "#000000"):
            raise InputError(describe(path, f"line {line}: color {color!r} of {name} is not a "
                                      "#rrggbb colour other than black",
                                      "Write it like #e6194b (black is the background)."))
        key = column_key(name)
        if key in seen_keys:
            raise InputError(describe(path, f"line {line}: name {name!r} differs from "
                                      f"{seen_keys[key]!r} only in punctuation or spaces; tables "
                                      "and history.csv would give both one column",
                                      "Give each organ a name of its own letters or digits."))
        seen_keys[key] = name
        seen_values.add(value)
        seen_names.add(name.lower())
        organs.append(Organ(value=value, name=name, color=color))
    if not organs:
        raise InputError(describe(path, "lists no organ (only the background)",
                                  "Add one line per organ: value,name."))
    if len(organs) > MAX_ORGANS:
        raise InputError(describe(path, f"lists {len(organs)} organs, more than {MAX_ORGANS}",
                                  "Keep the organs you segment."))
    explicit = any(colors_given)
    if explicit:
        colors = [organ.color for organ in organs]
        repeated = sorted({color for color in colors if colors.count(color) > 1})
        if repeated:
            raise InputError(describe(path, f"color {repeated[0]} is used by more than one organ",
                                      "Give each organ its own colour."))
    else:
        organs = [Organ(organ.value, organ.name, DEFAULT_COLORS[index % len(DEFAULT_COLORS)])
                  for index, organ in enumerate(organs)]
    return OrganTable(organs=tuple(organs), explicit_colors=explicit)


def column_key(name: str) -> str:
    """The column-safe key of an organ name (``"left kidney"`` -> ``"left_kidney"``), as
    :func:`unetlib.nn.metrics.metric_name` makes it; two organs must not share one."""
    return re.sub(r"\W+", "_", name.strip()).strip("_").lower() or "organ"


def _field(row: dict[str, str], name: str) -> str | None:
    for key, value in row.items():
        if key is not None and key.strip().lower() == name:
            return value
    return None


def organ_table_path(data_dir: str | os.PathLike[str]) -> Path | None:
    """Where a data folder's ``organs.csv`` is (given ``data1d`` or ``data1d/train``), if any."""
    data_dir = Path(data_dir)
    root = data_dir.parent if data_dir.name == "train" and not (data_dir / "train").is_dir() \
        else data_dir
    path = root / ORGANS_FILE
    return path if path.is_file() else None


def find_organ_table(data_dir: str | os.PathLike[str]) -> OrganTable | None:
    """The organ table of a data folder, or None for a binary one (no ``organs.csv``)."""
    path = organ_table_path(data_dir)
    return None if path is None else read_organ_table(path)


def write_organ_table(path: str | os.PathLike[str], table: OrganTable, *,
                      overwrite: bool = False) -> Path:
    """Write ``table`` as ``organs.csv`` (with colours, so any viewer can use them)."""
    return write_csv(path, table.to_rows(), ORGANS_FIELDS, overwrite=overwrite)
