"""What a training is asked to compute, and what is decided from it before any training.

A request is the resolved config (the task's network, loss and augmentation, the
checkpoint rule), the data fingerprint and the organ table: equal requests produce
equivalent runs. From it,
:func:`reusable_run` decides what :func:`unetlib.runs.train.train` does first: return the
finished run of the same request as it is, or refuse an output folder that holds another
run, is a file, or lies in the data. Kept free of TensorFlow so the command line answers a
rerun or a mistyped ``--out`` in a second, not after the 5-8 s TensorFlow takes to load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from unetlib.core.config import (
    BINARY_LOSSES,
    ORGAN_LOSSES,
    TrainConfig,
    auto_augment,
    auto_loss,
    to_dict,
)
from unetlib.core.errors import InputError, OutputError, ParameterError, describe
from unetlib.core.io import read_csv, read_json
from unetlib.core.records import as_record, same_request
from unetlib.data.dataset import find_pairs
from unetlib.data.organs import OrganTable, find_organ_table, organ_table_path
from unetlib.runs.folder import FINISHED, RESUMABLE, RunFolder

if TYPE_CHECKING:
    from unetlib.runs.finetune import StartingPoint

logger = logging.getLogger(__name__)

__all__ = ["TrainResult", "TrainingRequest", "data_fingerprint", "existing_run_error",
           "load_history", "load_result", "resolve_loss", "reusable_run", "same_finished_run",
           "training_request"]


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What :func:`unetlib.runs.train.train` produced.

    Attributes
    ----------
    run_dir, model_path : Path
        The run folder and its best model (``model.keras``).
    history : list of dict
        One row per epoch (the rows of ``history.csv``, as numbers).
    best_epoch : int
        1-based epoch whose weights are in ``model.keras``.
    best_val_dice : float
        Validation Dice (tiles, threshold 0.5) of that epoch.
    threshold : float or None
        Threshold maximising the mean validation Dice over whole frames (binary runs;
        None for organ runs, whose classes are the most probable one per pixel).
    val_dice : float
        Mean per-frame validation Dice at ``threshold`` (organ runs: mean over organs).
    epochs_completed : int
    stopped_by_time_budget : bool
        True when ``max_minutes`` ended training before ``epochs``.
    seconds : float
        Wall-clock time of this call (0 for a run reused as it was).
    metrics : dict
        The content of ``metrics.json``.
    """

    run_dir: Path
    model_path: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_val_dice: float
    threshold: float | None
    val_dice: float
    epochs_completed: int
    stopped_by_time_budget: bool
    seconds: float
    metrics: dict[str, Any]


def load_history(path: Path) -> list[dict[str, float]]:
    """The rows of a run's ``history.csv`` as numbers (epochs as integers); none if absent."""
    if not path.is_file():
        return []
    return [{key: int(float(value)) if key == "epoch" else float(value)
             for key, value in row.items() if value not in ("", None)}
            for row in read_csv(path)]


def load_result(run_dir: str | os.PathLike[str]) -> TrainResult:
    """Read a finished run folder back as a :class:`TrainResult` (no training).

    Raises
    ------
    InputError
        When the folder holds no finished run (``metrics.json`` missing).
    """
    run_dir = Path(run_dir)
    folder = RunFolder(run_dir)
    if not folder.metrics.is_file():
        raise InputError(describe(run_dir, "holds no finished training run (metrics.json is "
                                  "missing)", "Train into it first, or resume it."))
    metrics = read_json(folder.metrics)
    return TrainResult(run_dir=run_dir, model_path=folder.model,
                       history=load_history(folder.history),
                       best_epoch=int(metrics["best_epoch"]),
                       best_val_dice=float(metrics.get("best_val_dice",
                                                       metrics.get("best_val_dice_tiles"))),
                       threshold=None if metrics.get("threshold") is None
                       else float(metrics["threshold"]),
                       val_dice=float(metrics["val_dice_at_threshold"]),
                       epochs_completed=int(metrics["epochs_completed"]),
                       stopped_by_time_budget=bool(metrics["stopped_by_time_budget"]),
                       seconds=0.0, metrics=metrics)


