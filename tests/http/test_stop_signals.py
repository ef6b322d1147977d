"""A granian worker's stop signals (keystile.http.stop_signals): the handlers granian installs in a worker's event
loop, fed SIGINT and then SIGTERM as a terminal's Ctrl-C and granian's main process send them, in a process of
their own (a hang must not take the test run with it)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

WORKER = textwrap.dedent(
    """
    import asyncio, os, signal, sys

    import granian  # what a worker has loaded when it calls the app factory
    import uvloop

    if sys.argv[1] == "first-only":
        from keystile.http.stop_signals import stop_on_first_signal

        stop_on_first_signal()
        stop_on_first_signal()  # once is enough: a second call changes nothing
    from granian._signals import set_loop_signals

    loop = uvloop.new_event_loop()
    stop = set_loop_signals(loop)

    async def signalled():
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGTERM):
            os.kill(os.getpid(), number)
            await asyncio.sleep(0.05)

    loop.run_until_complete(signalled())
    print("handled", flush=True)
    """
)


def run_worker(mode: str, timeout_s: float) -> str | None:
    """What the worker printed, or None when it hung (it is then killed)."""
    with subprocess.Popen(
        [sys.executable, "-c", WORKER, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            out, err = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            return None
        assert process.returncode == 0, err
        return out


def test_a_worker_handles_every_stop_signal_after_the_first_without_hanging() -> None:
    assert run_worker("first-only", timeout_s=60) == "handled\n"


def test_granians_own_handlers_hang_on_a_second_signal() -> None:
    # Why stop_on_first_signal exists. When a granian release stops hanging here, it is no longer needed.
    assert run_worker("granian", timeout_s=3) is None
