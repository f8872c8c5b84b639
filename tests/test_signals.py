"""SIGTERM and SIGHUP reach the gateway even while its event loop is busy (issue 18).

Each case runs ``gateway.signals.Signals`` in a real child process and signals it while a
callback holds the loop: a loop that comes back drains normally (exit 0, the deadline timer
cancelled); a loop that never comes back is ended by the deadline (EXIT_STUCK) with the stuck
stack in the log, instead of SIGTERM being ignored until SIGKILL.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from gateway.signals import EXIT_STUCK
from tests.e2e.harness import REPO

CHILD = textwrap.dedent("""
    import asyncio, sys, time
    import gateway.signals as signals

    BUSY_S = float(sys.argv[1])
    signals.STOP_MARGIN_S = float(sys.argv[2])

    class Gateway:  # what Signals needs of the real one
        class settings:
            class limits:
                shutdown_grace_s = 0.5
        def reload(self):
            print("reloaded", flush=True)

    async def main():
        handlers = signals.Signals(0.5)
        handlers.gateway = Gateway()
        print("busy", flush=True)
        time.sleep(BUSY_S)  # a callback that keeps the loop from coming back
        await handlers.stop.wait()
        handlers.close()
        # The deadline must be cancelled, not merely not yet due: its thread ends at once.
        handlers._timer.join(5)
        print("drained" if not handlers._timer.is_alive() else "deadline still armed",
              flush=True)

    asyncio.run(main())
""")


def run_child(busy_s: float, margin_s: float, *signums: int) -> subprocess.CompletedProcess[str]:
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(busy_s), str(margin_s)], cwd=REPO,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "busy"
    for signum in signums:
        child.send_signal(signum)
    out, err = child.communicate(timeout=30)
    return subprocess.CompletedProcess(child.args, child.returncode, "busy\n" + out, err)


def test_signals_sent_while_the_loop_is_busy_are_handled_when_it_returns() -> None:
    # The deadline (0.5 s grace + 10 s) is far beyond the busy second, so a loaded machine
    # cannot make the drain lose the race against it.
    result = run_child(1.0, 10.0, signal.SIGHUP, signal.SIGTERM)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["busy", "reloaded", "drained"]


def test_sigterm_ends_a_process_whose_loop_never_comes_back() -> None:
    result = run_child(600.0, 0.5, signal.SIGTERM)
    assert result.returncode == EXIT_STUCK
    assert "did not drain in time" in result.stderr
    assert ", in main\n" in result.stderr  # where the main thread was stuck