def data_fingerprint(paths: list[Path], root: Path) -> str:
    """sha256 over the relative names and bytes of ``paths`` (order-independent)."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: str(p.relative_to(root)) if p.is_relative_to(root)
                       else str(p)):
        name = str(path.relative_to(root)) if path.is_relative_to(root) else path.name
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def resolve_loss(config: TrainConfig, organs: OrganTable | None, data_dir: Path) -> str:
    """``auto`` -> the loss for the data and network; a binary loss for organs (or back) is
    refused."""
    loss = config.loss
    if loss == "auto":
        return auto_loss(organs is not None, config.model)
    if organs is not None and loss in BINARY_LOSSES:
        raise ParameterError(describe(organ_table_path(data_dir), f"loss={loss} is invalid for "
                                      "several organs", "Use ce, ce+dice or edge-ce+dice "
                                      "(or auto)."))
    if organs is None and loss in ORGAN_LOSSES:
        raise ParameterError(describe(data_dir, f"loss={loss} is invalid for binary masks (no "
                                      "organs.csv)", "Use bce or bce+dice (or auto)."))
    return loss


@dataclasses.dataclass(frozen=True)
class TrainingRequest:
    """A training's resolved config, its data and the record of both.

    Attributes
    ----------
    data_dir : Path
    asked : TrainConfig
        The config with the task's network and loss chosen, its checkpoint rule as asked.
    organs : OrganTable or None
        The data folder's organ table (None: one foreground).
    pair_paths : list of (Path, Path)
        The annotated frames and their masks.
    fingerprint : str
        :func:`data_fingerprint` of those files.
    start_sha256 : str or None
        The checksum of the model fine-tuning starts from.
    """

    data_dir: Path
    asked: TrainConfig
    organs: OrganTable | None
    pair_paths: list[tuple[Path, Path]]
    fingerprint: str
    start_sha256: str | None = None

    @property
    def config(self) -> TrainConfig:
        """The config as it trains: ``asked`` with the checkpoint rule resolved for its
        network."""
        return dataclasses.replace(self.asked, checkpoint=self.asked.kept_checkpoint())

    @property
    def record(self) -> dict[str, Any]:
        """What ``config.json`` stores as the run's request (compared on a rerun)."""
        record = {"config": to_dict(self.config), "fingerprint": self.fingerprint}
        if self.organs is not None:
            record["organs"] = self.organs.to_rows()
        if self.start_sha256 is not None:
            record["init_sha256"] = self.start_sha256
        return as_record(record)

    def starting_from(self, start: "StartingPoint") -> "TrainingRequest":
        """The request of fine-tuning from ``start``: its architecture with the optimiser
        asked for (fine-tuning often wants a lower learning rate), its normalisation (its
        features expect inputs scaled as they were learnt), and its file's checksum."""
        model = dataclasses.replace(start.model_config, optimizer=self.asked.model.optimizer,
                                    learning_rate=self.asked.model.learning_rate)
        asked = dataclasses.replace(self.asked, model=model, normalize=start.normalize)
        return dataclasses.replace(self, asked=asked, start_sha256=start.sha256)


def training_request(data_dir: str | os.PathLike[str], config: TrainConfig) -> TrainingRequest:
    """Resolve ``config`` for the data in ``data_dir`` and fingerprint that data.

    ``config`` must be validated. Fine-tuning (``config.init_from``) adds its starting
    model with :meth:`TrainingRequest.starting_from`.

    Raises
    ------
    InputError
        No frames or masks folder, or an unreadable ``organs.csv``.
    ParameterError
        A loss for the other kind of masks.
    """
    data_dir = Path(data_dir)
    organs = find_organ_table(data_dir)
    config = config.for_task(organs is not None)
    augment = (config.augment if config.augment is not None
               else auto_augment(organs is not None, config.model))
    config = dataclasses.replace(config, loss=resolve_loss(config, organs, data_dir),
                                 augment=augment)
    pair_paths = find_pairs(data_dir)
    fingerprint = data_fingerprint([path for pair in pair_paths for path in pair], data_dir)
    return TrainingRequest(data_dir, config, organs, pair_paths, fingerprint)


def same_finished_run(run_dir: str | os.PathLike[str], record: dict[str, Any]) -> bool:
    """True when ``run_dir`` holds a finished run made from exactly ``record``.

    Compared by :func:`unetlib.core.records.same_request`, so a finished run stays
    reusable after a setting was added to or removed from unetlib.
    """
    folder = RunFolder(run_dir)
    if folder.status != FINISHED or not folder.config.is_file():
        return False
    try:
        stored = read_json(folder.config).get("request")
    except InputError:
        return False
    return stored is not None and same_request(record, stored)


def existing_run_error(run_dir: Path) -> OutputError:
    """The refusal of a new run in a folder that holds a finished or unfinished run."""
    folder = RunFolder(run_dir)
    finished = folder.status == FINISHED
    return OutputError(describe(
        run_dir, ("holds a finished run" if finished else "holds an unfinished run")
        + f" ({', '.join(folder.present)})",
        "Choose another --out or pass --force to replace it." if finished else
        "Choose another --out, continue it with --resume, or pass --force to replace it."))


def reusable_run(run_dir: str | os.PathLike[str], request: TrainingRequest, *,
                 resume: bool = False, force: bool = False) -> TrainResult | None:
    """The finished run of the same request in ``run_dir``, or None to train; refuse an
    output folder training must not write.

    Raises
    ------
    OutputError
        ``run_dir`` is a file, lies in the data folder, or (neither ``resume`` nor
        ``force``) holds another finished run or a resumable one.
    """
    run_dir = Path(run_dir)
    if not force and not resume and same_finished_run(run_dir, request.record):
        logger.info("%s already holds this run (same parameters and data): reusing it",
                    run_dir)
        return load_result(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise OutputError(describe(run_dir, "exists and is not a folder",
                                   "Give a run folder path for --out."))
    _refuse_run_in_data(run_dir, request.data_dir)
    if not force and not resume and RunFolder(run_dir).status in (FINISHED, RESUMABLE):
        raise existing_run_error(run_dir)
    return None


def _refuse_run_in_data(run_dir: Path, data_dir: Path) -> None:
    """Refuse a run folder that is the data folder or lies in its frames, masks or test
    frames: its files would be read as data next time, or break the folder."""
    run, data = run_dir.resolve(), data_dir.resolve()
    if run == data or any(run.is_relative_to(data / part) for part in ("train", "test")):
        raise OutputError(describe(run_dir, f"is inside the data folder {data_dir}",
                                   "Give --out a folder outside it, e.g. runs/<name>."))
