"""One writer at a time per tile-year and store: a lock file beside the groups.

Two conversions of the same tile-year (a Slurm array job submitted twice) would interleave
their blocks and commits. A writer takes ``.dslab-locks/STORE/TILE-YEAR.json`` beside the
store (outside it: never staged, zipped or published, nor seen by Zarr) by linking a complete
file to that name, which fails while another holds it; the file says who holds it (host, process, start time) and the
holder touches it every ``HEARTBEAT`` seconds. A second writer waits up to its deadline, then
stops in one line naming the holder. A lock whose holder is dead (on this host: its process
is gone; on another: no heartbeat for ``STALE`` seconds) is taken over under a takeover file
that only one contender can create, after checking the lock is still the dead holder's.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.storage.files import temp_sibling

FOLDER = ".dslab-locks"
HEARTBEAT = 30.0  # seconds between the holder's touches
STALE = 300.0  # seconds without a heartbeat after which another host's holder counts as dead
TAKEOVER_STALE = 60.0  # a takeover file older than this was left by a killed contender
POLL = 1.0  # seconds between tries while waiting


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: str  # ISO time
    token: str

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}, writing since {self.started}"


class WriterLock:
    """``with WriterLock(store, "35VLH-2024", wait):`` around a tile-year's writes."""

    def __init__(self, store: Path, name: str, wait: float = 0.0) -> None:
        self.store = Path(store).absolute()
        self.path = self.store.parent / FOLDER / self.store.name / f"{name}.json"
        self.wait = wait
        self.me = Holder(
            socket.gethostname(), os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"),
            uuid.uuid4().hex,
        )  # fmt: skip
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    def __enter__(self) -> WriterLock:
        deadline = time.monotonic() + self.wait
        while not self._create():
            holder = self._read()
            if holder is not None and self._dead(holder) and self._take_over(holder):
                break
            if time.monotonic() >= deadline:
                who = holder.describe() if holder is not None else "another writer"
                raise InputDataError(
                    f"{self.store}: {self.path.stem} is being written by {who} "
                    f"(lock {self.path}); wait for it (--lock-wait SECONDS) or stop it"
                )
            time.sleep(min(POLL, max(0.0, deadline - time.monotonic())))
        self._heartbeat = threading.Thread(target=self._beat, daemon=True)
        self._heartbeat.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
        holder = self._read()
        if holder is not None and holder.token == self.me.token:
            self.path.unlink(missing_ok=True)

    def _create(self) -> bool:
        """Link a complete lock file to the lock's name; False when one is there."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = temp_sibling(self.path)
        temp.write_text(json.dumps(asdict(self.me)))
        try:
            os.link(temp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)

    def _read(self) -> Holder | None:
        try:
            return Holder(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (ValueError, TypeError):  # not a lock this tool wrote: never taken over
            return Holder("an unknown host", 0, "an unknown time", "")

    def _dead(self, holder: Holder) -> bool:
        if not holder.token:
            return False
        if holder.host == self.me.host:
            try:
                os.kill(holder.pid, 0)
            except ProcessLookupError:
                return True
            except PermissionError:  # alive, another user's
                return False
            return False
        try:
            return time.time() - self.path.stat().st_mtime > STALE
        except FileNotFoundError:
            return False

    def _take_over(self, dead: Holder) -> bool:
        """Replace the dead holder's lock with this writer's, if no other contender does."""
        guard = self.path.with_name(f"{self.path.name}.takeover")
        try:
            if time.time() - guard.stat().st_mtime > TAKEOVER_STALE:
                guard.unlink(missing_ok=True)
        except FileNotFoundError:
            pass
        try:
            os.close(os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            return False
        try:
            current = self._read()
            if current is None or current.token != dead.token:
                return False
            self.path.unlink()
            return self._create()
        finally:
            guard.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except FileNotFoundError:
                return
