"""A granian worker stops on the first stop signal, whatever else arrives.

A worker of ``keystile serve`` often gets two: Ctrl-C in a terminal sends SIGINT to the whole process group, and a
service manager that stops a control group sends SIGTERM to every process in it, while granian's main process,
stopping too, sends the worker SIGTERM. granian (2.8) hands each one to the worker's stop event, whose ``set``
blocks, holding the interpreter lock, when a stop is already pending and not yet taken; the thread that would take
it waits for that lock, and the worker hangs for good (seen in 2 of 16 stops of a server with the event writer
process: bench/group_stop.sh). :func:`stop_on_first_signal` makes the worker's handler pass on the first signal
only.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import sys
from typing import Any

_PATCHED = "_keystile_first_signal_only"


def stop_on_first_signal() -> None:
    """In a process granian runs, have the event loop's SIGINT and SIGTERM handlers that granian installs in its
    workers set the stop event once. Does nothing under another server (granian not loaded), or if granian's
    internals changed shape."""
    if "granian" not in sys.modules:
        return
    try:
        signals: Any = importlib.import_module("granian._signals")
    except ImportError:
        return
    installed = getattr(signals, "set_loop_signals", None)
    if installed is None or getattr(installed, _PATCHED, False):
        return

    def set_loop_signals(loop: asyncio.AbstractEventLoop) -> Any:
        stop = installed(loop)
        stopping = False

        def first(*_: object) -> None:
            nonlocal stopping
            if not stopping:
                stopping = True
                stop.set()

        with contextlib.suppress(NotImplementedError):  # granian then used signal.signal: left as it is
            for number in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(number, first)
        return stop

    setattr(set_loop_signals, _PATCHED, True)
    signals.set_loop_signals = set_loop_signals


__all__ = ["stop_on_first_signal"]
