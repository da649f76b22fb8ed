"""Copy Sentinel-2 L1C SAFE products of one tile and time range from CDSE to the network drive.

Searches the STAC API (``DSLAB_S2L1C_STAC_URL``, default CDSE's) for the tile, keeps one
product per datatake, and downloads each SAFE folder from S3 (boto3 profile
``DSLAB_S2L1C_CDSE_PROFILE``, default ``cdse``) into ``$DSLAB_S2L1C_NETWORK_SAFE_PATH`` in CDSE
layout, with at most ``--connections`` concurrent requests (CDSE allows 4).

A product is fetched into ``.<name>.SAFE.partial`` beside its final place and renamed when
every object is there with the size and MD5 its ``manifest.safe`` lists (hashed as the bytes
arrive; a mismatch is fetched again under the retry policy, then ends the run in one line
naming the file), so a product folder that exists is complete. A rerun skips complete
products and resumes partial ones file by file. A product listed in STAC but absent from S3,
or whose S3 listing does not match its manifest (being replaced), is reported and skipped;
the run then ends with exit code 1.

    python -m sentinel2_l1c.intake_cdse_s3 --tile 35VLH \\
        --time-start 2024-02-21T00:00:00Z --time-end 2024-02-22T00:00:00Z
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pystac
from pystac_client import Client
from pystac_client.errors import ClientTypeError
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO

from sentinel2_l1c import formats
from sentinel2_l1c.errors import ConfigError, InputDataError, RemoteError
from sentinel2_l1c.run.cli import Parser, new_parser, run_cli
from sentinel2_l1c.run.progress import progress_bar
from sentinel2_l1c.s2.bands import parse_tile_id
from sentinel2_l1c.s2.manifest import MANIFEST, parse_manifest
from sentinel2_l1c.s2.names import SafeName, parse_utc, resolve_duplicates
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.clients import s3_client
from sentinel2_l1c.storage.files import atomic_write_bytes
from sentinel2_l1c.storage.locations import DEFAULT_CDSE_CONNECTIONS, STAC_URL, Locations
from sentinel2_l1c.storage.retry import RetryPolicy, call_with_retries, describe, is_transient
from sentinel2_l1c.storage.s3_account import S3Account
from sentinel2_l1c.storage.transfer import download_object, list_objects

log = logging.getLogger(__name__)

COLLECTION = "sentinel-2-l1c"
PAGE_SIZE = 100
Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class ProductSource:
    """Where one product's SAFE folder lives in S3."""

    name: SafeName
    bucket: str
    prefix: str  # key of the SAFE folder, without a trailing slash


def source_from_item(item: dict[str, Any]) -> ProductSource:
    """The S3 location of a STAC item's SAFE folder: its ``enclosure`` link, else an asset."""
    hrefs = [link["href"] for link in item.get("links", []) if link.get("rel") == "enclosure"]
    hrefs += [asset["href"] for asset in item.get("assets", {}).values()]
    for href in hrefs:
        if href.startswith("s3://") and ".SAFE" in href:
            bucket, _, key = href.removeprefix("s3://").partition("/")
            prefix = key[: key.index(".SAFE") + len(".SAFE")]
            return ProductSource(SafeName.parse(PurePosixPath(prefix).name), bucket, prefix)
    raise InputDataError(f"STAC item {item.get('id')!r} has no s3:// link to a SAFE folder")


@dataclass(frozen=True)
class IntakeOptions:
    tile: str
    windows: tuple[Window, ...]
    safe_root: Path
    stac_url: str
    account: S3Account  # its retry policy is intake's, STAC calls included
    connections: int = DEFAULT_CDSE_CONNECTIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile", parse_tile_id(self.tile))
        if self.connections < 1:
            raise ConfigError(f"connections must be at least 1, got {self.connections}")
        for start, end in self.windows:
            if end <= start:
                raise ConfigError(
                    f"--time-end {end.isoformat()} must be after --time-start {start.isoformat()}"
                )


