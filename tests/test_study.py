"""Quantifying a study: many stacks as Dask tasks (``quantify`` with several STACKs).

Every Dask cluster here runs in other processes: the CLI's own local cluster, or a
``dask scheduler`` and ``dask worker`` started by a fixture. The test process only
starts them, reads what they wrote and stops them (warnings are errors in pytest, and
cluster threads do not belong in it). Every process started here is stopped in a
``finally``; a marker in the environment of each CLI run lets the tests check that no
worker process of it outlives it.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import psutil
import pytest
from helpers import free_port

from unetlib.app.cli import main
from unetlib.core.config import QuantifyConfig, SyntheticConfig
from unetlib.data.synthetic import ORGANS, write_synthetic_stack

SMALL_STACK = dict(cycles=4, height=96, width=128)
LASERS = 4
ORGAN_NAMES = {organ.name for organ in ORGANS}
STACK_FILES = ("intensities.csv", "cycles.csv", "summary.csv", "labels.tif", "curves.png",
               "organs.csv", "quantify.json")
CLI_TIMEOUT = 300  # seconds; a hung cluster fails the test instead of hanging the suite
START_TIMEOUT = 60
MARKER = "UNETLIB_TEST_STUDY_MARKER"


# --- helpers ------------------------------------------------------------------------------

def small_stack(path: Path, seed: int) -> Path:
    """A 4-cycle, 4-laser 96 x 128 synthetic acquisition with ImageJ frame timing."""
    stack, _ = write_synthetic_stack(path, SyntheticConfig(**SMALL_STACK, seed=seed))
    return stack


def cli_env(scratch: Path) -> dict[str, str]:
    """The CLI's environment: quiet TensorFlow, Dask's scratch space under ``scratch``,
    and a unique marker that every process the CLI starts inherits."""
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
            "DASK_TEMPORARY_DIRECTORY": str(scratch), MARKER: uuid.uuid4().hex}


def run_cli(*args, env: dict[str, str], timeout: float = CLI_TIMEOUT
            ) -> subprocess.CompletedProcess:
    """``python -m unetlib ARGS`` in a fresh process, as a user runs it."""
    return subprocess.run([sys.executable, "-m", "unetlib", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def statuses(out: Path) -> list[tuple[str, str]]:
    """``(stack file name, status)`` of each row of ``OUT/stacks.csv``, in its order."""
    return [(Path(row["stack"]).name, row["status"]) for row in read_rows(out / "stacks.csv")]


def mtimes(out: Path, stems) -> dict[str, int]:
    return {stem: (out / stem / "intensities.csv").stat().st_mtime_ns for stem in stems}


def marked_processes(marker: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``MARKER=marker``."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARKER) == marker and \
                    process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """Terminate ``process`` and whatever it started (a worker's nanny spawns the worker);
    kill what does not stop within ``timeout``."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)
    _, alive = psutil.wait_procs(children, timeout=timeout)
    for child in alive:
        child.kill()
    psutil.wait_procs(alive, timeout=timeout)


def wait_until(condition, what: str, process: subprocess.Popen, log: Path,
               timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None:
            pytest.fail(f"{what}: the process exited ({process.returncode}); its log:\n"
                        f"{log.read_text(errors='replace')}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout} s; log:\n{log.read_text(errors='replace')}")
        time.sleep(0.2)


def accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- fixtures -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def study(organ_run, tmp_path_factory):
    """Three small stacks, the third a truncated copy, quantified once by the CLI on a
    local cluster of 2 workers. The tests of this module that re-run the command come
    after the ones that read this first run's results."""
    root = tmp_path_factory.mktemp("study")
    stacks = [small_stack(root / "stacks" / f"mouse{index}.tif", seed=index) for index in range(2)]
    intact = small_stack(root / "intact" / "mouse2.tif", seed=2)
    corrupt = root / "stacks" / "mouse2.tif"
    corrupt.write_bytes(intact.read_bytes()[:4000])
    stacks.append(corrupt)
    out = root / "out"
    env = cli_env(root / "dask-scratch")
    command = ("quantify", organ_run["run"], *stacks, "--out", out, "--workers", "2")
    # Another cluster's HTTP server on Dask's default port, as on a shared lab machine.
    with contextlib.ExitStack() as held:
        other = held.enter_context(socket.socket())
        with contextlib.suppress(OSError):  # already taken: the same situation
            other.bind(("127.0.0.1", 8787))
            other.listen()
        result = run_cli(*command, env=env)
    return SimpleNamespace(run=organ_run["run"], stacks=stacks, corrupt=corrupt, intact=intact,
                           out=out, env=env, command=command, first=result,
                           good=[stack.stem for stack in stacks[:2]])


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """A ``dask scheduler`` on 127.0.0.1 and one ``dask worker`` (one process, one thread)
    attached to it, as on a lab server; stopped at the end of the module."""
    root = tmp_path_factory.mktemp("dask_cluster")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "DASK_TEMPORARY_DIRECTORY": str(root / "scratch")}
    scheduler_log, worker_log = root / "scheduler.log", root / "worker.log"
    processes: list[subprocess.Popen] = []
    logs = []
    try:
        logs.append(open(scheduler_log, "wb"))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(port), "--no-dashboard"],
            stdout=logs[-1], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
        wait_until(lambda: accepts_connections(port), f"dask scheduler at {address}",
                   processes[0], scheduler_log)
        logs.append(open(worker_log, "wb"))
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--nworkers", "1", "--no-dashboard", "--local-directory", str(root / "worker")],
            stdout=logs[-1], stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env))
        wait_until(lambda: "Registered to" in worker_log.read_text(errors="replace"),
                   f"dask worker joining {address}", processes[1], worker_log)
        yield SimpleNamespace(address=address, scheduler_log=scheduler_log, root=root)
    finally:
        for process in reversed(processes):
            stop(process)
        for log in logs:
            log.close()


