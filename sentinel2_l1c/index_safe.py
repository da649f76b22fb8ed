"""Index SAFE products into a virtual Zarr (format ``safe_virtual``): no pixel is copied.

For each tile-year, every band file's JPEG 2000 tiles are indexed (``jp2.index``) and become
the chunks of the Zarr format's groups ``/{tile}/{year}/{band_group}``: ``data`` (time,
band, y, x) chunked one JP2 tile of one band of one date, decoded by the ``jp2.codec`` codec,
with the same coordinates and attributes as the converted Zarr. The manifest of a tile-year
(``jp2.virtual_store``) is written whole under a temporary name and renamed, so it is either the
previous one or the new one. A rerun with new products indexes only their files and keeps
every other reference (and the version it recorded of that file); one with nothing new changes
nothing. The band files are read where they are: a local SAFE root (``FolderFiles``) or, for
``ingest --format safe_virtual``, CDSE's bucket in byte ranges (``BucketFiles``).

    python -m sentinel2_l1c.index_safe [--tiles 35VLH] [--years 2024]
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import zarr
from zarr.storage import MemoryStore

from sentinel2_l1c import formats
from sentinel2_l1c.cube.codecs import CODECS
from sentinel2_l1c.cube.layouts import GroupLayout
from sentinel2_l1c.cube.protocol import (
    committed_in,
    mark_complete,
    new_group,
    set_times,
)
from sentinel2_l1c.cube.schema import group_path
from sentinel2_l1c.cube.writer_lock import WriterLock
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.formats.safe import band_files
from sentinel2_l1c.jp2.codec import Jp2TileCodec
from sentinel2_l1c.jp2.index import CodestreamError, Jp2Index, index_file
from sentinel2_l1c.jp2.packets import CodingStyle, prefixes
from sentinel2_l1c.jp2.virtual_store import (
    EPOCH,
    FileVersion,
    Manifest,
    Reference,
    manifest_name,
)
from sentinel2_l1c.run.cli import (
    add_lock_wait,
    add_selection_arguments,
    add_switch,
    new_parser,
    run_cli,
)
from sentinel2_l1c.run.progress import progress_bar
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.s2.listing import Selection, tile_years
from sentinel2_l1c.s2.manifest import MANIFEST, Listed, parse_manifest
from sentinel2_l1c.s2.product import Grid, SafeProduct
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.retry import RetryPolicy, call_with_retries

LAYOUT = "jp2_tiles"  # the named layout of a virtual group: one chunk per JP2 tile
THREADS = 8  # files indexed at once


@dataclass(frozen=True)
class IndexOptions:
    safe_root: Path
    target: Path
    selection: Selection = Selection()
    overwrite: bool = False
    lock_wait: float = 0.0  # seconds to wait for another writer of a tile-year


@dataclass
class IndexSummary:
    target: Path
    products: int = 0
    manifests_written: int = 0
    files_indexed: int = 0
    files_kept: int = 0  # references taken over from the previous manifest
    reads: int = 0
    references: int = 0
    manifest_bytes: int = 0
    indexed_bytes: int = 0  # of the band files the manifests reference
    seconds: float = 0.0

    def lines(self) -> list[str]:
        share = self.manifest_bytes / self.indexed_bytes if self.indexed_bytes else 0.0
        return [
            f"{self.target}: {self.manifests_written} manifests written for {self.products} "
            f"products; {self.files_indexed} band files indexed in {self.reads} reads, "
            f"{self.files_kept} kept; {self.references} references, "
            f"{self.manifest_bytes / 1e6:.2f} MB ({share:.4%} of the {self.indexed_bytes / 1e9:.2f} "
            f"GB indexed) in {self.seconds:.1f} s"
        ]


def index_band_file(path: Path, use_tlm: bool = True) -> Jp2Index:
    """Index one local JP2 file; InputDataError naming it when it cannot be indexed."""
    try:
        with path.open("rb") as file:
            size = os.fstat(file.fileno()).st_size
            read = lambda offset, length: os.pread(file.fileno(), length, offset)  # noqa: E731
            return index_file(read, size, use_tlm)
    except CodestreamError as err:
        raise InputDataError(f"{path}: cannot index JPEG 2000 tiles: {err}") from err


@dataclass(frozen=True)
class FolderFiles:
    """Band files under a local SAFE root."""

    root: Path

    def __str__(self) -> str:
        return str(self.root)

    def size(self, name: str) -> int:
        return (self.root / name).stat().st_size

    def index(self, name: str) -> Jp2Index:
        return index_band_file(self.root / name)

    def version(self, name: str, md5: str | None) -> FileVersion:
        stat = (self.root / name).stat()
        return FileVersion(stat.st_size, stat.st_mtime_ns, md5)


class BucketFiles:
    """Band files where they are in a bucket (CDSE's ``eodata``), read in byte ranges: their
    keys are their paths under the SAFE root. Each file's size and MD5 come from its
    product's ``manifest.safe``; every answer's object size and ETag are checked against them,
    so a file replaced in the archive is refused, not indexed."""

    def __init__(
        self, client: Any, bucket: str, retry: RetryPolicy, products: Sequence[SafeProduct]
    ) -> None:
        self.client, self.bucket, self.retry = client, bucket, retry
        self.listed = {name: entry for p in products for name, entry in _listed(p).items()}
        self.modified: dict[str, int] = {}  # name → LastModified (ns) of the answers
        self.requests = 0
        self._lock = threading.Lock()

    def __str__(self) -> str:
        return f"s3://{self.bucket}"

    def size(self, name: str) -> int:
        return self._entry(name).size

    def _entry(self, name: str) -> Listed:
        if name not in self.listed:
            raise InputDataError(f"s3://{self.bucket}/{name}: not in its product's {MANIFEST}")
        return self.listed[name]

    def index(self, name: str) -> Jp2Index:
        entry = self._entry(name)
        try:
            return index_file(lambda offset, length: self._read(name, offset, length), entry.size)
        except CodestreamError as err:
            raise InputDataError(
                f"s3://{self.bucket}/{name}: cannot index JPEG 2000 tiles: {err}"
            ) from err

    def _read(self, name: str, offset: int, length: int) -> bytes:
        where = f"s3://{self.bucket}/{name}"

        def get() -> dict[str, Any]:
            with self._lock:
                self.requests += 1
            ranged = f"bytes={offset}-{offset + length - 1}"
            answer = self.client.get_object(Bucket=self.bucket, Key=name, Range=ranged)
            return {**answer, "Body": answer["Body"].read()}

        answer = call_with_retries(f"GET {where}", get, self.retry)
        entry = self.listed[name]
        size = int(answer["ContentRange"].rpartition("/")[2])
        version = FileVersion(entry.size, 0, entry.md5)
        meta = {"size": size, "e_tag": answer.get("ETag")}
        problem = version.changed(meta, local=False)
        if problem is not None:
            raise InputDataError(f"{where}: not the file its {MANIFEST} lists ({problem})")
        modified = answer["LastModified"]
        self.modified[name] = (modified - EPOCH) // timedelta(microseconds=1) * 1000
        return answer["Body"]

    def version(self, name: str, md5: str | None) -> FileVersion:
        return FileVersion(self.size(name), self.modified.get(name, 0), md5)


def _listed(product: SafeProduct) -> dict[str, Listed]:
    """A product's files as its ``manifest.safe`` lists them, by path under the SAFE root
    (empty without one)."""
    manifest = product.path / MANIFEST
    if not manifest.is_file():
        return {}
    folder = product.name.cdse_path.as_posix()
    listed = parse_manifest(manifest.read_bytes(), str(manifest))
    return {f"{folder}/{inside}": entry for inside, entry in listed.items()}


BandFiles = FolderFiles | BucketFiles


def _old_references(previous: Manifest | None, path: str) -> dict[str, dict[str, Reference]]:
    """file → chunk position (``row/col``) → reference, of a group's previous manifest."""
    found: dict[str, dict[str, Reference]] = {}
    if previous is None:
        return found
    prefix = f"{path}/data/c/"
    for key, reference in previous.references.items():
        if key.startswith(prefix):
            position = "/".join(key.rsplit("/", 2)[-2:])
            found.setdefault(reference.path, {})[position] = reference
    return found


def _previous_header(previous: Manifest | None, path: str) -> bytes | None:
    raw = None if previous is None else previous.raw.get(f"{path}/data/zarr.json")
    if raw is None:
        return None
    codec = json.loads(raw)["codecs"][0]
    return Jp2TileCodec.from_dict(codec).header


def _tile_grid(products: Sequence[SafeProduct], band_group: BandGroup) -> Grid:
    """The band group's grid, which every product of a tile-year must share."""
    first = products[0]
    grid = first.grid(band_group.resolution)
    for product in products:
        if product.grid(band_group.resolution) != grid or product.crs != first.crs:
            raise InputDataError(f"{product.path}: grid differs from {first.path} of the same tile")
    return grid


def _checked_header(
    indexes: dict[str, Jp2Index], header: bytes | None, grid: Grid, band_group: BandGroup,
    files: BandFiles,
) -> bytes:  # fmt: skip
    """The main header the group's files share (``header``: the previous manifest's), checked
    against every newly indexed file: one codec configuration per array, chunks that start at
    the image's corner, the tile's grid."""
    for name, index in indexes.items():
        header = header or index.header.template
        siz = index.header.siz
        if index.header.template != header:
            problem = (
                f"its JPEG 2000 main header differs from the other {band_group.name} files' "
                "(one codec configuration per array)"
            )
        elif (siz.x_offset, siz.y_offset, siz.tile_x_offset, siz.tile_y_offset) != (0, 0, 0, 0):
            problem = (
                "image or tiles offset on the JPEG 2000 reference grid (chunks must start at "
                "the image's corner)"
            )
        elif siz.image_shape != grid.shape:
            problem = f"{siz.image_shape} pixels, the tile's grid has {grid.shape}"
        else:
            continue
        raise InputDataError(f"{files}/{name}: {problem}")
    assert header is not None
    return header


def _group(
    root: zarr.Group,
    products: Sequence[SafeProduct],
    band_group: BandGroup,
    files: BandFiles,
    previous: Manifest | None,
    pool: ThreadPoolExecutor,
    summary: IndexSummary,
) -> dict[str, Reference]:
    """Index the group's new band files, write its metadata into ``root`` and return its chunk
    references (the previous manifest's for files it already indexed)."""
    first = products[0]
    path = group_path(first.tile, first.year, band_group)
    grid = _tile_grid(products, band_group)
    old = _old_references(previous, path)
    names = [name for product in products for name in band_files(product, band_group)]
    new = [name for name in names if name not in old]
    indexes = dict(zip(new, pool.map(files.index, new), strict=True))
    summary.files_indexed += len(new)
    summary.files_kept += len(names) - len(new)
    summary.reads += sum(index.reads for index in indexes.values())
    summary.indexed_bytes += sum(files.size(name) for name in names)
    previous_header = _previous_header(previous, path) if old else None
    header = _checked_header(indexes, previous_header, grid, band_group, files)
    if indexes:
        siz = next(iter(indexes.values())).header.siz
        tile_shape = (siz.tile_height, siz.tile_width)
    else:
        tile_shape = _previous_tile_shape(previous, path)
    layout = GroupLayout(LAYOUT, (1, 1, *tile_shape), max(tile_shape), False, CODECS["zstd5"])
    group = new_group(
        root, path, band_group, grid, first.crs, layout, serializer=Jp2TileCodec(header)
    )
    set_times(group, products)
    mark_complete(group)
    return _references(products, band_group, group["data"], old, indexes)


def _references(
    products: Sequence[SafeProduct],
    band_group: BandGroup,
    data: zarr.Array,
    old: dict[str, dict[str, Reference]],
    indexes: dict[str, Jp2Index],
) -> dict[str, Reference]:
    """Chunk key → reference of every tile of every band file, keys in the array's time order."""
    across = -(-data.shape[-1] // data.chunks[-1])
    references = {}
    for time_index, product in enumerate(products):
        for band_index, name in enumerate(band_files(product, band_group)):
            if name in old:
                tiles = old[name]
            else:
                tiles = {
                    f"{t.index // across}/{t.index % across}": reference
                    for t, reference in zip(
                        indexes[name].tiles, _file_references(name, indexes[name]), strict=True
                    )
                }
            for position, reference in tiles.items():
                row, col = map(int, position.split("/"))
                chunk = data.metadata.encode_chunk_key((time_index, band_index, row, col))
                references[f"{data.path}/{chunk}"] = reference
    return references


def _file_references(name: str, index: Jp2Index) -> list[Reference]:
    """A file's tiles as byte ranges, with where their precincts' packets end when the walk
    read their headers."""
    style = CodingStyle.find(index.header.template)
    return [
        Reference(
            name,
            tile.offset,
            tile.length,
            None
            if tile.header is None
            else prefixes(index.header.siz, style, tile.index, tile.header, tile.length),
        )
        for tile in index.tiles
    ]


def _previous_tile_shape(previous: Manifest | None, path: str) -> tuple[int, int]:
    assert previous is not None
    chunks = json.loads(previous.raw[f"{path}/data/zarr.json"])["chunk_grid"]
    return tuple(chunks["configuration"]["chunk_shape"][2:])  # type: ignore[return-value]


def _current(manifest: Manifest, products: Sequence[SafeProduct]) -> bool:
    """Whether a tile-year's manifest holds exactly ``products`` and all that this version
    writes beside the references (a manifest from before the CRS attributes is made again,
    keeping its references)."""
    first, wanted = products[0], [p.product_id for p in products]
    for band_group in BAND_GROUPS:
        path = group_path(first.tile, first.year, band_group)
        group, data = (
            manifest.metadata(f"{path}/zarr.json"),
            manifest.metadata(f"{path}/data/zarr.json"),
        )
        if group is None or data is None or committed_in(group["attributes"]) != wanted:
            return False
        if "_CRS" not in data["attributes"]:
            return False
    return True


def file_versions(
    products: Sequence[SafeProduct], files: BandFiles, previous: Manifest | None
) -> dict[str, FileVersion]:
    """Every band file's version by path under the SAFE root: as the previous manifest recorded
    it for a file it indexed (its references are that version's), else as it is now with the
    MD5 of its product's manifest.safe (None without one)."""
    versions = {}
    kept = {} if previous is None else previous.versions
    for product in products:
        listed = _listed(product)
        for group in BAND_GROUPS:
            for name in band_files(product, group):
                entry = listed.get(name)
                versions[name] = kept.get(name) or files.version(name, entry and entry.md5)
    return versions


def index_tile_year(
    products: Sequence[SafeProduct],
    files: BandFiles,
    previous: Manifest | None,
    pool: ThreadPoolExecutor,
    summary: IndexSummary,
) -> Manifest:
    """The manifest of one tile-year's products (in time order)."""
    contents: dict = {}
    root = zarr.open_group(MemoryStore(contents), mode="w", zarr_format=3)
    references = {}
    for band_group in BAND_GROUPS:
        references |= _group(root, products, band_group, files, previous, pool, summary)
    raw = {key: value.to_bytes() for key, value in contents.items()}
    return Manifest(raw, references, file_versions(products, files, previous))


def indexed_products(target: Path, tile: str, year: int) -> list[str]:
    """The product ids the tile-year's manifest under ``target`` holds (none without one)."""
    path = target / manifest_name(tile, year)
    if not path.is_file():
        return []
    group = Manifest.from_bytes(path.read_bytes()).metadata(
        f"{group_path(tile, year, BAND_GROUPS[0])}/zarr.json"
    )
    return (group and committed_in(group["attributes"])) or []


def index_tile_years(
    groups: dict[tuple[str, int], list[SafeProduct]],
    files: BandFiles,
    target: Path,
    options: IndexOptions,
    pool: ThreadPoolExecutor,
    summary: IndexSummary,
    show_progress: bool,
) -> None:
    """Write the manifest of every tile-year whose manifest in ``target`` does not hold
    exactly its products, each under the tile-year's writer lock."""
    with progress_bar(len(groups), "tile-years", show_progress) as bar:
        for done, ((tile, year), members) in enumerate(sorted(groups.items())):
            path = target / manifest_name(tile, year)
            manifest = None
            with WriterLock(target, f"{tile}-{year}", options.lock_wait):
                if path.is_file() and not options.overwrite:
                    manifest = Manifest.from_bytes(path.read_bytes())
                if manifest is None or not _current(manifest, members):
                    manifest = index_tile_year(members, files, manifest, pool, summary)
                    manifest.write(path)
                    summary.manifests_written += 1
            summary.references += len(manifest.references)
            summary.manifest_bytes += path.stat().st_size
            bar.update(done + 1)


def index(options: IndexOptions, show_progress: bool = True) -> IndexSummary:
    """Index every selected tile-year under the SAFE root; each manifest lands whole."""
    started = time.perf_counter()
    products = options.selection.products(options.safe_root)
    summary = IndexSummary(options.target, products=len(products))
    files = FolderFiles(options.safe_root)
    with ThreadPoolExecutor(THREADS) as pool:
        index_tile_years(
            tile_years(products), files, options.target, options, pool, summary, show_progress
        )
    summary.seconds = time.perf_counter() - started
    return summary


def make(fmt: formats.Format, source: Path, target: Path, show_progress: bool) -> list[str]:
    """The format registry's hook: index the SAFE products at ``source`` into ``target``."""
    return index(IndexOptions(source, target), show_progress).lines()


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Index the JPEG 2000 tiles of SAFE products into a virtual Zarr (no pixel copied): "
        "one manifest per tile-year, read by the safe_virtual format.",
        prog="python -m sentinel2_l1c.index_safe",
    )
    add_selection_arguments(
        parser,
        "SAFE root (default: $DSLAB_S2L1C_NETWORK_SAFE_PATH).",
        "Manifest root (default: $DSLAB_S2L1C_NETWORK_SAFE_VIRTUAL_PATH).",
    )
    add_switch(parser, "--overwrite", False, "Index every file again instead of resuming.")
    add_lock_wait(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    locations = Locations.from_environment()
    options = IndexOptions(
        safe_root=args.source or storages.NETWORK.path(locations, formats.SAFE),
        target=args.target or storages.NETWORK.path(locations, formats.SAFE_VIRTUAL),
        selection=Selection(tuple(args.tiles or ()), tuple(args.years or ())),
        overwrite=args.overwrite,
        lock_wait=args.lock_wait,
    )
    for line in index(options, show_progress=not args.quiet).lines():
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
