"""Moving whole objects between S3 and local files: listing, downloads in parallel parts,
multipart uploads, ETag checks, and tallies of what a copy did.

Every request goes through the one retry policy (``retry``); downloads are written under a
temporary name and renamed when their size is right.
"""

from __future__ import annotations

import concurrent.futures
import errno
import hashlib
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel2_l1c.storage.files import remove_tree, temp_sibling
from sentinel2_l1c.storage.retry import (
    ChecksumMismatch,
    RetryPolicy,
    call_with_retries,
    describe,
    http_status,
)

log = logging.getLogger(__name__)


@dataclass
class Tally:
    """What a copy did: files and bytes written, and those found already in place."""

    files: int = 0
    bytes: int = 0
    skipped_files: int = 0
    skipped_bytes: int = 0

    def add(self, files: int, size: int) -> None:
        self.files += files
        self.bytes += size


MiB = 1 << 20
PART_SIZE = 64 * MiB  # multipart part, and the size above which objects go in parts
MAX_PARTS = 10_000  # S3's limit
_COMMON_PART_SIZES = (5 * MiB, 8 * MiB, 15 * MiB, 16 * MiB, 32 * MiB, 100 * MiB)  # boto3, s3cmd…


@dataclass(frozen=True)
class RemoteObject:
    key: str
    size: int
    etag: str  # without quotes