@pytest.fixture(scope="module", autouse=True)
def unreachable_scheduler_run(organ_run, tmp_path_factory):
    """``quantify --scheduler`` at a port where nothing listens (bound, not listening, so
    connections are refused), started when the module starts.

    The CLI waits out its 20 s connect timeout almost idle; started first, it runs while
    the other tests work instead of adding its 20 s after them. Its test reads the result.
    """
    root = tmp_path_factory.mktemp("unreachable")
    stacks = [small_stack(root / f"lab{index}.tif", seed=index) for index in range(2)]
    closed = socket.socket()
    process = None
    try:
        closed.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{closed.getsockname()[1]}"
        with open(root / "stdout.txt", "wb") as stdout, open(root / "stderr.txt", "wb") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "unetlib", "quantify", str(organ_run["run"]),
                 *map(str, stacks), "--out", str(root / "out"), "--scheduler", address],
                stdout=stdout, stderr=stderr, stdin=subprocess.DEVNULL,
                env=cli_env(root / "scratch"))
        yield SimpleNamespace(process=process, address=address, out=root / "out",
                              stderr=root / "stderr.txt")
    finally:
        if process is not None:
            stop(process)
        closed.close()


# --- a local cluster: one bad stack among good ones ---------------------------------------
# Each test reads the study fixture's run on a local cluster, so each is slow.

@pytest.mark.slow
def test_local_cluster_reports_the_corrupt_stack_and_finishes_the_others(study):
    result = study.first
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 2, result.stderr
    assert str(study.corrupt) in errors[0]
    assert "1 of 3 stack(s) failed" in errors[1]
    for stem in study.good:
        assert sorted(path.name for path in (study.out / stem).iterdir()) == sorted(STACK_FILES)
        assert f"{stem}.tif: 4 cycles -> " in result.stdout
    bad = study.out / study.corrupt.stem
    assert not (bad / "intensities.csv").exists()
    assert not bad.exists() or not any(bad.iterdir())


@pytest.mark.slow
def test_local_cluster_stacks_table_lists_each_stack_outcome(study):
    rows = read_rows(study.out / "stacks.csv")
    assert [(row["stack"], row["status"]) for row in rows] == [
        (str(study.stacks[0]), "finished"), (str(study.stacks[1]), "finished"),
        (str(study.corrupt), "failed")]
    for row, stem in zip(rows[:2], study.good):
        assert row["cycles"] == "4" and row["message"] == ""
        assert Path(row["results"]) == (study.out / stem).resolve()
    assert str(study.corrupt) in rows[2]["message"]
    assert rows[2]["results"] == "" and rows[2]["cycles"] == ""


@pytest.mark.slow
def test_local_cluster_summary_gathers_only_the_finished_stacks(study):
    rows = read_rows(study.out / "summary.csv")
    assert Counter(row["stack"] for row in rows) == {stem: len(ORGANS) * LASERS
                                                      for stem in study.good}
    for stem in study.good:
        pairs = {(row["organ"], row["laser"]) for row in rows if row["stack"] == stem}
        assert pairs == {(name, str(laser)) for name in ORGAN_NAMES
                         for laser in range(1, LASERS + 1)}


