"""Many acquisitions of a study, one task per stack, on a Dask cluster.

A study is tens to hundreds of ~500 MB stacks. :func:`quantify_study` runs
:func:`unetlib.study.quantify.quantify_stack` on each as one ``dask.distributed`` task: on a
local cluster of ``workers`` processes (2 or more), or on an existing cluster given by its
scheduler address (a lab server, or SLURM through dask-jobqueue; see the README). Each
task writes its stack's results atomically, so a stack is either finished or absent; a
finished one is skipped on a re-run; a bad stack is reported and the others finish. The
results of every finished stack are gathered into ``<out>/summary.csv`` and each stack's
outcome into ``<out>/stacks.csv``.

With one worker (the default) and no scheduler the stacks run one after another in this
process, as a single stack always did: a cluster of one process would add only its
start-up (three 16-cycle stacks: 9.5-10.7 s on a one-worker local cluster, 3.5-3.9 s in
the process, AMD EPYC with AVX-512) and no parallelism. A single stack shows a progress bar over
its cycles, several one over the stacks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import traceback
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from unetlib.core.config import QuantifyConfig
from unetlib.core.errors import (
    InputError,
    Interrupted,
    OutputError,
    ParameterError,
    UnetlibError,
    UnetlibWarning,
    describe,
)
from unetlib.core.io import missing_file_error, progress_bar, read_csv, write_csv
from unetlib.core.locking import output_lock
from unetlib.core.resources import (
    QUANTIFY_WORKER_BYTES,
    available_memory_bytes,
    format_bytes,
    is_out_of_memory,
)
from unetlib.data.calibration import load_calibration
from unetlib.inference.predict import check_tile
from unetlib.runs.run import RunFolder, load_run
from unetlib.study.quantify import (
    SUMMARY_FIELDS,
    model_input_lasers,
    quantify_stack,
    run_organs,
)
from unetlib.study.results_folder import RECORD_FILE, SUMMARY_FILE, read_results_record

if TYPE_CHECKING:
    from dask.distributed import LocalCluster

    from unetlib.study.quantify import StackResult

logger = logging.getLogger(__name__)

__all__ = ["StackOutcome", "StudyResult", "quantify_study"]

STATUS_FIELDS = ("stack", "status", "cycles", "qc_flagged", "results", "message")
STACKS_FILE = "stacks.csv"
MAX_WORKERS = 32
# How long a scheduler may take to show a worker before it counts as having none.
WORKER_WAIT_SECONDS = 20
FINISHED, SKIPPED, FAILED = "finished", "skipped", "failed"


@dataclasses.dataclass(frozen=True)
class StackOutcome:
    """How one stack of a study ended: ``finished``, ``skipped`` (done before) or ``failed``."""

    stack: Path
    status: str
    message: str = ""
    result: "StackResult | None" = None


@dataclasses.dataclass(frozen=True)
class StudyResult:
    """Every stack's outcome, and the gathered tables (not written when every stack failed)."""

    out_dir: Path
    outcomes: list[StackOutcome]
    summary: Path
    table: Path

    @property
    def failed(self) -> list[StackOutcome]:
        return [outcome for outcome in self.outcomes if outcome.status == FAILED]


@functools.lru_cache(maxsize=2)
def _cached_run(model_path: str, modified_ns: int):
    """One loaded model per worker process and run (not one per stack)."""
    return load_run(model_path)


def _quantify_task(run_path: str, stack: str, out_dir: str, config: QuantifyConfig,
                   progress: bool = False) -> StackOutcome:
    """One stack, as a worker runs it: every failure becomes an outcome, never a crash."""
    try:
        path = Path(run_path)
        model = RunFolder(path).model if path.is_dir() else path
        run = _cached_run(str(model), model.stat().st_mtime_ns)
        result = quantify_stack(run, stack, out_dir, config, progress=progress)
        return StackOutcome(stack=Path(stack), status=SKIPPED if result.skipped else FINISHED,
                            result=result)
    except Interrupted:
        raise  # Ctrl-C stops the whole command (status 130), not just this stack
    except UnetlibError as error:
        return StackOutcome(stack=Path(stack), status=FAILED, message=str(error))
    except Exception as error:
        if is_out_of_memory(error):  # numpy's, tifffile's or TensorFlow's
            return StackOutcome(stack=Path(stack), status=FAILED,
                                message=f"{stack}: ran out of memory; use fewer --workers.")
        # An unexpected bug: report it, let the other stacks finish.
        logger.error("%s", traceback.format_exc())
        return StackOutcome(stack=Path(stack), status=FAILED,
                            message=f"{stack}: {type(error).__name__}: {error}")


