"""What the machine and TensorFlow are running with, for runs and benchmarks to record.

Every figure this project reports names its CPU: :func:`runtime_record` is stored in a
run's ``config.json``, :func:`runtime_line` heads each benchmark's output.
"""

from __future__ import annotations

import os
from typing import Any

from unetlib.core._tensorflow import tf
from unetlib.core.runtime import CHOICE, ONEDNN_VARIABLE, cpu_info, describe_cpu

__all__ = ["runtime_line", "runtime_record"]


def runtime_record() -> dict[str, Any]:
    """The CPU and the TensorFlow settings in force: stored with runs and benchmarks."""
    cpu = cpu_info()
    threading = tf.config.threading
    return {"cpu": describe_cpu(cpu), "cpu_model": cpu.model, "machine": cpu.machine,
            "cores": cpu.cores, "flags": list(cpu.flags),
            # As TensorFlow saw it when it loaded (the environment may change since).
            "onednn": CHOICE.get("onednn", os.environ.get(ONEDNN_VARIABLE, "TensorFlow default")),
            "onednn_reason": CHOICE.get("onednn_reason", "set before unetlib loaded TensorFlow"),
            # oneDNN's own cap on the instructions it uses (a benchmark can emulate AVX2).
            "onednn_max_isa": os.environ.get("ONEDNN_MAX_CPU_ISA", "all the CPU has"),
            "intra_op_threads": threading.get_intra_op_parallelism_threads() or "TensorFlow default",
            "inter_op_threads": threading.get_inter_op_parallelism_threads() or "TensorFlow default",
            "tensorflow": tf.__version__}


def runtime_line() -> str:
    """One line for reports: the CPU, oneDNN and TensorFlow's version."""
    record = runtime_record()
    capped = ("" if "ONEDNN_MAX_CPU_ISA" not in os.environ
              else f", kernels capped at {record['onednn_max_isa']}")
    return (f"machine: {record['cpu']}; oneDNN {record['onednn']} ({record['onednn_reason']}"
            f"{capped}); TensorFlow {record['tensorflow']}")
