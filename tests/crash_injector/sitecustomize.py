"""Loaded at start-up by Python in a command the crash-point tests run (this folder is put on
its PYTHONPATH). With DSLAB_CRASH_AT=k it kills its own process (SIGKILL: no cleanup, no
finally) at the k-th file event: an open for writing, a write at an offset, an fsync, a
rename or a hard link. With DSLAB_CRASH_COUNT=path it writes the number of events at exit.
"""

import os

_AT = int(os.environ.get("DSLAB_CRASH_AT") or 0)
_COUNT = os.environ.get("DSLAB_CRASH_COUNT")

if _AT or _COUNT:
    import atexit
    import builtins
    import io
    import signal
    import threading

    _events = [0]
    _lock = threading.Lock()

    def _event() -> None:
        with _lock:
            _events[0] += 1
            number = _events[0]
        if number == _AT:
            os.kill(os.getpid(), signal.SIGKILL)

    def _counted(function, writes=lambda *args, **kwargs: True):
        def wrapper(*args, **kwargs):
            if writes(*args, **kwargs):
                _event()
            return function(*args, **kwargs)

        return wrapper

    def _open_writes(file, mode="r", *args, **kwargs) -> bool:
        return any(flag in mode for flag in "wax+")

    _WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT
    _unwrapped_open = io.open

    builtins.open = io.open = _counted(io.open, _open_writes)
    os.open = _counted(os.open, lambda path, flags, *args, **kwargs: bool(flags & _WRITE_FLAGS))
    for _name in ("pwrite", "fsync", "replace", "rename", "link"):
        setattr(os, _name, _counted(getattr(os, _name)))

    if _COUNT:
        atexit.register(lambda: _unwrapped_open(_COUNT, "w").write(str(_events[0])))
