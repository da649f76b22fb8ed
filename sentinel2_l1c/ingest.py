"""Ingest Sentinel-2 L1C products from CDSE straight into a Zarr format on S3 or a folder.

For tiles and a time window, finds the products in the STAC API (one per datatake, as intake
keeps them), leaves out those the target already holds, downloads only what decoding needs
(band files, the two metadata files, ``manifest.safe``: every file checked against its MD5)
into a scratch folder, and converts each tile-year's new dates into the target
(``convert_safe_to_zarr``'s tasks, on its Dask engine): plain or sharded Zarr on a folder or a
bucket through the write protocol's commit point, or icechunk in one commit per tile-year and
run. A tile-year's new dates go in rounds (``ROUND_DATES``): the next round downloads while
one converts. The scratch copy of a product is deleted once its tile-year is committed
(``--keep-safe`` keeps it). Closed years are rewritten in the read layout by
``--consolidate`` (``consolidate``).

Only this process talks to CDSE, through one client of ``--connections`` (CDSE's quota, 4)
pooled connections, whatever the engine: Dask workers, also in Slurm jobs on other nodes,
read the scratch folder (so with ``--cluster slurm`` it must be on a shared drive).

A killed run leaves the target at its last commit and the scratch folder with the products
downloaded; the rerun resumes both. Dates are appended in time order: a product listed in
STAC but missing or incomplete in S3 is skipped with one warning line (exit code 1), and the
later products of its tile-year wait in the scratch folder for a run that finds it; one
older than the target's last date of its tile-year cannot be appended and is reported; a
reprocessed product of a date the target holds is left out (the stored one stays). Before
anything, the plan of the run (``plan``) is checked against the quotas; a run over one is
refused in one line unless ``--over-quota``.

    python -m sentinel2_l1c.ingest --tiles 35VLH 35VLG --days 3
    python -m sentinel2_l1c.ingest --tiles 35VLH --time-start 2024-05-01T00:00:00Z \\
        --time-end 2024-06-01T00:00:00Z --format icechunk --storage network
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path, PurePosixPath

import zarr

from sentinel2_l1c import formats, plan
from sentinel2_l1c.convert_safe_to_zarr import (
    Date,
    StoredDate,
    TileYearWriters,
    ZarrOptions,
    ZarrSummary,
    commit_tile_year,
    convert_tile_year,
    stored_dates,
    written_dates,
    zarr_formats,
)
from sentinel2_l1c.cube import layouts as zarr_layouts
from sentinel2_l1c.cube.protocol import TileYearWriter
from sentinel2_l1c.cube.schema import group_path
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.formats.zarr import ZarrFormat
from sentinel2_l1c.index_safe import (
    BucketFiles,
    IndexOptions,
    IndexSummary,
    index_tile_years,
    indexed_products,
)
from sentinel2_l1c.intake_cdse_s3 import (
    IntakeSummary,
    ProductDownloader,
    ProductSource,
    Window,
    search_products,
    utc_time,
)
from sentinel2_l1c.run.cli import (  # fmt: skip
    add_engine_arguments,
    add_lock_wait,
    dask_engine,
    new_parser,
    run_cli,
)
from sentinel2_l1c.s2.bands import BandGroup
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.s2.names import SafeName
from sentinel2_l1c.s2.product import PRODUCT_METADATA, TILE_METADATA, SafeProduct
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.clients import s3_client
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.places import BucketPlace, Place
from sentinel2_l1c.storage.s3_account import S3Account

log = logging.getLogger(__name__)


#: The default scratch folder's name, beside the temp storage's SAFE folder (not in it: SAFE
#: staged there is not ingest's to delete)
SCRATCH = "sentinel2_l1c_ingest_scratch"


def default_scratch(locations: Locations) -> Path:
    return storages.TEMP.path(locations, formats.SAFE).parent / SCRATCH


def needed_for_decoding(relative: PurePosixPath) -> bool:
    """The files of a SAFE product a conversion reads: its metadata and band images."""
    name = relative.name
    if name in (PRODUCT_METADATA, TILE_METADATA):
        return True
    return relative.parent.name == "IMG_DATA" and name.endswith(".jp2") and "_TCI" not in name


@dataclass(frozen=True)
class CdseProducts:
    """The products to take from CDSE: tiles and a time window, found in its STAC API and read
    from its S3 through one client of ``connections`` pooled connections."""

    tiles: tuple[str, ...]
    window: Window
    stac_url: str
    account: S3Account  # CDSE's; its retry policy covers the STAC calls too
    connections: int = 4

    def __post_init__(self) -> None:
        if self.connections < 1:
            raise ConfigError(f"connections must be at least 1, got {self.connections}")
        if self.window[1] <= self.window[0]:
            raise ConfigError(
                f"--time-end {self.window[1].isoformat()} must be after --time-start "
                f"{self.window[0].isoformat()}"
            )

    @property
    def years(self) -> tuple[int, ...]:
        start, end = self.window
        return tuple(range(start.year, (end - timedelta(microseconds=1)).year + 1))

    def search(self, summary: IngestSummary) -> list[ProductSource]:
        found = []
        for tile in self.tiles:
            found += search_products(self.stac_url, tile, [self.window], self.account.retry)
        summary.found += len(found)
        return found


@dataclass(frozen=True, kw_only=True)
class IngestOptions(CdseProducts):
    #: the target, format, layout, engine and lock wait; ``safe_root`` is the scratch folder
    zarr: ZarrOptions
    keep_safe: bool = False


@dataclass(frozen=True, kw_only=True)
class IndexInPlaceOptions(CdseProducts):
    """``--format safe_virtual``: manifests in the folder ``target`` of the files in CDSE's
    bucket ``bucket`` (where the format's readers look for them)."""

    target: Path
    bucket: str
    lock_wait: float = 0.0


@dataclass
class IngestSummary:
    found: int = 0
    already: int = 0  # in the target before this run
    appended: int = 0
    #: the downloads (their ``seconds``: in the prefetching thread, overlapping conversion)
    fetched: IntakeSummary = field(default_factory=IntakeSummary)
    late: list[str] = field(default_factory=list)  # older than the target's last date
    reprocessed: list[str] = field(default_factory=list)  # of a date the target holds
    held_back: list[str] = field(default_factory=list)  # later than a missing product
    #: the conversion's, or for ``safe_virtual`` the indexing's
    made: ZarrSummary | IndexSummary = field(default_factory=lambda: ZarrSummary(Path()))
    seconds: float = 0.0

    @property
    def missing(self) -> list[str]:
        return self.fetched.missing

    @property
    def incomplete(self) -> list[str]:
        return self.fetched.incomplete

    def lines(self) -> list[str]:
        fetched = self.fetched
        text = [
            f"{self.found} products found, {self.already} already in the target, "
            f"{self.appended} appended; {len(self.missing)} missing from S3, "
            f"{len(self.incomplete)} not complete in S3, {len(self.late)} older than the "
            f"target's last date, {len(self.reprocessed)} reprocessed versions of stored dates, "
            f"{len(self.held_back)} held back behind a missing one",
            f"downloaded {fetched.downloaded} products, {fetched.bytes / 1e6:.1f} MB in "
            f"{fetched.seconds:.1f} s, {fetched.requests} requests to CDSE",
        ]
        text += self.made.lines()
        text.append(f"ingest took {self.seconds:.1f} s")
        text += [f"missing from S3: {name}" for name in self.missing]
        text += [f"not complete in S3: {line}" for line in self.incomplete]
        text += [f"not appended (older than the target's last date): {name}" for name in self.late]
        return text


# --------------------------------------------------------------------------------------
# What the target holds
# --------------------------------------------------------------------------------------


def tile_year_dates(
    root: zarr.Group | None,
    tile: str,
    year: int,
    band_groups: Sequence[BandGroup],
    written: ZarrFormat | None = None,
) -> list[StoredDate]:
    """The dates every group of a tile-year has committed (the fewest of its groups'); with
    ``written`` (the format), only those whose blocks are all written too."""
    found: list[StoredDate] | None = None
    for band_group in band_groups:
        path = group_path(tile, year, band_group)
        dates = stored_dates(root[path]) if root is not None and path in root else []
        if dates and written is not None:
            dates = dates[: written_dates(root[path], band_group, written.sharded)]
        if found is None or len(dates) < len(found):
            found = dates
    return found or []


def stored_name(date: StoredDate) -> SafeName:
    return SafeName.parse(f"{date.product_id}.SAFE")


@dataclass(frozen=True)
class TileYearWork:
    """A tile-year's products to fetch and append."""

    tile: str
    year: int
    sources: list[ProductSource]  # to append
    stored: list[ProductSource]  # already in the target (a killed run's scratch copies)


def new_sources(
    sources: Sequence[ProductSource], stored: Sequence[StoredDate], summary: IngestSummary
) -> list[ProductSource]:
    """The products of a tile-year to append: not stored, not a reprocessing of a stored
    date, not older than the last stored date."""
    names = [stored_name(date) for date in stored]
    ids = {date.product_id for date in stored}
    datatakes = {name.datatake_key for name in names}
    last = max((name.datatake_start for name in names), default=None)
    chosen = []
    for source in sources:
        name = source.name
        if name.name.removesuffix(".SAFE") in ids:
            summary.already += 1
        elif name.datatake_key in datatakes:
            log.warning("%s reprocesses a date the target holds; the stored one stays", name.name)
            summary.reprocessed.append(name.name)
        elif last is not None and name.datatake_start < last:
            log.warning(
                "%s is older than the target's last date of its tile-year; not appended "
                "(rebuild the tile-year to include it)",
                name.name,
            )
            summary.late.append(name.name)
        else:
            chosen.append(source)
    return chosen


# --------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------


def check_plan(options: IngestOptions, quotas: plan.Quotas, over_quota: bool) -> None:
    """Refuse in one line a run whose plan (full-size tile-years of its tiles and years)
    exceeds a quota, unless told to go on."""
    fmt, layout = options.zarr.fmt, options.zarr.new_layout
    cube = plan.Cube(options.tiles, options.years, fmt, layout)
    exceeded = plan.make_plan(cube, quotas=quotas).exceeded()
    if exceeded and not over_quota:
        raise ConfigError(
            f"the plan of this ingest ({len(options.tiles)} tiles × {len(options.years)} years "
            f"of {fmt.name}:{layout.name}) is over quota: {'; '.join(exceeded)} "
            "(python -m sentinel2_l1c.plan shows it; --over-quota goes on)"
        )


#: Dates of one round of a tile-year's append: the next round downloads while one converts.
#: A round is also at least the layout's longest time chunk, so that no round rewrites a
#: chunk the one before wrote.
ROUND_DATES = 4
#: Threads per core writing to a bucket (``--workers`` default there)
UPLOAD_OVERLAP = 2


def run_ingest(options: IngestOptions, show_progress: bool = True) -> IngestSummary:
    """Search, download what is new, append it tile-year by tile-year in rounds of dates;
    the next round downloads while one converts."""
    client = s3_client(options.account, options.connections)  # config errors before any call
    started = time.perf_counter()
    summary = IngestSummary(made=ZarrSummary(options.zarr.target))
    retry = options.account.retry
    work = []
    writers = TileYearWriters(options.zarr)
    for (tile, year), members in sorted(by_tile_year(options.search(summary)).items()):
        root, zarr_options = writers.read_root(), options.zarr
        stored = tile_year_dates(root, tile, year, zarr_options.band_groups, zarr_options.fmt)
        new = new_sources(members, stored, summary)
        work.append(TileYearWork(tile, year, new, [s for s in members if s not in new]))
    downloader = ProductDownloader(
        client, options.zarr.safe_root, options.connections, retry, only=needed_for_decoding
    )

    def download(sources: list[ProductSource]) -> None:
        """In the prefetching thread only, so it alone counts the downloads."""
        begin = time.perf_counter()
        downloader.download_all(sources, summary.fetched.record)
        summary.fetched.seconds += time.perf_counter() - begin

    size = max(ROUND_DATES, *(t.time for t in options.zarr.new_layout.tilings))
    flat = [(item, batch) for item in work for batch in rounds(item, size)]
    with ThreadPoolExecutor(1) as prefetch, options.zarr.engine.running(), ExitStack() as stack:
        downloads = [prefetch.submit(download, flat[0][1])] if flat else []
        appending: TileYearAppend | None = None
        for number, (item, batch) in enumerate(flat):
            downloads[number].result()
            if number + 1 < len(flat):  # at most two rounds in the scratch folder
                downloads.append(prefetch.submit(download, flat[number + 1][1]))
            begin = time.perf_counter()
            if appending is None or appending.item is not item:
                stack.close()  # the tile-year before: committed
                appending = stack.enter_context(
                    TileYearAppend(item, downloader, writers, options, summary, show_progress)
                )
            appending.add(batch)
            summary.made.seconds += time.perf_counter() - begin
        begin = time.perf_counter()
        stack.close()
        summary.made.seconds += time.perf_counter() - begin
    summary.made.catalogued = writers.write_catalogue()
    summary.fetched.requests = downloader.requests
    summary.seconds = time.perf_counter() - started
    return summary


def by_tile_year(sources: Sequence[ProductSource]) -> dict[tuple[str, int], list[ProductSource]]:
    grouped: dict[tuple[str, int], list[ProductSource]] = defaultdict(list)
    for source in sources:
        grouped[source.name.tile, source.name.datatake_start.year].append(source)
    return grouped


def rounds(item: TileYearWork, size: int) -> list[list[ProductSource]]:
    """A tile-year's new products in rounds of ``size``, in time order (one empty round when
    there are none: what a killed run left is still finished)."""
    return [item.sources[i : i + size] for i in range(0, len(item.sources), size)] or [[]]


class TileYearAppend:
    """One tile-year's append, round by round under its writer lock; on a clean exit, one
    commit, then the scratch copies of what was committed are deleted."""

    def __init__(
        self,
        item: TileYearWork,
        downloader: ProductDownloader,
        writers: TileYearWriters,
        options: IngestOptions,
        summary: IngestSummary,
        show_progress: bool,
    ) -> None:
        self.item, self.downloader, self.writers = item, downloader, writers
        self.options, self.summary, self.show_progress = options, summary, show_progress
        self.stack = ExitStack()
        self.writes: TileYearWriter | None = None
        self.products: dict[str, SafeProduct] = {}  # downloaded, to be in the commit
        self.added: list[str] = []
        self.waiting: datetime | None = None  # the first missing product's time

    def __enter__(self) -> TileYearAppend:
        if not self.options.keep_safe:  # left by a run killed after its commit
            for source in self.item.stored:
                shutil.rmtree(self.downloader.target(source), ignore_errors=True)
        return self

    def add(self, sources: list[ProductSource]) -> None:
        """Append a round's downloaded products, unless a missing one comes before them."""
        item, target = self.item, self.downloader.target
        absent = [s.name for s in sources if not target(s).is_dir()]
        if absent and self.waiting is None:
            first = min(absent, key=lambda name: name.datatake_start)
            self.waiting = first.datatake_start
            held = [s.name.name for s in item.sources if s.name.datatake_start > self.waiting]
            self.summary.held_back += held
            if held:
                log.warning(
                    "%s %d: %d later products wait for %s (dates are appended in order)",
                    item.tile, item.year, len(held), first.name,
                )  # fmt: skip
        arrived = [
            SafeProduct.from_path(target(s))
            for s in sources
            if target(s).is_dir() and (self.waiting is None or s.name.datatake_start < self.waiting)
        ]
        if not arrived:
            return
        self.products.update((p.product_id, p) for p in arrived)
        if self.writes is None:
            self.writes = self.stack.enter_context(self.writers.tile_year(item.tile, item.year))
        band_groups = self.options.zarr.band_groups
        stored = tile_year_dates(self.writes.root, item.tile, item.year, band_groups)
        ids = {date.product_id for date in stored}
        new = sorted(
            (p for i, p in self.products.items() if i not in ids),
            key=lambda p: (p.start_time, p.name.name),
        )
        dates: list[Date] = [self.products.get(d.product_id, d) for d in stored] + new
        self.summary.made.products += len(new)
        self.added += convert_tile_year(
            self.writes, (item.tile, item.year), dates, self.options.zarr, self.summary.made,
            self.show_progress, commit=False,
        )  # fmt: skip

    def __exit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        with self.stack:  # the writer lock is released whatever happens
            if kind is not None or self.writes is None:
                return
            name, added = f"{self.item.tile} {self.item.year}", self.added
            message = (
                f"{name}: {len(added)} products added ({added[0]} … {added[-1]})"
                if added
                else f"{name}: blocks of {len(self.products)} products completed"
            )
            commit_tile_year(self.writes, message, added, self.summary.made)
        self.summary.appended += len(self.added)
        if not self.options.keep_safe:
            for product in self.products.values():
                shutil.rmtree(product.path)


# --------------------------------------------------------------------------------------
# Indexing in place (safe_virtual)
# --------------------------------------------------------------------------------------

#: Beside the manifests, the metadata files of the products they index (a few hundred kB
#: each): a tile-year's manifest is made again from them when a run adds products to it.
INDEXED_PRODUCTS = ".products"


def metadata_only(relative: PurePosixPath) -> bool:
    return relative.name in (PRODUCT_METADATA, TILE_METADATA)


def check_keys(sources: Sequence[ProductSource], bucket: str) -> None:
    """The manifests name each band file by its path under the SAFE root, which its readers
    find in ``bucket``: a product elsewhere cannot be indexed in place."""
    for source in sources:
        expected = source.name.cdse_path.as_posix()
        if (source.bucket, source.prefix) != (bucket, expected):
            raise InputDataError(
                f"STAC lists {source.name.name} at s3://{source.bucket}/{source.prefix}, not at "
                f"s3://{bucket}/{expected} where the safe_virtual readers look for it "
                "($DSLAB_S2L1C_CDSE_SAFE_BUCKET)"
            )


def index_in_place(options: IndexInPlaceOptions, show_progress: bool = True) -> IngestSummary:
    """Index the products where they are in CDSE: fetch only their metadata files (into
    ``INDEXED_PRODUCTS`` beside the manifests), read each band file's JPEG 2000 index in byte
    ranges, and write the manifest of every tile-year that gained products. No pixel is
    copied; a reprocessed product replaces its datatake's older one (as intake keeps them)."""
    client = s3_client(options.account, options.connections)  # config errors before any call
    started = time.perf_counter()
    made = IndexSummary(options.target)
    summary = IngestSummary(made=made)
    sources = options.search(summary)
    check_keys(sources, options.bucket)
    mirror = options.target / INDEXED_PRODUCTS
    retry = options.account.retry
    downloader = ProductDownloader(
        client, mirror, options.connections, retry, only=needed_for_decoding, fetch=metadata_only
    )
    begin = time.perf_counter()
    downloader.download_all(sources, summary.fetched.record)
    summary.fetched.seconds = time.perf_counter() - begin
    groups = {
        (tile, year): list_products(mirror, tile, year, band_files=False) if mirror.is_dir() else []
        for tile, year in by_tile_year(sources)
    }
    groups = {key: members for key, members in groups.items() if members}
    indexed = {key: set(indexed_products(options.target, *key)) for key in groups}
    for key, members in groups.items():
        ids = {member.product_id for member in members}
        summary.already += len(ids & indexed[key])
        summary.appended += len(ids - indexed[key])
    made.products = sum(map(len, groups.values()))
    files = BucketFiles(client, options.bucket, retry, [p for m in groups.values() for p in m])
    with ThreadPoolExecutor(options.connections) as pool:
        where = IndexOptions(mirror, options.target, lock_wait=options.lock_wait)
        index_tile_years(groups, files, options.target, where, pool, made, show_progress)
    summary.fetched.requests = downloader.requests + files.requests
    made.seconds = time.perf_counter() - started - summary.fetched.seconds
    summary.seconds = time.perf_counter() - started
    return summary


# --------------------------------------------------------------------------------------
# Closing a year
# --------------------------------------------------------------------------------------


def consolidate(
    source: Place,
    options: ZarrOptions,
    tiles: Sequence[str],
    years: Sequence[int],
    show_progress: bool = True,
) -> ZarrSummary:
    """Rewrite closed tile-years of ``source`` (appended one date per chunk) in the layout of
    ``options`` at its target, from the stored pixels: into another store, or an icechunk
    repository in place, one commit per tile-year (readers see the old layout until then)."""
    in_place = options.target == source
    if in_place and not options.fmt.transactional:
        raise ConfigError(
            f"{source}: {options.fmt.name} is consolidated into another store "
            "(--consolidate-into), as rewriting it in place would not be atomic; icechunk is "
            "consolidated in place in one commit per tile-year"
        )
    summary = ZarrSummary(options.target)
    started = time.perf_counter()
    reader = TileYearWriters(replace(options, target=source))
    writers = reader if in_place else TileYearWriters(options)
    with options.engine.running():
        for tile in tiles:
            for year in years:
                root = reader.read_root()  # the last commit, before this tile-year's
                dates = tile_year_dates(root, tile, year, options.band_groups, options.fmt)
                everything = tile_year_dates(root, tile, year, options.band_groups)
                if len(dates) < len(everything):
                    raise ConfigError(
                        f"{source}: {tile} {year} has dates whose blocks are not all written; "
                        "run ingest again to finish them before consolidating"
                    )
                if not dates:
                    log.warning("%s holds no dates of %s %d; nothing to consolidate", source, tile, year)  # fmt: skip
                    continue
                with writers.tile_year(tile, year) as writes:
                    convert_tile_year(
                        writes, (tile, year), dates, replace(options, overwrite=in_place),
                        summary, show_progress, source=root,
                    )  # fmt: skip
                summary.products += len(dates)
    summary.catalogued = writers.write_catalogue()
    summary.seconds = time.perf_counter() - started
    return summary


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Ingest Sentinel-2 L1C products from CDSE (STAC search, S3 download of what decoding "
        "needs) straight into a Zarr format on S3 or a folder, appending new dates.",
        prog="python -m sentinel2_l1c.ingest",
    )
    parser.add_argument(
        "--days", type=float, default=None,
        help="The window is the last DAYS days up to now (instead of --time-start/--time-end).",
    )  # fmt: skip
    parser.add_argument("--time-start", type=utc_time, default=None, help="Start time (UTC), included.")  # fmt: skip
    parser.add_argument("--time-end", type=utc_time, default=None, help="End time (UTC), excluded (default: now).")  # fmt: skip
    parser.add_argument(
        "--format", default=formats.ZARR_SHARDED.name,
        choices=[*zarr_formats(), formats.SAFE_VIRTUAL.name],
        help="The format to write; safe_virtual indexes the products where they are in CDSE "
        "and writes only its manifests (zero copy; in the cdse storage's folder "
        "$DSLAB_S2L1C_CDSE_SAFE_VIRTUAL_PATH or --target FOLDER).",
    )  # fmt: skip
    parser.add_argument(
        "--layout", metavar="NAME", default=None,
        help="Layout of new groups (default: the format's with one date per chunk, "
        f"NAME{zarr_layouts.APPEND}: an appended date writes only its own objects). An "
        "existing group goes on with its own.",
    )  # fmt: skip
    parser.add_argument(
        "--storage", default=None,
        choices=[s.name for s in storages.STORAGES.values() if s.holds(formats.ZARR_SHARDED) and s is not storages.CDSE],
        help="Where the format's store is (its place from the configuration; default s3).",
    )  # fmt: skip
    plan.add_tiles_argument(parser, None)
    parser.add_argument(
        "--target", default=None,
        help="The store instead of --storage's: a folder or s3://BUCKET.",
    )  # fmt: skip
    parser.add_argument(
        "--source", type=Path, default=None,
        help=f"Scratch folder for the downloaded products (default: {SCRATCH} beside the temp "
        "storage's SAFE folder, $DSLAB_S2L1C_TEMP_SAFE_PATH; shared by all workers with "
        "--cluster slurm).",
    )  # fmt: skip
    add_engine_arguments(parser, f"CPU count; writing to a bucket, {UPLOAD_OVERLAP}× that")
    parser.add_argument(
        "--keep-safe", action="store_true",
        help="Keep the downloaded products in the scratch folder.",
    )  # fmt: skip
    parser.add_argument(
        "--connections", type=int, default=None,
        help="Concurrent connections to CDSE (default: $DSLAB_S2L1C_CDSE_CONNECTIONS or 4, "
        "CDSE's quota).",
    )  # fmt: skip
    add_lock_wait(parser)
    plan.add_quota_arguments(parser)
    parser.add_argument(
        "--over-quota", action="store_true",
        help="Go on although the run's plan exceeds a quota.",
    )  # fmt: skip
    parser.add_argument(
        "--consolidate", nargs="+", type=int, default=None, metavar="YEAR",
        help="Instead of ingesting: rewrite these closed years of the tiles in the format's "
        "read layout (--layout, default the format's own) from the stored pixels, in place "
        "for icechunk (one commit per tile-year), else into --consolidate-into.",
    )  # fmt: skip
    parser.add_argument(
        "--consolidate-into", default=None, metavar="FOLDER|s3://BUCKET",
        help="Where --consolidate writes (default: the same icechunk repository).",
    )  # fmt: skip
    return parser


def window_of(args: argparse.Namespace, now: datetime) -> Window:
    if args.days is not None:
        if args.time_start is not None:
            raise ConfigError("give --days or --time-start, not both")
        if args.days <= 0:
            raise ConfigError(f"--days must be positive, got {args.days:g}")
        end = args.time_end or now
        return end - timedelta(days=args.days), end
    if args.time_start is None:
        raise ConfigError("give the window: --days DAYS, or --time-start (and --time-end)")
    return args.time_start, args.time_end or now


def in_place_options(
    locations: Locations,
    tiles: tuple[str, ...],
    window: Window,
    target: Path | None = None,
    connections: int | None = None,
    lock_wait: float = 0.0,
) -> IndexInPlaceOptions:
    """Index the archive in place into ``target`` (default: the cdse storage's manifests)."""
    folder = target or storages.CDSE.place(locations, formats.SAFE_VIRTUAL).local_path()
    assert folder is not None, "the cdse storage keeps manifests in a folder"
    archive = storages.CDSE.place(locations, formats.SAFE)
    assert isinstance(archive, BucketPlace)
    return IndexInPlaceOptions(
        tiles=tiles,
        window=window,
        stac_url=locations.stac_url,
        account=locations.cdse_account,
        connections=locations.cdse_connections if connections is None else connections,
        target=folder,
        bucket=archive.bucket,
        lock_wait=lock_wait,
    )


def _in_place_options(
    args: argparse.Namespace, locations: Locations, tiles: tuple[str, ...]
) -> IndexInPlaceOptions:
    if args.consolidate is not None or args.storage is not None:
        given = "--consolidate" if args.consolidate is not None else f"--storage {args.storage}"
        raise ConfigError(
            f"safe_virtual is indexed where the products are, in CDSE: {given} does not apply "
            "(--target FOLDER puts its manifests elsewhere)"
        )
    if args.target is not None and args.target.startswith("s3://"):
        raise ConfigError(f"{args.target}: safe_virtual's manifests are written to a folder")
    target = None if args.target is None else Path(args.target)
    window = window_of(args, datetime.now(UTC))
    return in_place_options(locations, tiles, window, target, args.connections, args.lock_wait)


def _run(args: argparse.Namespace) -> int:
    locations = Locations.from_environment()
    if args.tiles is None:
        raise ConfigError("give the tiles: --tiles 35VLH … (or a file of tile ids, or finland)")
    tiles = plan.parse_tiles(args.tiles)
    if args.format == formats.SAFE_VIRTUAL.name:
        summary = index_in_place(_in_place_options(args, locations, tiles), not args.quiet)
        return _report(summary)
    fmt = zarr_formats()[args.format]
    default = fmt.layout if args.consolidate else fmt.layout + zarr_layouts.APPEND
    layout = zarr_layouts.get(args.layout or default)
    window = None if args.consolidate else window_of(args, datetime.now(UTC))
    target = (
        storages.place_at(args.target, locations)
        if args.target is not None
        else storages.get(args.storage or storages.S3.name).place(locations, fmt)
    )
    engine = dask_engine(args, os.environ)
    if args.workers is None and engine.cluster == "threads" and target.local_path() is None:
        # a task holds a core while it decodes and waits while its shards upload
        engine = replace(engine, workers=UPLOAD_OVERLAP * (os.cpu_count() or 1))
    if window is None:
        into = target
        if args.consolidate_into is not None:
            into = storages.place_at(args.consolidate_into, locations)
        options = ZarrOptions(Path(), into, fmt, layout, engine=engine, lock_wait=args.lock_wait)
        for line in consolidate(target, options, tiles, args.consolidate, not args.quiet).lines():
            print(line)
        return 0
    options = IngestOptions(
        tiles=tiles,
        window=window,
        zarr=ZarrOptions(
            safe_root=args.source or default_scratch(locations),
            target=target,
            fmt=fmt,
            layout=layout,
            engine=engine,
            lock_wait=args.lock_wait,
        ),
        stac_url=locations.stac_url,
        account=locations.cdse_account,
        connections=locations.cdse_connections if args.connections is None else args.connections,
        keep_safe=args.keep_safe,
    )
    if args.show_job_script:
        print(engine.slurm.job_script())
        return 0
    check_plan(options, plan.quotas_from(args, os.environ), args.over_quota)
    return _report(run_ingest(options, show_progress=not args.quiet))


def _report(summary: IngestSummary) -> int:
    """Print the summary; exit code 1 when products listed in STAC were not in S3."""
    for line in summary.lines():
        print(line)
    if summary.missing or summary.incomplete:
        print(
            f"error: {len(summary.missing) + len(summary.incomplete)} product(s) listed in STAC "
            "are missing or not complete in S3; a later run appends them once they are",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
