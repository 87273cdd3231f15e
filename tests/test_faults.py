"""Faults a real run meets, tested through the real CLI in child processes.

Each test starts ``python -m unetlib COMMAND`` as a user would (``[sys.executable, "-m",
"unetlib", ...]``, ``TF_CPP_MIN_LOG_LEVEL=2``) and then does to it what the outside world
does to long jobs:

- kills it (``SIGKILL``) or interrupts it (``SIGINT``, Ctrl-C) half-way through a split
  or a training, then runs it again (``--resume`` for a training);
- starts a second writer on a folder another process is writing;
- fills the disk (a small ``tmpfs``) before or during the work;
- runs it into a read-only folder, or (in this process) under another umask.

Where a failure is expected, the checks are those of every expected failure: a non-zero
exit status, exactly one ``error:`` line on stderr, no ``Traceback``, and no file that
existed before the run changed (sha256 before and after). The follow-up run must clean up
what the fault left (``.staging`` folders, ``.part`` files, a stale lock) and finish.

The disk-full and read-only cases mount a ``tmpfs``: they need root and are skipped, with
the reason, where mounting is not possible. Child processes are always killed and
mounts always unmounted, whatever the outcome.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import run_main, write_data_folder

from unetlib.core.config import SyntheticConfig
from unetlib.data.synthetic import write_synthetic_stack

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
LOCK_NAME = ".unetlib.lock"
POLL_SECONDS = 0.01
WAIT_SECONDS = 120  # upper bound for one child to finish or reach a point; never reached
LEFTOVER = re.compile(r"\.staging$|\.part(\.[^.]+)?$")

# The slow stack: 60 cycles x 4 lasers of 256 x 320 (40 MB). Splitting it writes 420 files
# (about 100 MB) and takes a few seconds with one writer thread.
BIG_CYCLES, BIG_HEIGHT, BIG_WIDTH = 60, 256, 320
BIG_COUNTS = {"laser1": 60, "laser2": 60, "laser3": 60, "laser4": 60, "channels3": 120,
              "channels4": 60}

# A tiny training: the small network on 4 frames of 48 x 64; about 5 s of start-up and
# graph tracing for the first epoch, then a fraction of a second per epoch.
TRAIN_ARGS = ("--preset", "small", "--steps-per-epoch", "3", "--batch-size", "2",
              "--patch-size", "32", "--val-fraction", "0.25")


# --- helpers ------------------------------------------------------------------------------

def _child_setup() -> None:
    """In the child before it starts: Ctrl-C handled as in a terminal.

    A test run started in the background by a non-interactive shell (``make test &``)
    inherits SIGINT ignored, and a Python started with SIGINT ignored never raises
    KeyboardInterrupt: the interruption tests would then test nothing.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Child:
    """``python -m unetlib ARGS`` started in the background, its output going to files
    (a pipe nobody reads would block it once a progress bar filled the pipe)."""

    def __init__(self, logs: Path, *args: str):
        logs.mkdir(parents=True, exist_ok=True)
        number = len(list(logs.glob("*.out")))
        self.stdout_path = logs / f"{number}.out"
        self.stderr_path = logs / f"{number}.err"
        self.args = args
        with open(self.stdout_path, "wb") as stdout, open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "unetlib", *args], stdout=stdout, stderr=stderr,
                stdin=subprocess.DEVNULL, env=ENV, preexec_fn=_child_setup)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def finish(self, timeout: float = WAIT_SECONDS) -> int:
        """Wait for the exit status (the child is killed if it takes longer than timeout)."""
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"{self.args} did not finish in {timeout} s; stderr:\n{self.stderr}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def wait_until(self, condition, what: str, timeout: float = WAIT_SECONDS) -> None:
        """Poll ``condition()`` until true; fail if the child exits first or time runs out."""
        deadline = time.monotonic() + timeout
        while not condition():
            if self.process.poll() is not None:
                pytest.fail(f"{self.args} exited ({self.process.returncode}) before {what}; "
                            f"stderr:\n{self.stderr}")
            if time.monotonic() > deadline:
                pytest.fail(f"{what} did not happen within {timeout} s; stderr:\n{self.stderr}")
            time.sleep(POLL_SECONDS)


def kill_all(children: list[Child]) -> None:
    for child in children:
        child.kill()  # SIGKILL also ends a stopped (SIGSTOP) child


@pytest.fixture
def children():
    """The CLI children a test started; any still running is killed when the test ends."""
    started: list[Child] = []
    yield started
    kill_all(started)