def part_size(size: int) -> int:
    """Part size of a multipart transfer: PART_SIZE, or larger when S3's part limit needs it."""
    return max(PART_SIZE, -(-size // MAX_PARTS // MiB) * MiB)


def list_objects(
    client: Any,
    bucket: str,
    prefix: str,
    retry: RetryPolicy,
    count: Callable[[], None] = lambda: None,
) -> list[RemoteObject]:
    """Every object under ``prefix`` (folder markers left out), page by page with retries."""
    objects: list[RemoteObject] = []
    token: str | None = None
    while True:
        arguments = {"Bucket": bucket, "Prefix": prefix}
        if token:
            arguments["ContinuationToken"] = token

        def list_page(arguments: dict[str, str] = arguments) -> dict[str, Any]:
            count()
            return client.list_objects_v2(**arguments)

        page = call_with_retries(f"list s3://{bucket}/{prefix}", list_page, retry)
        objects += [
            RemoteObject(o["Key"], o["Size"], o.get("ETag", "").strip('"'))
            for o in page.get("Contents", [])
            if not o["Key"].endswith("/")
        ]
        token = page.get("NextContinuationToken")
        if not token:
            return objects


def _md5_parts(path: Path, part: int) -> list[bytes]:
    digests = []
    with open(path, "rb") as handle:
        while block := handle.read(part):
            digests.append(hashlib.md5(block, usedforsecurity=False).digest())
    return digests


def file_md5(path: Path) -> str:
    whole = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(PART_SIZE):
            whole.update(block)
    return whole.hexdigest()


def matches_etag(path: Path, etag: str) -> bool:
    """True if the local file has this S3 ETag: an MD5, or the MD5 of part MD5s ("…-N").

    A multipart ETag depends on the uploader's part size; ours and common clients' are tried.
    """
    if "-" not in etag:
        return file_md5(path) == etag
    size = path.stat().st_size
    digest, _, count = etag.partition("-")
    for part in dict.fromkeys((part_size(size), *_COMMON_PART_SIZES)):
        if -(-size // part) == int(count or 0):
            parts = _md5_parts(path, part)
            if hashlib.md5(b"".join(parts), usedforsecurity=False).hexdigest() == digest:
                return True
    return False


def delete_bucket(client: Any, bucket: str, retry: RetryPolicy) -> None:
    """Delete every object of ``bucket`` (1000 a request), then the bucket; a missing bucket
    is already deleted."""
    import botocore.exceptions

    try:
        keys = [o.key for o in list_objects(client, bucket, "", retry)]
        for first in range(0, len(keys), 1000):
            batch = {"Objects": [{"Key": k} for k in keys[first : first + 1000]], "Quiet": True}
            call_with_retries(
                f"delete objects of s3://{bucket}",
                lambda batch=batch: client.delete_objects(Bucket=bucket, Delete=batch),
                retry,
            )
        call_with_retries(
            f"delete s3://{bucket}", lambda: client.delete_bucket(Bucket=bucket), retry
        )
    except botocore.exceptions.ClientError as err:
        if http_status(err) != 404:
            raise


def download_object(
    client: Any,
    bucket: str,
    key: str,
    size: int,
    path: Path,
    retry: RetryPolicy,
    count: Callable[[], None] = lambda: None,
    md5: str | None = None,
    hashing: Callable[[float], None] = lambda seconds: None,
) -> int:
    """Download one object to ``path`` (temp name, size and ``md5`` checked, rename) unless a
    file of its size (and MD5) is already there; returns the bytes fetched. The MD5 is taken
    of the bytes as they arrive; ``hashing`` is told the seconds it took."""
    if path.is_file() and path.stat().st_size == size:
        if md5 is None or _timed(hashing, file_md5, path) == md5:
            return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(path)

    def get() -> None:
        count()
        body = client.get_object(Bucket=bucket, Key=key)["Body"]
        digest, spent = hashlib.md5(usedforsecurity=False), 0.0
        with open(temp, "wb") as handle:
            for chunk in body.iter_chunks(MiB):
                handle.write(chunk)
                if md5 is not None:
                    started = time.perf_counter()
                    digest.update(chunk)
                    spent += time.perf_counter() - started
        hashing(spent)
        if temp.stat().st_size != size:
            raise ConnectionError(f"short read: {temp.stat().st_size} of {size} bytes")
        if md5 is not None and digest.hexdigest() != md5:
            raise ChecksumMismatch(f"MD5 {digest.hexdigest()} is not the expected {md5}")

    try:
        call_with_retries(f"GET s3://{bucket}/{key}", get, retry)
    except BaseException:
        remove_tree(temp)
        raise
    os.replace(temp, path)
    return size


def _timed[T](spent: Callable[[float], None], function: Callable[[Path], T], path: Path) -> T:
    started = time.perf_counter()
    try:
        return function(path)
    finally:
        spent(time.perf_counter() - started)


def download_large(
    client: Any,
    bucket: str,
    key: str,
    size: int,
    path: Path,
    retry: RetryPolicy,
    pool: ThreadPoolExecutor,
    done: Callable[[int], None] = lambda n: None,
) -> int:
    """Download a large object as parallel range GETs into one file (temp name, rename)."""
    if path.is_file() and path.stat().st_size == size:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_sibling(path)
    step = part_size(size)

    def get_part(start: int) -> None:
        stop = min(start + step, size)

        def get() -> None:
            body = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{stop - 1}")
            data = body["Body"].read()
            if len(data) != stop - start:
                raise ConnectionError(f"short read: {len(data)} of {stop - start} bytes")
            write_at(descriptor, data, start)

        call_with_retries(f"GET s3://{bucket}/{key} bytes {start}-{stop - 1}", get, retry)
        done(stop - start)

    descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    futures = []
    try:
        os.ftruncate(descriptor, size)
        futures = [pool.submit(get_part, start) for start in range(0, size, step)]
        for future in futures:
            future.result()
        os.fsync(descriptor)
    except BaseException as error:
        for future in futures:  # no part may still write when the descriptor is closed
            future.cancel()
        concurrent.futures.wait(futures)
        os.close(descriptor)
        remove_tree(temp)
        if isinstance(error, OSError) and not isinstance(error, ConnectionError):
            if error.filename is None:  # pwrite names no file: say which one
                raise OSError(error.errno, error.strerror, str(path)) from error
        raise
    os.close(descriptor)
    os.replace(temp, path)
    return size


def write_at(descriptor: int, data: bytes, offset: int) -> None:
    """All of ``data`` at ``offset``: ``os.pwrite`` may write less (a full disk) and says so
    only by its count; an OSError (ENOSPC) when nothing more can be written."""
    view = memoryview(data)
    while view:
        written = os.pwrite(descriptor, view, offset)
        if written <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view, offset = view[written:], offset + written


def upload_object(
    client: Any,
    bucket: str,
    key: str,
    path: Path,
    retry: RetryPolicy,
    pool: ThreadPoolExecutor | None = None,
    done: Callable[[int], None] = lambda n: None,
) -> None:
    """Upload one file; above PART_SIZE as a multipart upload with parts in ``pool``.

    An object appears only when complete (S3 PUT and multipart completion are atomic); a
    failed multipart upload is aborted so its parts do not linger.
    """
    size = path.stat().st_size
    if size <= PART_SIZE or pool is None:

        def put() -> None:
            with open(path, "rb") as handle:
                client.put_object(Bucket=bucket, Key=key, Body=handle)

        call_with_retries(f"PUT s3://{bucket}/{key}", put, retry)
        done(size)
        return
    step = part_size(size)
    upload = call_with_retries(
        f"start upload s3://{bucket}/{key}",
        lambda: client.create_multipart_upload(Bucket=bucket, Key=key),
        retry,
    )["UploadId"]

    def put_part(number: int) -> dict[str, Any]:
        start = (number - 1) * step
        with open(path, "rb") as handle:
            handle.seek(start)
            data = handle.read(step)

        def put() -> dict[str, Any]:
            answer = client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload, PartNumber=number, Body=data
            )
            return {"PartNumber": number, "ETag": answer["ETag"]}

        part = call_with_retries(f"PUT s3://{bucket}/{key} part {number}", put, retry)
        done(len(data))
        return part

    futures = []
    try:
        futures += [pool.submit(put_part, n) for n in range(1, -(-size // step) + 1)]
        parts = [future.result() for future in futures]
        call_with_retries(
            f"complete upload s3://{bucket}/{key}",
            lambda: client.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            ),
            retry,
        )
    except BaseException:
        for future in futures:
            future.cancel()
        concurrent.futures.wait(futures)
        try:
            client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload)
        except Exception as error:  # the failure that got here is the one to report
            log.warning(
                "s3://%s/%s: abort failed (%s); the next publish aborts it",
                bucket,
                key,
                describe(error),
            )
        raise


def abort_stale_uploads(client: Any, bucket: str, keys: set[str], retry: RetryPolicy) -> int:
    """Abort the bucket's unfinished multipart uploads of ``keys`` (a run killed while
    uploading leaves them, and their parts are stored, and billed, until aborted); returns
    how many."""
    stale, markers = [], {}
    while True:
        page = call_with_retries(
            f"list uploads s3://{bucket}",
            lambda markers=markers: client.list_multipart_uploads(Bucket=bucket, **markers),
            retry,
        )
        stale += [u for u in page.get("Uploads", []) if u["Key"] in keys]
        if not page.get("IsTruncated"):
            break
        markers = {
            "KeyMarker": page["NextKeyMarker"],
            "UploadIdMarker": page["NextUploadIdMarker"],
        }
    for upload in stale:
        call_with_retries(
            f"abort upload s3://{bucket}/{upload['Key']}",
            lambda upload=upload: client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            ),
            retry,
        )
    if stale:
        log.info("s3://%s: aborted %d unfinished uploads of earlier runs", bucket, len(stale))
    return len(stale)