@dataclass
class IntakeSummary:
    found: int = 0
    downloaded: int = 0
    skipped: int = 0
    missing: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)  # "name: why"
    bytes: int = 0
    requests: int = 0
    seconds: float = 0.0
    hashing_seconds: float = 0.0  # MD5s of the bytes as they arrived, summed over threads

    def record(self, source: ProductSource, outcome: str, size: int) -> None:
        """Count a product ``ProductDownloader.download_all`` finished; a missing or
        incomplete one is also a warning line."""
        name = source.name.name
        if outcome == "missing":
            log.warning("%s is listed in STAC but missing from S3; skipped", name)
            self.missing.append(name)
        elif outcome == "skipped":
            self.skipped += 1
        elif outcome == "downloaded":
            self.downloaded += 1
        else:
            log.warning("%s is not complete in S3 (%s); skipped", name, outcome)
            self.incomplete.append(f"{name}: {outcome}")
        self.bytes += size

    def lines(self) -> list[str]:
        rate = self.bytes / 1e6 / self.seconds if self.seconds else 0.0
        text = [
            f"{self.found} products found, {self.downloaded} downloaded, {self.skipped} already "
            f"complete, {len(self.missing)} missing from S3, {len(self.incomplete)} not "
            "complete in S3",
            f"{self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s ({rate:.1f} MB/s), "
            f"{self.requests} S3 requests",
        ]
        if self.hashing_seconds:
            hashing = self.bytes / 1e6 / self.hashing_seconds
            text.append(
                f"MD5s checked against {MANIFEST} as the bytes arrived: "
                f"{self.hashing_seconds:.1f} s of hashing ({hashing:.0f} MB/s)"
            )
        text += [f"missing from S3: {name}" for name in self.missing]
        return text + [f"not complete in S3: {line}" for line in self.incomplete]


# --------------------------------------------------------------------------------------
# Search
# --------------------------------------------------------------------------------------


def search_products(
    url: str,
    tile: str,
    windows: Sequence[Window],
    retry: RetryPolicy,
    show_progress: bool = False,
) -> list[ProductSource]:
    """Products of ``tile`` in the time ``windows`` (start included, end excluded), one per datatake."""
    found: dict[str, ProductSource] = {}
    for item in search_items(url, tile, windows, retry, show_progress):
        source = source_from_item(item)
        if source.name.tile == tile:
            found[source.name.name] = source
    return [found[name.name] for name in resolve_duplicates(s.name for s in found.values())]


def search_items(
    url: str,
    tile: str,
    windows: Sequence[Window],
    retry: RetryPolicy,
    show_progress: bool = False,
) -> list[dict[str, Any]]:
    """The STAC Items of ``tile`` in the time ``windows`` (start included, end excluded), as
    the API answers them (reprocessed duplicates included)."""
    # call_with_retries is the retry layer; Client.open sets the timeout of the StacApiIO it
    # is given to its own argument, so both get the deadlines
    timeout = (retry.connect_timeout, retry.read_timeout)
    io = StacApiIO(max_retries=0, timeout=timeout)

    def open_client() -> Client:
        try:
            return Client.open(url, stac_io=io, timeout=timeout)
        except APIError as err:
            if is_transient(err):
                raise
            raise RemoteError(
                f"{url} did not answer as a STAC API ({describe(err)}): check {STAC_URL}"
            ) from err
        except (ValueError, KeyError, TypeError, pystac.STACError, ClientTypeError) as err:
            raise RemoteError(
                f"{url} is not a STAC API ({type(err).__name__}): check {STAC_URL}"
            ) from err

    client = call_with_retries(f"STAC API {url}", open_client, retry)
    found: list[dict[str, Any]] = []
    with progress_bar(len(windows), "searching", enabled=show_progress and len(windows) > 1) as bar:
        for number, (start, end) in enumerate(windows, 1):
            found += call_with_retries(
                f"STAC search {url}", lambda s=start, e=end: _search(client, tile, s, e), retry
            )
            bar.update(number)
    return found


def _search(client: Client, tile: str, start: datetime, end: datetime) -> list[dict[str, Any]]:
    search = client.search(
        collections=[COLLECTION],
        datetime=[start, end],
        filter={"op": "=", "args": [{"property": "grid:code"}, f"MGRS-{tile}"]},
        filter_lang="cql2-json",
        limit=PAGE_SIZE,
    )
    items = list(search.items_as_dicts())
    # STAC intervals include their end; ours exclude it.
    return [i for i in items if start <= parse_utc(i["properties"]["datetime"]) < end]


# --------------------------------------------------------------------------------------
# Download
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One object of a product: its key, listed size, local path and the manifest's MD5."""

    key: str
    size: int
    path: Path
    md5: str | None


