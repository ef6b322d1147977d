"""Stopping the processes that tests start, whatever happened in the test: asked first, then killed."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any

STOP_TIMEOUT_S = 10.0


def stop_process(
    process: subprocess.Popen[Any], sig: signal.Signals = signal.SIGTERM, timeout: float = STOP_TIMEOUT_S
) -> int:
    """Send ``sig`` to a process that still runs (and SIGCONT, in case a test paused it), wait up to ``timeout``
    seconds for it to exit, then kill it (with its process group when it leads one of its own) and reap it.

    Returns its exit code. Never raises for a process that does not stop, so that a teardown always ends.
    """
    if process.poll() is None:
        try:
            process.send_signal(sig)
            process.send_signal(signal.SIGCONT)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill(process)
    return process.returncode


def _kill(process: subprocess.Popen[Any]) -> None:
    try:
        if os.getpgid(process.pid) == process.pid:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except ProcessLookupError:
        pass  # it exited meanwhile
    process.wait()
