"""One writer at a time per tile-year and store: a lock beside the groups.

Two conversions or ingests of the same tile-year (a Slurm array job submitted twice) would
interleave their blocks and commits. A writer takes the lock ``TILE-YEAR.json`` by creating
it only if it is not there: beside a folder store, ``.dslab-locks/STORE/`` by linking a
complete file to that name; in a bucket, the key ``.dslab-locks/`` by a conditional PUT
(``If-None-Match: *``), which the store refuses while another holds it. The lock is outside
the data (never staged, zipped or published, nor seen by Zarr or icechunk). It says who holds
it (host, process, start time) and the holder rewrites it every ``HEARTBEAT`` seconds. A
second writer waits up to its deadline, then stops in one line naming the holder. A lock
whose holder is dead (on this host: its process is gone; on another: no heartbeat for
``STALE`` seconds) is taken over under a takeover marker that only one contender can create,
after checking the lock is still the dead holder's.
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
from typing import Protocol

import botocore.exceptions

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.storage.files import temp_sibling
from sentinel2_l1c.storage.places import LOCKS, BucketPlace, FolderPlace, Place
from sentinel2_l1c.storage.retry import call_with_retries, http_status

HEARTBEAT = 30.0  # seconds between the holder's touches
STALE = 300.0  # seconds without a heartbeat after which another host's holder counts as dead
TAKEOVER_STALE = 60.0  # a takeover marker older than this was left by a killed contender
POLL = 1.0  # seconds between tries while waiting


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    started: str  # ISO time
    token: str

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}, writing since {self.started}"


class Slot(Protocol):
    """A name that only one writer can create: a lock or a takeover marker."""

    def __str__(self) -> str: ...

    def create(self, body: bytes) -> bool:
        """Create it with ``body``; False if it is there."""

    def read(self) -> bytes | None: ...

    def age(self) -> float | None:
        """Seconds since it was last written (None: not there)."""

    def rewrite(self, body: bytes) -> None: ...

    def delete(self) -> None: ...


class FileSlot:
    """A file, created by linking a complete temporary file to its name."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __str__(self) -> str:
        return str(self.path)

    def create(self, body: bytes) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = temp_sibling(self.path)
        temp.write_bytes(body)
        try:
            os.link(temp, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            temp.unlink(missing_ok=True)

    def read(self) -> bytes | None:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return None

    def age(self) -> float | None:
        try:
            return time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def rewrite(self, body: bytes) -> None:
        try:
            os.utime(self.path)
        except FileNotFoundError:
            pass

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


class ObjectSlot:
    """An S3 object, created by a conditional PUT (``If-None-Match: *``: 412 if it exists)."""

    def __init__(self, place: BucketPlace, key: str) -> None:
        self.place, self.key = place, key

    def __str__(self) -> str:
        return f"s3://{self.place.bucket}/{self.key}"

    def _call(self, what: str, call: object) -> object:
        return call_with_retries(f"{what} {self}", call, self.place.account.retry)  # type: ignore[arg-type]

    def create(self, body: bytes) -> bool:
        def put() -> bool:
            try:
                self.place.client.put_object(
                    Bucket=self.place.bucket, Key=self.key, Body=body, IfNoneMatch="*"
                )
                return True
            except botocore.exceptions.ClientError as err:
                if http_status(err) in (409, 412):  # there (409: a concurrent create)
                    return False
                raise

        return bool(self._call("PUT", put))

    def _get(self) -> tuple[bytes, datetime] | None:
        def get() -> tuple[bytes, datetime] | None:
            try:
                answer = self.place.client.get_object(Bucket=self.place.bucket, Key=self.key)
            except botocore.exceptions.ClientError as err:
                if http_status(err) == 404:
                    return None
                raise
            return answer["Body"].read(), answer["LastModified"]

        return self._call("GET", get)  # type: ignore[return-value]

    def read(self) -> bytes | None:
        found = self._get()
        return None if found is None else found[0]

    def age(self) -> float | None:
        found = self._get()
        return None if found is None else (datetime.now(UTC) - found[1]).total_seconds()

    def rewrite(self, body: bytes) -> None:
        self._call(
            "PUT",
            lambda: self.place.client.put_object(Bucket=self.place.bucket, Key=self.key, Body=body),
        )

    def delete(self) -> None:
        self._call(
            "DELETE",
            lambda: self.place.client.delete_object(Bucket=self.place.bucket, Key=self.key),
        )


def lock_slot(store: Place | Path, name: str) -> Slot:
    """Where the lock ``name`` of ``store`` lives: beside a folder, in a bucket."""
    if isinstance(store, BucketPlace):
        return ObjectSlot(store, f"{LOCKS}/{name}.json")
    path = (store.path if isinstance(store, FolderPlace) else Path(store)).absolute()
    return FileSlot(path.parent / LOCKS / path.name / f"{name}.json")


def takeover_slot(lock: Slot) -> Slot:
    if isinstance(lock, ObjectSlot):
        return ObjectSlot(lock.place, f"{lock.key}.takeover")
    assert isinstance(lock, FileSlot)
    return FileSlot(lock.path.with_name(f"{lock.path.name}.takeover"))


class WriterLock:
    """``with WriterLock(store, "35VLH-2024", wait):`` around a tile-year's writes."""

    def __init__(self, store: Place | Path, name: str, wait: float = 0.0) -> None:
        self.store, self.name = store, name
        self.slot = lock_slot(store, name)
        self.wait = wait
        self.me = Holder(
            socket.gethostname(), os.getpid(), datetime.now(UTC).isoformat(timespec="seconds"),
            uuid.uuid4().hex,
        )  # fmt: skip
        self._stop = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @property
    def body(self) -> bytes:
        return json.dumps(asdict(self.me)).encode()

    def __enter__(self) -> WriterLock:
        deadline = time.monotonic() + self.wait
        while not self.slot.create(self.body):
            holder = self._read()
            if holder is not None and self._dead(holder) and self._take_over(holder):
                break
            if time.monotonic() >= deadline:
                who = holder.describe() if holder is not None else "another writer"
                raise InputDataError(
                    f"{self.store}: {self.name} is being written by {who} "
                    f"(lock {self.slot}); wait for it (--lock-wait SECONDS) or stop it"
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
        if self._mine():
            self.slot.delete()

    def _mine(self) -> bool:
        holder = self._read()
        return holder is not None and holder.token == self.me.token

    def _read(self) -> Holder | None:
        body = self.slot.read()
        if body is None:
            return None
        try:
            return Holder(**json.loads(body))
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
        age = self.slot.age()
        return age is not None and age > STALE

    def _take_over(self, dead: Holder) -> bool:
        """Replace the dead holder's lock with this writer's, if no other contender does."""
        guard = takeover_slot(self.slot)
        age = guard.age()
        if age is not None and age > TAKEOVER_STALE:
            guard.delete()
        if not guard.create(self.body):
            return False
        try:
            current = self._read()
            if current is None or current.token != dead.token:
                return False
            self.slot.delete()
            return self.slot.create(self.body)
        finally:
            guard.delete()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            if not self._mine():
                return
            self.slot.rewrite(self.body)