class ProductDownloader:
    """Downloads SAFE folders from S3 into a SAFE root, atomically per product, every file
    checked against the product's ``manifest.safe`` (size and MD5) as it arrives."""

    def __init__(
        self,
        client: Any,
        safe_root: Path,
        connections: int,
        retry: RetryPolicy,
        only: Callable[[PurePosixPath], bool] | None = None,
        fetch: Callable[[PurePosixPath], bool] | None = None,
    ) -> None:
        """``only``: which files of a product must be in S3 as its manifest lists them (their
        paths in it; None: all); ``fetch``: which of those to download (None: all of them)."""
        self.client = client
        self.safe_root = Path(safe_root)
        self.connections = connections
        self.retry = retry
        self.only = only
        self.fetch = fetch
        self._lock = threading.Lock()
        self.requests = 0
        self.hashing_seconds = 0.0  # summed over threads

    def target(self, source: ProductSource) -> Path:
        return self.safe_root / source.name.cdse_path

    def download_all(
        self, sources: Sequence[ProductSource], done: Callable[[ProductSource, str, int], None]
    ) -> None:
        """Fetch every product not yet complete, objects of all products through one pool.

        One pool keeps all connections busy across product boundaries; products are still
        finished (checked, renamed into place) in order. ``done(source, outcome, bytes)`` is
        called per product with outcome "downloaded", "skipped", "missing" or, for a product
        whose S3 listing does not match its manifest, the reason.
        """
        pending = []
        for source in sources:
            if self.target(source).is_dir():
                done(source, "skipped", 0)
            else:
                pending.append(source)
        pool = ThreadPoolExecutor(self.connections)
        try:
            prepared = [(source, pool.submit(self._prepare, source)) for source in pending]
            queued = []
            for source, preparing in prepared:
                jobs, problem = preparing.result()
                fetches = [pool.submit(self._fetch, source.bucket, job) for job in jobs]
                queued.append((source, jobs, problem, fetches))
            for source, jobs, problem, fetches in queued:
                if problem is not None:
                    done(source, problem, 0)
                    continue
                fetched = sum(fetch.result() for fetch in fetches)
                self._finish(source, jobs)
                done(source, "downloaded", fetched)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown()

    def partial(self, source: ProductSource) -> Path:
        return self.target(source).with_name(f".{self.target(source).name}.partial")

    def _prepare(self, source: ProductSource) -> tuple[list[Job], str | None]:
        """List the product and read its manifest: the objects to fetch with their MD5s, or
        why the product cannot be complete in S3 now ("missing", or a mismatch)."""
        listed = dict(self._list(source))
        if not listed:
            return [], "missing"
        manifest_key = f"{source.prefix}/{MANIFEST}"
        if manifest_key not in listed:
            return [], f"S3 lists no {MANIFEST}"
        text = call_with_retries(
            f"GET s3://{source.bucket}/{manifest_key}",
            lambda: self._get(source.bucket, manifest_key),
            self.retry,
        )
        files = parse_manifest(text, f"s3://{source.bucket}/{manifest_key}")
        partial = self.partial(source)
        atomic_write_bytes(partial / MANIFEST, text)  # its job then finds it there
        jobs = []
        listed = {k: v for k, v in listed.items() if self._wanted(_relative(source, k))}
        files = {name: e for name, e in files.items() if self._wanted(PurePosixPath(name))}
        for key, size in listed.items():
            relative = _relative(source, key)
            entry = files.get(relative.as_posix())
            if entry is not None and entry.size != size:
                return [], f"S3 lists {relative} with {size} bytes, {MANIFEST} {entry.size}"
            if self.fetch is None or self.fetch(relative) or relative.as_posix() == MANIFEST:
                jobs.append(Job(key, size, partial / relative, entry and entry.md5))
        unlisted = sorted(set(files) - {_relative(source, key).as_posix() for key in listed})
        if unlisted:
            return [], f"{MANIFEST} names {unlisted[0]}, which S3 does not list"
        return jobs, None

    def _wanted(self, relative: PurePosixPath) -> bool:
        return self.only is None or relative.as_posix() == MANIFEST or self.only(relative)

    def _get(self, bucket: str, key: str) -> bytes:
        self._count()
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def _finish(self, source: ProductSource, jobs: list[Job]) -> None:
        """Check every object, drop leftovers of interrupted runs, rename into place."""
        for job in jobs:
            if not job.path.is_file() or job.path.stat().st_size != job.size:
                raise RemoteError(f"s3://{source.bucket}/{job.key}: incomplete after download")
        partial, expected = self.partial(source), {job.path for job in jobs}
        for leftover in [p for p in partial.rglob("*") if p.is_file() and p not in expected]:
            leftover.unlink()
        os.replace(partial, self.target(source))

    def _count(self) -> None:
        with self._lock:
            self.requests += 1

    def _hashed(self, seconds: float) -> None:
        with self._lock:
            self.hashing_seconds += seconds

    def _list(self, source: ProductSource) -> list[tuple[str, int]]:
        objects = list_objects(
            self.client, source.bucket, f"{source.prefix}/", self.retry, self._count
        )
        return [(o.key, o.size) for o in objects]

    def _fetch(self, bucket: str, job: Job) -> int:
        """Download one object unless a complete copy is already there; returns bytes fetched.
        A copy whose MD5 is not the manifest's is fetched again, then fails in one line."""
        return download_object(
            self.client, bucket, job.key, job.size, job.path, self.retry, self._count,
            job.md5, self._hashed,
        )  # fmt: skip


