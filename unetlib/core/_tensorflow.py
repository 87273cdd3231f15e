"""Import TensorFlow and Keras once, without their start-up chatter.

TensorFlow 2.21 prints a dozen C++ log lines when it loads and when it first probes for a
GPU (oneDNN notice, "Could not find cuda drivers", "failed call to cuInit", CPU feature
hints). They are written before its logging is configured, so ``TF_CPP_MIN_LOG_LEVEL``
cannot silence them, and they end up in every CLI run and every stored notebook output.
This module loads TensorFlow with the process's standard error captured, drops exactly
those known lines and passes every other line on, so real errors stay visible.

It also filters one warning of TensorFlow's logger that every cross-validation would
print (:class:`KerasTracesPerModel`). Modules of this package import ``tf`` and ``keras``
from here.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable

from unetlib.core.runtime import prepare_environment

# Lines TensorFlow prints on every start on a machine with or without a GPU.
_CHATTER = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR"
    r"|[IW]0000 \S+\s+\d+ (port|cudart_stub|cpu_feature_guard|cuda_executor|cuda_platform)\.cc:\d+\]"
    r"|E0000 \S+\s+\d+ cuda_(platform|executor)\.cc:\d+\] failed call to cuInit"
    r"|To enable the following instructions: .* in other operations, rebuild TensorFlow"
    r")")


def filter_chatter(text: str) -> str:
    """Return ``text`` without TensorFlow's known start-up lines (see the module docstring)."""
    return "".join(line for line in text.splitlines(keepends=True) if not _CHATTER.match(line))


def _with_quiet_stderr(load: Callable[[], None]) -> None:
    """Run ``load`` with file descriptor 2 captured; re-emit what is not start-up chatter."""
    try:
        stderr_fd = sys.__stderr__.fileno() if sys.__stderr__ else 2
        saved = os.dup(stderr_fd)
    except (OSError, ValueError):  # no real descriptor (embedded interpreters): just load
        load()
        return
    with tempfile.TemporaryFile(mode="w+b") as capture:
        sys.stderr.flush()
        os.dup2(capture.fileno(), stderr_fd)
        try:
            load()
        finally:
            sys.stderr.flush()
            os.dup2(saved, stderr_fd)
            os.close(saved)
            capture.seek(0)
            remaining = filter_chatter(capture.read().decode("utf-8", "replace"))
            if remaining:
                sys.stderr.write(remaining)


def _load() -> None:

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    # Kernel choices TensorFlow reads only while it loads (oneDNN on AVX2 CPUs).
    prepare_environment()
    import keras  # noqa: F401  (loads the backend inside the capture too)
    import tensorflow

    # The GPU probe (cuInit) happens on first device use; do it here, quietly.
    tensorflow.config.list_physical_devices()


if "tensorflow" not in sys.modules:
    _with_quiet_stderr(_load)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402


class KerasTracesPerModel(logging.Filter):
    """Drop TensorFlow's "triggered tf.function retracing" warning about Keras' own train,
    test and predict functions.

    Each model this package builds or loads (a fold of a cross-validation, a run's best
    checkpoint, a package's weights) traces its Keras functions once. TensorFlow counts the
    traces of all models' functions together, as if one function were retraced in a loop,
    and after five it prints a paragraph of advice into the user's log or notebook. The
    warning about any other function is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message
                    and "TensorFlowTrainer.make_" in message)


tf.get_logger().addFilter(KerasTracesPerModel())

__all__ = ["KerasTracesPerModel", "filter_chatter", "keras", "tf"]
