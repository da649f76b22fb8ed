"""Child processes a command starts (servers, mounts, proxies): stopped by their own PID."""

from __future__ import annotations

import ctypes
import signal
import subprocess
from collections.abc import Callable

_PR_SET_PDEATHSIG = 1  # prctl: the signal a child gets when its parent ends
STOP_TIMEOUT = 10.0  # seconds a child gets to end after SIGTERM before SIGKILL


def stop_process(process: subprocess.Popen, timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``timeout``; waits for it either way."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def die_with_parent(signum: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets ``signum`` when the process that started it ends,
    however it ends (a SIGKILLed lab must not leave its servers running)."""
    return lambda: ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signum)