def _check_stacks(stacks: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """The stacks as given, each once (however it is spelled); refuse two with one name."""
    paths = [Path(stack) for stack in stacks]
    if not paths:
        raise ParameterError("stacks=[] is invalid: give at least one acquisition TIFF.")
    unique: dict[Path, Path] = {}
    seen: dict[str, Path] = {}
    for path in paths:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError):  # a symbolic link loop
            raise missing_file_error(path) from None
        if resolved in unique:
            continue
        if path.stem in seen:
            raise ParameterError(f"{path}: has the same name as {seen[path.stem]}; their results "
                                 f"would share the folder {path.stem}/. Rename one, or quantify "
                                 "them into different --out folders.")
        seen[path.stem] = path
        unique[resolved] = path
    return list(unique.values())


def quantify_study(run_path: str | os.PathLike[str], stacks: Sequence[str | os.PathLike[str]],
                   out_dir: str | os.PathLike[str], config: QuantifyConfig = QuantifyConfig(),
                   *, workers: int = 1, scheduler: str | None = None,
                   progress: bool = True) -> StudyResult:
    """Quantify every stack of a study; gather the summaries.

    Parameters
    ----------
    run_path : path-like
        The run folder (or ``model.keras``); on a remote cluster, a path the workers see.
    stacks : sequence of path-like
        Acquisition TIFFs; their names (stems) must differ.
    out_dir : path-like
        ``<out>/<stem>/`` per stack, ``<out>/summary.csv`` and ``<out>/stacks.csv``.
    config : QuantifyConfig
    workers : int
        1: the stacks one after another in this process. 2 to 32: processes of a local
        Dask cluster quantifying that many stacks at once. Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running Dask scheduler, e.g. ``tcp://10.0.0.5:8786``.
    progress : bool
        A progress bar over stacks (over cycles when there is one stack).

    Returns
    -------
    StudyResult

    Raises
    ------
    ParameterError, InputError
        Invalid settings, an unusable run, or stacks with the same name: before any work.
    OutputError
        The output folder cannot be written, or another process is writing it.
    """
    config.validate()
    if not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS:
        raise ParameterError(f"workers={workers!r} is invalid: expected a whole number of worker "
                             f"processes from 1 to {MAX_WORKERS}.")
    paths = _check_stacks(stacks)
    if scheduler is None and workers > 1 and len(paths) > 1:
        _check_worker_memory(workers)
    run_path = Path(run_path)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(describe(out_dir, "exists and is not a folder", "Choose another --out."))
    _check_run(run_path, config)
    # Unreadable or unusable corrections fail every stack alike: refused once, here; a
    # size that does not fit one stack fails that stack.
    load_calibration(config.dark, config.flat, lasers=config.split.lasers, frame_shape=None)
    # An unreachable scheduler is found out before anything is created or locked.
    client = _connect(scheduler) if scheduler is not None else None
    try:
        with output_lock(out_dir):  # creates out_dir, and removes it if it stays empty
            if client is None and (workers == 1 or len(paths) == 1):
                outcomes = _in_this_process(run_path, paths, out_dir, config, progress=progress)
            else:
                outcomes = _on_dask(run_path, paths, out_dir, config, workers=workers,
                                    client=client, progress=progress)
            order = {path: index for index, path in enumerate(paths)}
            outcomes.sort(key=lambda outcome: order.get(outcome.stack, len(order)))
            # When every stack failed there is nothing to gather: the folder stays as it was.
            if any(outcome.status != FAILED for outcome in outcomes):
                _gather(out_dir, outcomes)
    finally:
        if client is not None:
            client.close()
    return StudyResult(out_dir=out_dir, outcomes=outcomes, summary=out_dir / SUMMARY_FILE,
                       table=out_dir / STACKS_FILE)


