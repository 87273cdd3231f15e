"""The study sheet: which acquisition is which mouse, in which group, injected when.

``study.csv`` lies beside the stacks (or anywhere: paths are relative to the sheet)::

    stack,mouse,group,injection_s,dose
    m1.tif,mouse1,control,30,0
    m2.tif,mouse2,treated,42.5,10

``stack``, ``mouse`` and ``group`` are required; ``injection_s`` (seconds from the first
frame to the injection) is optional, per row or for the whole sheet; every other column is
carried through to the analysis' tables unchanged. Everything a typo can break is checked
here, before any stack is read, with one line naming the sheet, the row and the fix.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from unetlib.core.errors import InputError, describe
from unetlib.core.io import missing_file_error

__all__ = ["REQUIRED_COLUMNS", "StudyMouse", "StudySheet", "read_study_sheet"]

REQUIRED_COLUMNS = ("stack", "mouse", "group")
INJECTION_COLUMN = "injection_s"


@dataclass(frozen=True)
class StudyMouse:
    """One row of the sheet: one mouse's acquisition.

    Attributes
    ----------
    stack : Path
        The acquisition TIFF (resolved against the sheet's folder).
    mouse, group : str
    injection_s : float or None
        Seconds from the first frame to the injection; None when the sheet has none.
    extra : dict of str to str
        The sheet's other columns (dose, sex, ...), as written.
    """

    stack: Path
    mouse: str
    group: str
    injection_s: float | None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StudySheet:
    """A whole study sheet.

    Attributes
    ----------
    path : Path
    mice : tuple of StudyMouse
        In the sheet's order.
    extra_columns : tuple of str
        The sheet's own columns beyond the known ones, in its order.
    """

    path: Path
    mice: tuple[StudyMouse, ...]
    extra_columns: tuple[str, ...] = ()

    @property
    def groups(self) -> list[str]:
        """The groups in the order they first appear (the first is the default reference)."""
        return list(dict.fromkeys(mouse.group for mouse in self.mice))

    @property
    def has_injection(self) -> bool:
        return all(mouse.injection_s is not None for mouse in self.mice)


def read_study_sheet(path: str | os.PathLike[str]) -> StudySheet:
    """Read and check ``study.csv``.

    Parameters
    ----------
    path : path-like
        The sheet (comma-separated, a header row; UTF-8, with or without Excel's BOM).

    Returns
    -------
    StudySheet

    Raises
    ------
    InputError
        A missing column, an empty cell in a required column, a stack that does not exist
        or is listed twice, one mouse listed twice, an ``injection_s`` that is not a
        number >= 0, or ``injection_s`` given for some rows only.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("a.tif", "b.tif"):
    ...     (folder / name).touch()
    >>> _ = (folder / "study.csv").write_text("stack,mouse,group,dose\\n"
    ...                                       "a.tif,m1,control,0\\nb.tif,m2,treated,5\\n")
    >>> sheet = read_study_sheet(folder / "study.csv")
    >>> sheet.groups, [mouse.extra for mouse in sheet.mice], sheet.has_injection
    (['control', 'treated'], [{'dose': '0'}, {'dose': '5'}], False)
    """
    path = Path(path)
    if not path.is_file():
        raise missing_file_error(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip() for name in (reader.fieldnames or [])]
            rows = [{(key or "").strip(): (value or "").strip() if isinstance(value, str) else ""
                     for key, value in row.items()} for row in reader]
    except UnicodeDecodeError:
        raise InputError(describe(path, "is not a UTF-8 text file",
                                  "Save the sheet as CSV (UTF-8) from the spreadsheet.")) from None
    except csv.Error as error:
        raise InputError(describe(path, f"is not a readable CSV file ({error})",
                                  "Save the sheet as CSV from the spreadsheet.")) from None
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise InputError(describe(path, f"has no {', '.join(missing)} column(s) (its header: "
                                  f"{', '.join(header) or 'empty'})",
                                  "A study sheet needs the columns stack, mouse and group."))
    if not rows:
        raise InputError(describe(path, "lists no stacks", "Add one row per mouse."))
    with_injection = [bool(row.get(INJECTION_COLUMN)) for row in rows]
    if any(with_injection) and not all(with_injection):
        line = 2 + with_injection.index(False)
        raise InputError(describe(path, f"row {line} has no {INJECTION_COLUMN} while others "
                                  "have one", "Give every mouse its injection time, or none."))
    known = (*REQUIRED_COLUMNS, INJECTION_COLUMN)
    extra_columns = tuple(name for name in header if name not in known)
    mice, stacks, group_of = [], {}, {}
    for line, row in enumerate(rows, start=2):
        mice.append(_mouse(path, line, row, extra_columns))
        mouse = mice[-1]
        if mouse.stack in stacks:
            raise InputError(describe(path, f"rows {stacks[mouse.stack]} and {line} both list "
                                      f"{row['stack']}", "List each acquisition once."))
        stacks[mouse.stack] = line
        if mouse.mouse in group_of:
            first_line, group = group_of[mouse.mouse]
            problem = (f"rows {first_line} and {line} put mouse {mouse.mouse} in the groups "
                       f"{group} and {mouse.group}" if group != mouse.group else
                       f"rows {first_line} and {line} both are mouse {mouse.mouse}")
            raise InputError(describe(path, problem, "A study analyses one acquisition per "
                                      "mouse: give each row its own mouse (e.g. mouse7-day2)."))
        group_of[mouse.mouse] = (line, mouse.group)
    return StudySheet(path=path, mice=tuple(mice), extra_columns=extra_columns)


def _mouse(path: Path, line: int, row: dict[str, str], extra_columns: tuple[str, ...]) -> StudyMouse:
    for name in REQUIRED_COLUMNS:
        if not row.get(name):
            raise InputError(describe(path, f"row {line} has no {name}",
                                      f"Fill in its {name}, or remove the row."))
    stack = Path(row["stack"])
    stack = stack if stack.is_absolute() else path.parent / stack
    if not stack.is_file():
        raise InputError(describe(path, f"row {line}: the stack {row['stack']} does not exist "
                                  f"(looked for {stack})",
                                  "Write its path relative to the sheet's folder."))
    injection = row.get(INJECTION_COLUMN) or None
    if injection is not None:
        try:
            injection = float(injection)
        except ValueError:
            injection = math.nan
        if not math.isfinite(injection) or injection < 0:
            raise InputError(describe(path, f"row {line}: {INJECTION_COLUMN}="
                                      f"{row[INJECTION_COLUMN]!r} is not a number of seconds >= 0",
                                      "Give the seconds from the first frame to the injection."))
    return StudyMouse(stack=stack, mouse=row["mouse"], group=row["group"], injection_s=injection,
                      extra={name: row.get(name, "") for name in extra_columns})