@pytest.mark.slow
def test_local_cluster_keeps_dask_logging_off_stderr(study):
    """The cluster's start-up and shut-down log lines are not the user's business, nor its
    move to another port when Dask's default one is taken."""
    assert study.first.returncode == 1, study.first.stderr
    assert "distributed." not in study.first.stderr
    assert "already in use" not in study.first.stderr, study.first.stderr


@pytest.mark.slow
def test_local_cluster_leaves_no_worker_process_behind(study):
    assert study.first.returncode == 1, study.first.stderr
    leftovers = marked_processes(study.env[MARKER])
    _, alive = psutil.wait_procs(leftovers, timeout=10)
    assert alive == [], [process.cmdline() for process in alive]


@pytest.mark.slow
# distributed's scheduler leaves the socket of a port another cluster holds open when it
# moves its HTTP server to a free one (distributed/node.py): not unetlib's to close. Seen
# when another test process's cluster held port 8787 at the same moment.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning",
                            "ignore::ResourceWarning")
def test_local_workers_share_the_cores_and_keep_glibcs_allocator_defaults():
    """Dask's default MALLOC_TRIM_THRESHOLD_ made every frame-sized array a fresh mmap
    (quantify 2x slower in a worker); the workers start without it, with their share of
    the cores for TensorFlow and OpenMP."""
    from dask.distributed import Client

    from unetlib.study.cluster import start_local_cluster

    def environment():
        return {name: os.environ.get(name) for name in (
            "MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")}

    share = str(max(1, (os.cpu_count() or 1) // 2))
    with start_local_cluster(2) as cluster, Client(cluster) as client:
        seen = client.run(environment)
    assert len(seen) == 2
    assert all(env == {"MALLOC_TRIM_THRESHOLD_": None, "OMP_NUM_THREADS": share,
                       "TF_NUM_INTRAOP_THREADS": share} for env in seen.values()), seen


# --- re-runs of the same study -------------------------------------------------------------

@pytest.mark.slow
def test_rerun_skips_finished_stacks_and_quantifies_the_replaced_one(study):
    before = mtimes(study.out, study.good)
    shutil.copy2(study.intact, study.corrupt)  # the copy is done again, completely
    result = run_cli(*study.command, env=study.env)
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == [] and "Traceback" not in result.stderr
    assert statuses(study.out) == [("mouse0.tif", "skipped"), ("mouse1.tif", "skipped"),
                                   ("mouse2.tif", "finished")]
    for stem in study.good:
        assert f"{stem}.tif: 4 cycles -> {(study.out / stem).resolve()} (done before; skipped)" \
            in result.stdout
    assert "mouse2.tif: 4 cycles -> " in result.stdout
    assert mtimes(study.out, study.good) == before
    assert (study.out / "mouse2" / "quantify.json").is_file()
    summary = read_rows(study.out / "summary.csv")
    assert Counter(row["stack"] for row in summary) == {
        stem: len(ORGANS) * LASERS for stem in ("mouse0", "mouse1", "mouse2")}


@pytest.mark.slow
def test_force_redoes_finished_stacks(study):
    stems = [stack.stem for stack in study.stacks]
    before = mtimes(study.out, stems)
    result = run_cli(*study.command, "--force", env=study.env)
    assert result.returncode == 0, result.stderr
    assert statuses(study.out) == [("mouse0.tif", "finished"), ("mouse1.tif", "finished"),
                                   ("mouse2.tif", "finished")]
    assert "skipped" not in result.stdout
    after = mtimes(study.out, stems)
    assert all(after[stem] != before[stem] for stem in stems), (before, after)


# --- an existing cluster --------------------------------------------------------------------

@pytest.mark.slow
def test_existing_scheduler_quantifies_the_stacks(organ_run, dask_cluster, tmp_path):
    stacks = [small_stack(tmp_path / f"lab{index}.tif", seed=10 + index) for index in range(2)]
    out = tmp_path / "out"
    result = run_cli("quantify", organ_run["run"], *stacks, "--out", out,
                     "--scheduler", dask_cluster.address, env=cli_env(tmp_path / "scratch"))
    assert result.returncode == 0, result.stderr
    assert error_lines(result.stderr) == [] and "Traceback" not in result.stderr
    assert statuses(out) == [("lab0.tif", "finished"), ("lab1.tif", "finished")]
    for stack in stacks:
        assert (out / stack.stem / "quantify.json").is_file()
    # The work went to that scheduler: it saw a client connect.
    assert "Receive client connection" in dask_cluster.scheduler_log.read_text(errors="replace")


@pytest.mark.slow
def test_same_stack_given_twice_is_quantified_once(organ_run, dask_cluster, tmp_path):
    stack = small_stack(tmp_path / "mouse.tif", seed=20)
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "unetlib", "quantify", str(organ_run["run"]), "mouse.tif",
         str(stack), "--out", str(out), "--scheduler", dask_cluster.address],
        capture_output=True, text=True, env=cli_env(tmp_path / "scratch"), cwd=tmp_path,
        timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert [status for _, status in statuses(out)] == ["finished"]
    assert len(read_rows(out / "summary.csv")) == len(ORGANS) * LASERS


def test_unreachable_scheduler_is_one_error_line_naming_it(unreachable_scheduler_run):
    run = unreachable_scheduler_run
    try:
        status = run.process.wait(timeout=120)  # the CLI's own connect timeout is 20 s
    except subprocess.TimeoutExpired:
        pytest.fail(f"quantify --scheduler {run.address} still waits after 120 s")
    stderr = run.stderr.read_text(errors="replace")
    assert status == 2, stderr
    assert "Traceback" not in stderr
    errors = error_lines(stderr)
    assert len(errors) == 1 and run.address in errors[0], stderr
    assert "no Dask scheduler answered" in errors[0]
    written = list(run.out.iterdir()) if run.out.exists() else []
    assert [path.name for path in written if not path.name.startswith(".")] == []


# --- refused before any work ---------------------------------------------------------------

def test_stacks_with_the_same_name_are_refused(organ_run, tmp_path, capsys):
    first = small_stack(tmp_path / "day1" / "mouse.tif", seed=0)
    second = small_stack(tmp_path / "day2" / "mouse.tif", seed=1)
    out = tmp_path / "out"
    status = main(["quantify", str(organ_run["run"]), str(first), str(second), "--out", str(out)])
    assert status == 2
    stderr = capsys.readouterr().err
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr
    assert "would share the folder mouse/" in errors[0]
    assert str(first) in errors[0] and str(second) in errors[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("workers", [0, 99])
def test_workers_out_of_range_are_refused(organ_run, tmp_path, capsys, workers):
    stacks = [small_stack(tmp_path / f"m{index}.tif", seed=index) for index in range(2)]
    out = tmp_path / "out"
    status = main(["quantify", str(organ_run["run"]), *map(str, stacks), "--out", str(out),
                   "--workers", str(workers)])
    assert status == 2
    stderr = capsys.readouterr().err
    errors = error_lines(stderr)
    assert len(errors) == 1, stderr
    assert f"--workers {workers} is invalid" in errors[0]
    assert not out.exists()


# --- the Python API -----------------------------------------------------------------------

@pytest.mark.slow
def test_one_stack_runs_in_process_without_a_cluster(organ_run, tmp_path, monkeypatch):
    from unetlib.study.cluster import quantify_study

    stack = small_stack(tmp_path / "mouse.tif", seed=3)
    # No cluster can be made here: importing dask.distributed fails.
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    result = quantify_study(organ_run["run"], [stack], tmp_path / "out", QuantifyConfig(),
                            progress=False)
    assert [(outcome.stack, outcome.status) for outcome in result.outcomes] == [
        (stack, "finished")]
    assert result.failed == []
    assert result.summary == tmp_path / "out" / "summary.csv" and result.summary.is_file()
    assert result.outcomes[0].result.out_dir == tmp_path / "out" / "mouse"
    assert len(read_rows(result.summary)) == len(ORGANS) * LASERS
    assert statuses(tmp_path / "out") == [("mouse.tif", "finished")]


@pytest.mark.slow
def test_one_worker_quantifies_several_stacks_in_process_and_reports_the_bad_one(
        organ_run, tmp_path, monkeypatch):
    from unetlib.study.cluster import quantify_study

    stacks = [small_stack(tmp_path / f"mouse{index}.tif", seed=index) for index in (4, 5)]
    corrupt = tmp_path / "mouse6.tif"
    corrupt.write_bytes(stacks[0].read_bytes()[:4000])
    # No cluster can be made here: importing dask.distributed fails.
    monkeypatch.setitem(sys.modules, "distributed", None)
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    result = quantify_study(organ_run["run"], [*stacks, corrupt], tmp_path / "out",
                            QuantifyConfig(), workers=1, progress=False)
    assert [(outcome.stack, outcome.status) for outcome in result.outcomes] == [
        (stacks[0], "finished"), (stacks[1], "finished"), (corrupt, "failed")]
    assert str(corrupt) in result.failed[0].message
    assert statuses(tmp_path / "out") == [("mouse4.tif", "finished"), ("mouse5.tif", "finished"),
                                          ("mouse6.tif", "failed")]
    assert len(read_rows(result.summary)) == 2 * len(ORGANS) * LASERS
