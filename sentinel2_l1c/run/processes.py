"""Child processes a command starts (servers, mounts, proxies): stopped by their own PID."""

from __future__ import annotations

import subprocess

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
