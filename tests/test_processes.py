"""tests/processes.py: a process a test started is stopped even when it will not stop by itself."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
from typing import Any

from tests.processes import stop_process

IGNORE_SIGINT = "import signal, subprocess, sys, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
SLEEPER = IGNORE_SIGINT + "print('ready', flush=True)\ntime.sleep(600)\n"
# A process that ignores SIGINT, with a child that ignores it too and shares its stdout.
PARENT = IGNORE_SIGINT + f"subprocess.Popen([sys.executable, '-c', {SLEEPER!r}]).wait()\n"


def _start(code: str, **options: Any) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, **options)


def _ready(process: subprocess.Popen[str]) -> None:
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"  # its signal handler is in place


def test_a_process_that_ignores_the_signal_is_killed_after_the_timeout() -> None:
    with _start(SLEEPER) as process:
        _ready(process)

        code = stop_process(process, signal.SIGINT, timeout=0.5)

        assert code == -signal.SIGKILL
        assert process.poll() == code


def test_a_paused_process_is_stopped_by_the_signal() -> None:
    with _start(SLEEPER) as process:
        _ready(process)
        process.send_signal(signal.SIGSTOP)

        assert stop_process(process, signal.SIGTERM) == -signal.SIGTERM


def test_a_process_group_of_its_own_is_killed_whole() -> None:
    with _start(PARENT, start_new_session=True) as process:
        _ready(process)

        assert stop_process(process, signal.SIGINT, timeout=0.5) == -signal.SIGKILL
        # The child died with the group: nothing holds the pipe open any more, so it ends (select: a child that
        # lived on would hold it open, and the test fails instead of hanging).
        assert process.stdout is not None
        readable, _, _ = select.select([process.stdout], [], [], 10)
        assert readable
        assert process.stdout.read() == ""
