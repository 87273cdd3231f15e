"""Peak-memory sampling for benchmarks (Linux /proc): anonymous vs file-backed memory.

Memory-mapped stacks show up in RSS as file-backed pages, which the kernel can drop at
any time; the anonymous part is what a process really holds. Both peaks are reported.
"""

from __future__ import annotations

import resource
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
