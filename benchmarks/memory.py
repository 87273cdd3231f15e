"""Peak-memory sampling for benchmarks (Linux /proc): anonymous vs file-backed memory, of
this process or of its children (cluster workers), and benchmark parts run in a fresh process.

Memory-mapped stacks show up in RSS as file-backed pages, which the kernel can drop at
any time; the anonymous part is what a process really holds. Both peaks are reported.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import threading
from pathlib import Path


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


class PeakMemory:
    """Context manager sampling RssAnon every ``interval`` seconds; reports peaks in MiB."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak_anon_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_anon_kib = max(self.peak_anon_kib, _status_kib("RssAnon"))
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_anon_kib = max(self.peak_anon_kib, _status_kib("RssAnon"))

    @property
    def peak_anon_mib(self) -> float:
        return self.peak_anon_kib / 1024

    @staticmethod
    def peak_rss_mib() -> float:
        """Peak resident set size of this process (anonymous + file-backed), MiB."""
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class PeakWorkerMemory:
    """Context manager sampling the resident memory of this process's children (cluster
    workers) every ``interval`` seconds; ``peak_mib`` is the largest one seen, including the
    pages of memory-mapped stacks."""

    def __init__(self, interval: float = 0.2) -> None:
        self.interval = interval
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for process in me.children(recursive=True):
                try:
                    self.peak_bytes = max(self.peak_bytes, process.memory_info().rss)
                except psutil.Error:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakWorkerMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self) -> float:
        return self.peak_bytes / 2**20


def run_child(script: str, *args: str) -> dict:
    """Run ``script`` with ``args`` in a fresh Python (its memory its own) and return the
    JSON object its last line prints; exit with its error output when it fails."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    completed = subprocess.run([sys.executable, script, *args], capture_output=True,
                               text=True, env=env)
    if completed.returncode:
        sys.exit(f"benchmark child failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
