"""What CPU this is, and the TensorFlow settings chosen for it at start-up.

TensorFlow decides whether to use oneDNN's kernels by itself, and on x86 CPUs without
AVX-512 it leaves them off. Measured on a 2-core AMD EPYC with AVX2 only:
oneDNN on made the default network's training 24 % faster and prediction 33 % faster
(the classic network's training 18 % slower; the default network is what we ship). So
on any x86-64 CPU with AVX2, unetlib turns oneDNN on unless the user already chose with
``TF_ENABLE_ONEDNN_OPTS``; on CPUs with AVX-512 that is TensorFlow's own default
anyway. The choice has to be made before TensorFlow loads:
:mod:`unetlib.core._tensorflow` calls :func:`prepare_environment` first.

:func:`~unetlib.core.runtime_report.runtime_record` says what was chosen and why, with the CPU's model and the flags
that matter; training stores it in the run folder's ``config.json`` and every benchmark
prints it, so a figure always names the machine it came from.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CHOICE", "CpuInfo", "choose_onednn", "cpu_info", "describe_cpu",
           "prepare_environment"]

# The instruction-set flags that decide which kernels run fast.
FLAGS_THAT_MATTER = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "avx512_vnni",
                     "avx_vnni", "amx_bf16", "amx_tile", "asimd", "sve")
ONEDNN_VARIABLE = "TF_ENABLE_ONEDNN_OPTS"
# What prepare_environment decided, for runtime_report (set once per process).
CHOICE: dict[str, Any] = {}


@dataclass(frozen=True)
class CpuInfo:
    """The processor as the operating system reports it.

    Attributes
    ----------
    model : str
        Model name (``/proc/cpuinfo``'s "model name", or the platform's processor string).
    machine : str
        Architecture (``x86_64``, ``aarch64`` ...).
    cores : int
        Logical CPUs this process may use.
    flags : tuple of str
        Those of :data:`FLAGS_THAT_MATTER` the CPU has.
    """

    model: str
    machine: str
    cores: int
    flags: tuple[str, ...]

    def has(self, flag: str) -> bool:
        return flag in self.flags


def cpu_info(cpuinfo: str | None = None) -> CpuInfo:
    """Read the CPU's model and instruction-set flags (``/proc/cpuinfo`` on Linux).

    Parameters
    ----------
    cpuinfo : str, optional
        The text of a ``/proc/cpuinfo`` to parse instead of this machine's.
    """
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.is_file() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key and key not in fields:
            fields[key] = value.strip()
    present = set((fields.get("flags") or fields.get("features") or "").split())
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return CpuInfo(model=fields.get("model name") or platform.processor() or "unknown",
                   machine=platform.machine(), cores=cores,
                   flags=tuple(flag for flag in FLAGS_THAT_MATTER if flag in present))


def choose_onednn(cpu: CpuInfo, environ: MutableMapping[str, str]) -> tuple[bool | None, str]:
    """Whether oneDNN should be on, and why.

    Returns
    -------
    (bool or None, str)
        ``None`` leaves TensorFlow's default (the user chose, or not an AVX2 x86 CPU).
    """
    if ONEDNN_VARIABLE in environ:
        return None, f"{ONEDNN_VARIABLE}={environ[ONEDNN_VARIABLE]} set by the user"
    if cpu.machine.lower() in ("x86_64", "amd64") and cpu.has("avx2"):
        if cpu.has("avx512f"):
            return True, "AVX-512 CPU: oneDNN on (TensorFlow's default there too)"
        return True, ("AVX2 CPU without AVX-512: oneDNN on (TensorFlow would leave it off; "
                      "measured +24 % training and +33 % prediction speed)")
    return None, "no AVX2 x86-64 CPU: TensorFlow's default"


def prepare_environment(environ: MutableMapping[str, str] | None = None,
                        cpu: CpuInfo | None = None) -> dict[str, Any]:
    """Set the environment TensorFlow reads when it loads; call before importing it.

    Only ever sets a variable the user has not set. Returns (and remembers for
    :func:`unetlib.core.runtime_report.runtime_record`) the choice and its reason.
    """
    environ = os.environ if environ is None else environ
    cpu = cpu or cpu_info()
    onednn, reason = choose_onednn(cpu, environ)
    if onednn is not None:
        environ[ONEDNN_VARIABLE] = "1" if onednn else "0"
    choice = {"onednn": environ.get(ONEDNN_VARIABLE, "TensorFlow default"),
              "onednn_reason": reason}
    if environ is os.environ:
        CHOICE.update(choice)
    return choice


def describe_cpu(cpu: CpuInfo | None = None) -> str:
    """One line naming the CPU: ``AMD EPYC (x86_64, 2 cores; avx2 fma avx512f ...)``."""
    cpu = cpu or cpu_info()
    return f"{cpu.model} ({cpu.machine}, {cpu.cores} cores; {' '.join(cpu.flags) or 'no SIMD flags'})"