def _relative(source: ProductSource, key: str) -> PurePosixPath:
    """The object's path inside the SAFE folder; keys that would escape it are refused."""
    relative = PurePosixPath(key[len(source.prefix) + 1 :])
    if not relative.parts or relative.is_absolute() or ".." in relative.parts:
        raise RemoteError(f"s3://{source.bucket}/{key}: unsafe object key")
    return relative


def run_intake(options: IntakeOptions, show_progress: bool = True) -> IntakeSummary:
    """Search, then download every product not yet complete; never raises for missing ones."""
    client = s3_client(options.account, options.connections)  # config errors before any call
    started = time.perf_counter()
    sources = search_products(
        options.stac_url, options.tile, options.windows, options.account.retry, show_progress
    )
    downloader = ProductDownloader(
        client, options.safe_root, options.connections, options.account.retry
    )
    summary = IntakeSummary(found=len(sources))
    with progress_bar(len(sources), "products", show_progress, variables=("MB",)) as bar:
        bar.update(0, MB="0 MB")

        def done(source: ProductSource, outcome: str, size: int) -> None:
            summary.record(source, outcome, size)
            finished = summary.downloaded + summary.skipped + len(summary.missing)
            finished += len(summary.incomplete)
            bar.update(finished, MB=f"{summary.bytes / 1e6:.0f} MB")

        downloader.download_all(sources, done)
    summary.requests = downloader.requests
    summary.hashing_seconds = downloader.hashing_seconds
    summary.seconds = time.perf_counter() - started
    return summary


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def utc_time(text: str) -> datetime:
    """argparse ``type=`` for ``YYYY-MM-DDTHH:MM:SSZ``."""
    try:
        value = parse_utc(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a UTC time YYYY-MM-DDTHH:MM:SSZ, got {text!r}"
        ) from None
    return value


def add_common_arguments(parser: Parser) -> None:
    """Options shared by both intake commands."""
    parser.add_argument("--tile", default="35VLH", help="MGRS tile id.")
    parser.add_alias("--tile_id", "--tile")
    parser.add_argument(
        "--connections",
        type=int,
        default=None,
        help="Concurrent S3 connections (default: $DSLAB_S2L1C_CDSE_CONNECTIONS or "
        f"{DEFAULT_CDSE_CONNECTIONS}, CDSE's quota).",
    )
    parser.add_argument(
        "--target",
        type=Path,
        default=None,
        help="SAFE root to download into (default: $DSLAB_S2L1C_NETWORK_SAFE_PATH).",
    )


def options_for(args: argparse.Namespace, windows: Iterable[Window]) -> IntakeOptions:
    """Options from arguments and configuration; everything is checked before any network call."""
    locations = Locations.from_environment()
    return IntakeOptions(
        tile=args.tile,
        windows=tuple(windows),
        safe_root=args.target or storages.NETWORK.path(locations, formats.SAFE),
        stac_url=locations.stac_url,
        account=locations.cdse_account,
        connections=(locations.cdse_connections if args.connections is None else args.connections),
    )


def report(summary: IntakeSummary) -> int:
    """Print the summary; exit code 1 when products were missing or not complete in S3."""
    for line in summary.lines():
        print(line)
    if summary.missing or summary.incomplete:
        print(
            f"error: {len(summary.missing) + len(summary.incomplete)} product(s) listed in STAC "
            "are missing or not complete in S3; a rerun fetches them once they are",
            file=sys.stderr,
        )
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Download Sentinel-2 L1C SAFE products of one tile and time range from CDSE "
        "(STAC search, S3 download) to the network drive.",
        prog="python -m sentinel2_l1c.intake_cdse_s3",
    )
    parser.add_argument(
        "--time-start",
        type=utc_time,
        default="2024-02-21T00:00:00Z",
        help="Start time (UTC), included.",
    )
    parser.add_argument(
        "--time-end",
        type=utc_time,
        default="2024-02-22T00:00:00Z",
        help="End time (UTC), excluded.",
    )
    add_common_arguments(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    options = options_for(args, [(args.time_start, args.time_end)])
    return report(run_intake(options, show_progress=not args.quiet))


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