def _in_this_process(run_path: Path, paths: list[Path], out_dir: Path, config: QuantifyConfig,
                     *, progress: bool) -> list[StackOutcome]:
    """The stacks one after another in this process, a bar over the stacks (or over the
    cycles of a single stack)."""
    if len(paths) == 1:
        return [_quantify_task(str(run_path), str(paths[0]), str(out_dir), config,
                               progress=progress)]
    outcomes = []
    with progress_bar(total=len(paths), description="quantify stacks", unit="stack",
                      enabled=progress) as bar:
        for path in paths:
            outcomes.append(_quantify_task(str(run_path), str(path), str(out_dir), config))
            bar.update(1)
    return outcomes


def _check_worker_memory(workers: int) -> None:
    """Refuse a local cluster whose worker processes would not fit in the memory available."""
    needed, available = workers * QUANTIFY_WORKER_BYTES, available_memory_bytes()
    if needed > available:
        most = max(1, available // QUANTIFY_WORKER_BYTES)
        raise ParameterError(f"workers={workers} is invalid: {workers} worker processes need "
                             f"about {format_bytes(needed)} of memory, more than the "
                             f"{format_bytes(available)} available on this machine. Use at "
                             f"most {most} workers.")


def _check_run(run_path: Path, config: QuantifyConfig) -> None:
    """Refuse an unusable run (or ``--model-input``) here, once, not once per stack."""
    run = load_run(run_path)
    organs = run_organs(run)
    model_input_lasers(run, config.model_input)
    check_tile(run, config.predict.tile)
    if run.organs is None and run.config and not run.calibrated:
        warnings.warn(f"{run_path}: this run did not finish (no metrics.json), so its "
                      f"threshold was never calibrated; using {run.threshold}. Finish it with "
                      "train --resume.", UnetlibWarning, stacklevel=3)
    if config.background is not None and config.background not in organs.names:
        raise ParameterError(f"background={config.background!r} is invalid: the organs of "
                             f"{run_path} are {', '.join(organs.names)}.")


def _on_dask(run_path: Path, paths: list[Path], out_dir: Path, config: QuantifyConfig, *,
             workers: int, client, progress: bool) -> list[StackOutcome]:
    """Run one task per stack on ``client``'s cluster, or on a local cluster of ``workers``
    processes started here when ``client`` is None."""
    # lazy: dask.distributed is needed only when a study has several stacks
    from dask.distributed import Client, as_completed

    _quiet_dask()
    if client is None:
        cluster = start_local_cluster(workers)
        try:
            client = Client(cluster)
        except BaseException:
            cluster.close()
            raise
    else:
        cluster = None
    outcomes: list[StackOutcome] = []
    try:
        futures = {client.submit(_quantify_task, str(run_path.resolve()), str(path.resolve()),
                                 str(out_dir.resolve()), config, pure=False,
                                 key=f"quantify-{path.stem}-{os.getpid()}-{index}"): path
                   for index, path in enumerate(paths)}
        with progress_bar(total=len(futures), description="quantify stacks", unit="stack",
                          enabled=progress) as bar:
            for future in as_completed(futures):
                path = futures[future]
                try:
                    outcome = future.result()
                    outcome = dataclasses.replace(outcome, stack=path)
                except Exception as error:  # the worker died (killed, out of memory)
                    outcome = StackOutcome(stack=path, status=FAILED,
                                           message=f"{path}: its worker failed ({type(error).__name__}"
                                                   f": {error}); run again to retry it.")
                outcomes.append(outcome)
                bar.update(1)
    finally:
        if cluster is not None:
            client.close()
            cluster.close()
    return outcomes


# Dask starts its workers with glibc's MALLOC_TRIM_THRESHOLD_=65536, so that a worker hands
# freed memory back at once. Setting it also fixes glibc's mmap threshold at 128 KiB: every
# frame-sized array is then a fresh mmap whose pages the kernel faults in and zeroes. That
# made quantify 2x slower per stack in a worker than in this process (motion alignment
# allocates many frame-sized arrays) for the same peak memory, so the local workers start
# with glibc's defaults.
NANNY_MALLOC_TRIM = "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_"


def start_local_cluster(workers: int) -> LocalCluster:
    """A local Dask cluster of ``workers`` single-threaded worker processes for quantify.

    Each worker's TensorFlow and OpenMP thread pools get its share of the cores, so the
    workers do not oversubscribe the machine, and its memory allocator keeps glibc's
    defaults (see ``NANNY_MALLOC_TRIM``). The caller closes it.
    """
    import dask.config  # lazy, as dask.distributed
    from dask.distributed import LocalCluster

    threads = str(max(1, (os.cpu_count() or 1) // workers))
    with _quiet_resource_tracker(), warnings.catch_warnings(), dask.config.set(
            {NANNY_MALLOC_TRIM: None}):
        # The scheduler's HTTP server (health checks, not the dashboard) moves to a
        # free port when 8787 is taken by another cluster, and warns: nothing to act on.
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
        # A worker's failure reaches us as its task's error; what workers log
        # themselves is shut-down races (heartbeats to a closed scheduler, cancelled
        # tasks), hence silence_logs.
        return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                            dashboard_address=None, silence_logs=logging.CRITICAL,
                            env={"TF_NUM_INTRAOP_THREADS": threads,
                                 "TF_NUM_INTEROP_THREADS": "1",
                                 "OMP_NUM_THREADS": threads,
                                 "TF_CPP_MIN_LOG_LEVEL": "2"})


def _quiet_dask() -> None:
    """The cluster's own chatter is not the user's business.

    Its warnings are internal (a worker "still alive after 4 s", a lost worker's tasks
    "recomputed elsewhere" with stimulus ids); what matters reaches the user through the
    tasks' results: a stack that failed is reported, a retried one is quantified.
    """
    logging.getLogger("distributed").setLevel(logging.ERROR)


@contextlib.contextmanager
def _quiet_resource_tracker() -> Iterator[None]:
    """Start worker processes whose resource tracker does not warn about their semaphores.

    Python's multiprocessing resource tracker, started with the first worker process,
    prints "There appear to be N leaked semaphore objects to clean up at shutdown" when a
    worker was killed (out of memory, kill -9), then cleans them up. The tracker is a
    separate process reading ``PYTHONWARNINGS`` when it starts, so the filter is set for
    the start only, then the caller's environment is restored.
    """
    ignore = "ignore:resource_tracker:UserWarning"
    previous = os.environ.get("PYTHONWARNINGS")
    os.environ["PYTHONWARNINGS"] = f"{previous},{ignore}" if previous else ignore
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = previous


def _connect(scheduler: str):
    from dask.distributed import Client

    _quiet_dask()
    try:
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as error:
        raise InputError(describe(scheduler, f"no Dask scheduler answered ({error})",
                                  "Start one (dask scheduler) and its workers, or leave out "
                                  "--scheduler to use a local cluster.")) from None
    # Tasks sent to a scheduler without workers wait forever: refuse it instead.
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_SECONDS)
    except (OSError, TimeoutError):
        client.close()
        raise InputError(describe(scheduler, "the Dask scheduler has no workers (none joined "
                                  f"within {WORKER_WAIT_SECONDS} s)",
                                  f"Start workers (dask worker {scheduler}), or leave out "
                                  "--scheduler to use a local cluster.")) from None
    return client


def _gather(out_dir: Path, outcomes: list[StackOutcome]) -> None:
    """Write ``summary.csv`` and ``stacks.csv`` of ``out_dir``.

    ``summary.csv`` gathers the summary of every finished stack in ``out_dir`` -- those of
    earlier runs too, so quantifying a study in several goes still gives one table --
    and is left untouched when that changes nothing. ``stacks.csv`` lists this run's
    outcomes.
    """
    rows = []
    for folder in sorted(path for path in out_dir.iterdir() if path.is_dir()):
        if (folder / RECORD_FILE).is_file() and (folder / SUMMARY_FILE).is_file():
            # Stacks quantified in several goes may have used different runs: say which.
            run = str(read_results_record(folder).get("run", ""))
            rows += [{**row, "run": run} for row in read_csv(folder / SUMMARY_FILE)]
    summary = out_dir / SUMMARY_FILE
    if not (summary.is_file() and read_csv(summary) == rows):
        write_csv(summary, rows, (*SUMMARY_FIELDS, "run"), overwrite=True)
    write_csv(out_dir / STACKS_FILE, [
        {"stack": str(outcome.stack), "status": outcome.status,
         "cycles": str(outcome.result.cycles) if outcome.result else "",
         "qc_flagged": str(outcome.result.flagged) if outcome.result else "",
         "results": str(outcome.result.out_dir) if outcome.result else "",
         "message": outcome.message} for outcome in outcomes], STATUS_FIELDS, overwrite=True)
