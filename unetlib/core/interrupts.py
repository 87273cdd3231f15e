"""Ctrl-C that is not lost inside compiled code.

Python raises ``KeyboardInterrupt`` at the next bytecode after SIGINT. When that bytecode
runs inside a callback of compiled code (TensorFlow flattening its inputs, for one), the
extension may turn the exception into another (``SystemError: ... returned a result with an
exception set``), and a Ctrl-C would read as a crash. The CLI installs :func:`install`; code
that turns unexpected errors into results asks :func:`received` first.
"""

from __future__ import annotations

import signal
import sys
import threading

__all__ = ["install", "raise_if_received", "received"]

_state = {"received": False}


def _on_interrupt(signum: int, frame) -> None:
    _state["received"] = True
    signal.default_int_handler(signum, frame)  # raises KeyboardInterrupt, as usual


def install() -> None:
    """Remember every Ctrl-C from now on (main thread, default handler only); forget earlier
    ones.

    Examples
    --------
    >>> import os, signal
    >>> install()
    >>> received()
    False
    >>> try:
    ...     os.kill(os.getpid(), signal.SIGINT)
    ... except KeyboardInterrupt:
    ...     pass
    >>> received()
    True
    >>> install(); received()
    False
    """
    _state["received"] = False
    if not getattr(sys.unraisablehook, "quiet_after_interrupt", False):
        sys.unraisablehook = _quiet_after_interrupt(sys.unraisablehook)
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGINT) in (signal.default_int_handler, _on_interrupt):
        signal.signal(signal.SIGINT, _on_interrupt)


def raise_if_received() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C arrived since :func:`install`: one whose own
    exception was swallowed must still stop the work, not let it finish as if none came.

    Examples
    --------
    >>> import os, signal
    >>> install()
    >>> raise_if_received()  # no Ctrl-C yet: nothing happens
    >>> try:
    ...     os.kill(os.getpid(), signal.SIGINT)
    ... except KeyboardInterrupt:
    ...     pass  # swallowed, as compiled code might
    >>> try:
    ...     raise_if_received()
    ... except KeyboardInterrupt:
    ...     print("stopped")
    stopped
    >>> install()
    """
    if _state["received"]:
        raise KeyboardInterrupt


def _quiet_after_interrupt(hook):
    """The unraisable-exception hook, silent once Ctrl-C arrived: compiled code that swallowed
    the interrupt reports it there as a traceback the user must not see."""
    def quiet(report) -> None:
        if not _state["received"]:
            hook(report)

    quiet.quiet_after_interrupt = True
    return quiet


def received() -> bool:
    """Whether Ctrl-C arrived since :func:`install`."""
    return _state["received"]