@pytest.fixture
def start(tmp_path, children):
    """Start a CLI child in the background (``start(*args) -> Child``)."""

    def start_child(*args: str) -> Child:
        child = Child(tmp_path / "logs", *map(str, args))
        children.append(child)
        return child

    return start_child


def run(start, *args: str) -> Child:
    """Run a CLI child to its end."""
    child = start(*args)
    child.finish()
    return child


def error_lines(stderr: str) -> list[str]:
    """The lines of stderr (progress bars rewrite theirs with carriage returns) that
    start with ``error:``."""
    return [line for line in re.split(r"[\r\n]", stderr) if line.startswith("error:")]


def assert_one_error(child: Child, *needles: str) -> str:
    """Exactly one ``error:`` line (containing every needle), no traceback; return it."""
    stderr = child.stderr
    assert "Traceback" not in stderr and "Traceback" not in child.stdout, stderr
    lines = error_lines(stderr)
    assert len(lines) == 1 and stderr.count("error:") == 1, stderr
    for needle in needles:
        assert needle in lines[0], stderr
    return lines[0]


def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (what must not change)."""
    digests = {}
    for root in roots:
        paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in paths:
            digests[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


def leftovers(root: Path) -> list[Path]:
    """Staging folders and ``.part`` files anywhere under ``root``."""
    if not root.exists():
        return []
    return sorted(path for path in root.rglob("*") if LEFTOVER.search(path.name))


def stagings(out: Path) -> list[Path]:
    return sorted(out.glob(".*.staging")) if out.is_dir() else []


def staged_files(out: Path) -> int:
    """How many frames (finished or being written) the staging folders in ``out`` hold."""
    return sum(1 for staging in stagings(out) for path in staging.rglob("*")
               if path.is_file() and path.suffix in (".png", ".tif"))


def lock_holder_is(folder: Path, pid: int) -> bool:
    try:
        return f"pid={pid}\n" in (folder / LOCK_NAME).read_text()
    except OSError:
        return False


def history_epochs(run_dir: Path) -> list[int]:
    with open(run_dir / "history.csv", newline="") as handle:
        return [int(float(row["epoch"])) for row in csv.DictReader(handle)]


def epochs_completed(run_dir: Path) -> int:
    return int(json.loads((run_dir / "state.json").read_text())["epochs_completed"])


def assert_complete_split(out: Path) -> None:
    assert (out / "manifest.csv").is_file() and (out / "split.json").is_file()
    counts = {name: len(list((out / name).iterdir())) for name in BIG_COUNTS}
    assert counts == BIG_COUNTS
    with open(out / "manifest.csv", newline="") as handle:
        assert len(list(csv.DictReader(handle))) == sum(BIG_COUNTS.values())
    assert leftovers(out) == []
    assert not (out / LOCK_NAME).exists()


# --- shared inputs ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def big_stack(tmp_path_factory) -> Path:
    stack, _ = write_synthetic_stack(
        tmp_path_factory.mktemp("big") / "stack.tif",
        SyntheticConfig(cycles=BIG_CYCLES, height=BIG_HEIGHT, width=BIG_WIDTH))
    return stack


@pytest.fixture(scope="module")
def tiny_stack(tmp_path_factory) -> Path:
    stack, _ = write_synthetic_stack(tmp_path_factory.mktemp("tiny") / "stack.tif",
                                     SyntheticConfig(cycles=5, height=48, width=64))
    return stack


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> Path:
    return write_data_folder(tmp_path_factory.mktemp("data") / "data1d")


# --- tmpfs mounts -------------------------------------------------------------------------

@pytest.fixture
def mount_tmpfs(children, tmp_path):
    """Mount a tmpfs with the given options on a new folder; skip where that is impossible.

    At teardown, every child (which may still be using a mount) is killed first, then the
    mounts are unmounted.
    """
    mounts: list[Path] = []

    def mount(name: str, options: str) -> Path:
        if os.geteuid() != 0:
            pytest.skip("mounting a tmpfs needs root")
        folder = tmp_path / name
        folder.mkdir()
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs ({options}): "
                        f"{(result.stderr or result.stdout).strip()}")
        mounts.append(folder)
        return folder

    yield mount
    kill_all(children)
    for folder in reversed(mounts):
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, name: str = "filler") -> int:
    """Append to ``folder/name`` until the file system is full; return the bytes written."""
    written = 0
    with open(folder / name, "ab", buffering=0) as handle:
        for chunk in (1 << 20, 1 << 16, 1 << 12):
            block = b"\0" * chunk
            while True:
                try:
                    written += handle.write(block)
                except OSError:
                    break
    return written


# --- 1, 2: killed and interrupted splits --------------------------------------------------

@pytest.mark.slow
def test_split_killed_mid_export_leaves_staging_that_the_next_run_removes(big_stack, tmp_path,
                                                                           start):
    out = tmp_path / "split"
    before = snapshot(big_stack)
    split = start("split-stack", big_stack, "--out", out, "--workers", "1")
    split.wait_until(lambda: staged_files(out) >= 1, "frames written into a staging folder")
    split.signal(signal.SIGKILL)
    assert split.finish() == -signal.SIGKILL
    assert stagings(out), "the kill came too late: no staging folder was left behind"
    assert not (out / "manifest.csv").exists()
    assert (out / LOCK_NAME).exists()

    again = run(start, "split-stack", big_stack, "--out", out, "--workers", "1")
    assert again.process.returncode == 0, again.stderr
    assert "interrupted" in again.stderr and "leftover" in again.stderr
    assert "Traceback" not in again.stderr and error_lines(again.stderr) == []
    assert_complete_split(out)
    assert snapshot(big_stack) == before


@pytest.mark.slow
def test_split_interrupted_mid_export_cleans_up_and_exits_130(big_stack, tmp_path, start):
    out = tmp_path / "split"
    before = snapshot(big_stack)
    split = start("split-stack", big_stack, "--out", out, "--workers", "1")
    # Past the first few files: a Ctrl-C in the very first milliseconds of the export, while
    # the writer thread still imports Pillow's plugins, can hang the process (reported
    # separately; this test checks the clean-up of an interrupted export).
    split.wait_until(lambda: staged_files(out) >= 10, "frames written into a staging folder")
    split.signal(signal.SIGINT)
    assert split.finish(timeout=30) == 130, split.stderr
    assert_one_error(split, "interrupted")
    assert stagings(out) == [] and leftovers(out) == []
    assert not (out / "manifest.csv").exists()
    assert not (out / LOCK_NAME).exists()
    assert snapshot(big_stack) == before

    again = run(start, "split-stack", big_stack, "--out", out, "--workers", "1")
    assert again.process.returncode == 0, again.stderr
    assert "Traceback" not in again.stderr and error_lines(again.stderr) == []
    assert_complete_split(out)
    assert snapshot(big_stack) == before


# --- 3, 4: interrupted and killed trainings, then --resume --------------------------------

# Enough epochs that the signal lands mid-training: an epoch of this tiny network takes a
# fraction of a second.
RESUME_EPOCHS = "12"


def train_until_an_epoch_ends(start, data_dir, run_dir):
    """Start a training of RESUME_EPOCHS epochs; return its command and process once the
    first epoch is on disk (state.json), so an interruption has something to keep."""
    command = ("train", data_dir, "--out", run_dir, "--epochs", RESUME_EPOCHS, *TRAIN_ARGS)
    first = start(*command)
    first.wait_until(lambda: (run_dir / "state.json").is_file(), "the first epoch ended")
    return command, first


def assert_finished_cleanly(resumed, run_dir):
    """A resumed training ran to its last epoch: exit 0, no error, every epoch once in
    history.csv, metrics.json written, no leftovers and no lock left behind."""
    assert resumed.process.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr and error_lines(resumed.stderr) == []
    assert history_epochs(run_dir) == list(range(1, int(RESUME_EPOCHS) + 1))
    assert (run_dir / "metrics.json").is_file()
    assert leftovers(run_dir) == [] and not (run_dir / LOCK_NAME).exists()


@pytest.mark.slow
def test_train_interrupted_after_an_epoch_then_resumed(data_dir, tmp_path, start):
    run_dir = tmp_path / "run"
    before = snapshot(data_dir)
    command, first = train_until_an_epoch_ends(start, data_dir, run_dir)
    first.signal(signal.SIGINT)
    assert first.finish(timeout=60) == 130, first.stderr
    line = assert_one_error(first, "--resume", str(run_dir))
    assert "interrupted after" in line
    done = epochs_completed(run_dir)
    assert 1 <= done < int(RESUME_EPOCHS)
    assert not (run_dir / "metrics.json").exists()
    assert leftovers(run_dir) == [] and not (run_dir / LOCK_NAME).exists()

    resumed = run(start, *command, "--resume")
    assert_finished_cleanly(resumed, run_dir)
    assert f"trained {RESUME_EPOCHS} epoch(s)" in resumed.stdout
    assert snapshot(data_dir) == before


@pytest.mark.slow
def test_train_killed_then_resumed_takes_over_the_stale_lock(data_dir, tmp_path, start):
    run_dir = tmp_path / "run"
    before = snapshot(data_dir)
    command, first = train_until_an_epoch_ends(start, data_dir, run_dir)
    first.signal(signal.SIGKILL)
    assert first.finish() == -signal.SIGKILL
    assert lock_holder_is(run_dir, first.pid), "the killed run should leave its lock file"
    assert not (run_dir / "metrics.json").exists()

    resumed = run(start, *command, "--resume")
    assert_finished_cleanly(resumed, run_dir)
    assert re.search(rf"taking over the lock of process {first.pid}\b.*no longer running",
                     resumed.stderr), resumed.stderr
    assert snapshot(data_dir) == before


# --- 5: two writers -----------------------------------------------------------------------

@pytest.mark.slow
def test_second_training_into_a_busy_run_folder_is_refused(data_dir, tmp_path, start):
    run_dir = tmp_path / "run"
    before = snapshot(data_dir)
    first = start("-q", "train", data_dir, "--out", run_dir, "--epochs", "200", *TRAIN_ARGS)
    first.wait_until(lambda: lock_holder_is(run_dir, first.pid), "the first run took its lock")
    # Stopped, it holds the lock as long as needed and leaves the two cores to the others.
    first.signal(signal.SIGSTOP)
    try:
        in_run = snapshot(run_dir)
        forced = start("-q", "train", data_dir, "--out", run_dir, "--epochs", "2", "--force",
                       *TRAIN_ARGS)
        resumed = start("-q", "train", data_dir, "--out", run_dir, "--epochs", "2", "--resume",
                        *TRAIN_ARGS)
        for second in (forced, resumed):
            assert second.finish() == 2, second.stderr
            assert_one_error(second, f"in use by process {first.pid}", str(run_dir))
        assert snapshot(run_dir) == in_run
        assert lock_holder_is(run_dir, first.pid)
    finally:
        first.signal(signal.SIGCONT)
        first.kill()
    assert snapshot(data_dir) == before


def test_second_split_into_a_busy_folder_is_refused(big_stack, tiny_stack, tmp_path, start):
    out = tmp_path / "split"
    before = snapshot(big_stack, tiny_stack)
    first = start("split-stack", big_stack, "--out", out, "--workers", "1")
    first.wait_until(lambda: lock_holder_is(out, first.pid), "the first split took its lock")
    first.signal(signal.SIGSTOP)
    try:
        in_out = snapshot(out)
        second = run(start, "split-stack", tiny_stack, "--out", out, "--force")
        assert second.process.returncode == 2, second.stderr
        assert_one_error(second, f"in use by process {first.pid}", str(out))
        assert snapshot(out) == in_out
        assert lock_holder_is(out, first.pid)
    finally:
        first.signal(signal.SIGCONT)
        first.kill()
    assert snapshot(big_stack, tiny_stack) == before


# --- 6: disk full -------------------------------------------------------------------------

def test_split_onto_a_full_disk_fails_cleanly(big_stack, tmp_path, start, mount_tmpfs):
    disk = mount_tmpfs("disk", "size=3M")
    out = disk / "out"
    before = snapshot(big_stack)
    split = run(start, "split-stack", big_stack, "--out", out, "--workers", "1")
    assert split.process.returncode == 2, split.stderr
    line = assert_one_error(split, "No space left on device")
    assert str(disk) in line
    assert [path.name for path in disk.rglob("*")] in ([], ["out"])
    assert not (out.exists() and any(out.iterdir()))
    assert snapshot(big_stack) == before


@pytest.mark.slow
def test_train_that_fills_the_disk_keeps_its_last_epoch_and_resumes(data_dir, tmp_path, start,
                                                                     mount_tmpfs):
    disk = mount_tmpfs("disk", "size=16M")
    run_dir = disk / "run"
    before = snapshot(data_dir)
    command = ("train", data_dir, "--out", run_dir, "--epochs", RESUME_EPOCHS, *TRAIN_ARGS)
    first = start(*command)
    first.wait_until(lambda: (run_dir / "state.json").is_file(), "the first epoch ended")
    # Keep the disk full until the run stops: a checkpoint replacing an older one frees
    # the older one's space, which the next checkpoint could otherwise reuse.
    deadline = time.monotonic() + WAIT_SECONDS
    while first.process.poll() is None and time.monotonic() < deadline:
        fill(disk)
        time.sleep(POLL_SECONDS)
    assert first.finish() == 2, first.stderr
    line = assert_one_error(first, "--resume")
    assert "No space left on device" in line or "cannot be written" in line, line
    assert leftovers(run_dir) == []
    assert not (run_dir / LOCK_NAME).exists()
    assert not (run_dir / "metrics.json").exists()

    from unetlib.core._tensorflow import keras

    # The epochs finished before the disk filled are kept: recorded in state.json, and
    # both checkpoints load (loading a half-written one raises).
    done = epochs_completed(run_dir)
    assert 1 <= done < int(RESUME_EPOCHS)
    for checkpoint in ("model.keras", "last.keras"):
        keras.saving.load_model(run_dir / checkpoint, compile=False)

    (disk / "filler").unlink()
    resumed = run(start, *command, "--resume")
    assert resumed.process.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr and error_lines(resumed.stderr) == []
    assert history_epochs(run_dir) == list(range(1, int(RESUME_EPOCHS) + 1))
    assert (run_dir / "metrics.json").is_file()
    assert leftovers(run_dir) == [] and not (run_dir / LOCK_NAME).exists()
    assert snapshot(data_dir) == before


# --- 7: permissions follow the umask ------------------------------------------------------

def modes(root: Path) -> tuple[set[int], set[int]]:
    """The permission bits of the files and of the folders under ``root`` (itself included)."""
    paths = [root, *root.rglob("*")]
    files = {path.stat().st_mode & 0o7777 for path in paths if path.is_file()}
    folders = {path.stat().st_mode & 0o7777 for path in paths if path.is_dir()}
    return files, folders


@pytest.mark.parametrize("umask, file_mode, folder_mode", [(0o022, 0o644, 0o755),
                                                           (0o077, 0o600, 0o700)],
                         ids=["umask022", "umask077"])
@pytest.mark.slow
def test_outputs_follow_the_umask(umask, file_mode, folder_mode, tiny_stack, data_dir, tmp_path,
                                  capsys):
    # In this test process (the umask is the process's, whoever starts it): three child
    # processes would only add the 4-5 s of CPU each spends loading TensorFlow.
    split_dir, pick_dir, run_dir = tmp_path / "split", tmp_path / "data1d", tmp_path / "run"
    commands = {
        split_dir: ("-q", "split-stack", tiny_stack, "--out", split_dir),
        pick_dir: ("-q", "pick-frames", tiny_stack, "--count", "3", "--out", pick_dir),
        run_dir: ("-q", "train", data_dir, "--out", run_dir, "--epochs", "1", *TRAIN_ARGS),
    }
    before = snapshot(tiny_stack, data_dir)
    for out, command in commands.items():
        saved = os.umask(umask)
        try:
            outcome = run_main(capsys, *command)
        finally:
            os.umask(saved)
        assert outcome.returncode == 0, outcome.stderr
        assert error_lines(outcome.stderr) == [] and "Traceback" not in outcome.stderr
        files, folders = modes(out)
        assert files == {file_mode}, (out, sorted(map(oct, files)))
        assert folders == {folder_mode}, (out, sorted(map(oct, folders)))
        assert not any(path.name == LOCK_NAME for path in out.rglob("*")), out
        assert leftovers(out) == [], out
    assert (run_dir / "model.keras").is_file() and (pick_dir / "train" / "frames.csv").is_file()
    assert snapshot(tiny_stack, data_dir) == before


# --- 8: an output folder that cannot be written -------------------------------------------

@pytest.mark.parametrize("where", ["inside", "itself"])
def test_split_into_a_read_only_folder_fails_before_exporting(where, tiny_stack, tmp_path,
                                                              start, mount_tmpfs):
    read_only = mount_tmpfs("ro", "ro")
    out = read_only / "out" if where == "inside" else read_only
    before = snapshot(tiny_stack)
    split = run(start, "split-stack", tiny_stack, "--out", out)
    assert split.process.returncode == 2, split.stderr
    assert_one_error(split, str(out))
    assert "file/s" not in split.stderr and "%|" not in split.stderr, split.stderr
    assert list(read_only.iterdir()) == []
    assert snapshot(tiny_stack) == before
