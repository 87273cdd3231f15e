"""The run folder's files and status: the one place their names are written."""

from __future__ import annotations

import dataclasses
from pathlib import Path

__all__ = ["EMPTY", "FINISHED", "INTERRUPTED", "RESUMABLE", "RUN_FILES", "RunFolder"]

RUN_FILES = ("model.keras", "last.keras", "state.json", "config.json", "history.csv",
             "metrics.json", "history.png")

# A run folder's status, from its files.
EMPTY, INTERRUPTED, RESUMABLE, FINISHED = "empty", "interrupted", "resumable", "finished"


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """A run folder's files, by what they are, and the status they give it.

    The one place the files' names are written. ``metrics.json`` is written last, so a
    folder with it holds a finished run; ``last.keras`` and ``state.json`` (written after
    every epoch) make an unfinished run resumable; any other run file means a run stopped
    during its first epoch (nothing worth keeping).

    Examples
    --------
    >>> folder = RunFolder(getfixture("tmp_path") / "run")
    >>> folder.status, folder.model.name
    ('empty', 'model.keras')
    """

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def model(self) -> Path:
        """The best epoch's model (what prediction uses)."""
        return self.path / "model.keras"

    @property
    def last(self) -> Path:
        """The last epoch's model, with its optimiser state (what resuming starts from)."""
        return self.path / "last.keras"

    @property
    def state(self) -> Path:
        """Epochs done, the best score so far, time spent: for resuming."""
        return self.path / "state.json"

    @property
    def config(self) -> Path:
        """Every parameter of the run, its normalisation, organs, threshold and runtime."""
        return self.path / "config.json"

    @property
    def history(self) -> Path:
        return self.path / "history.csv"

    @property
    def history_plot(self) -> Path:
        return self.path / "history.png"

    @property
    def metrics(self) -> Path:
        """The final scores; written last, so its presence means the run finished."""
        return self.path / "metrics.json"

    @property
    def present(self) -> list[str]:
        """The run files that exist."""
        return [name for name in RUN_FILES if (self.path / name).exists()]

    @property
    def status(self) -> str:
        """:data:`FINISHED`, :data:`RESUMABLE`, :data:`INTERRUPTED` or :data:`EMPTY`."""
        if self.metrics.is_file():
            return FINISHED
        if self.last.is_file() and self.state.is_file():
            return RESUMABLE
        return INTERRUPTED if self.present else EMPTY
