"""Convert the SAFE products of tile-years to Zarr v3 (``--format zarr_sharded``: sharded;
``--format icechunk``: in an icechunk repository).

The arrays are chunked, sharded and compressed per a named layout (``--layout``, default the
format's; ``cube.layouts``), planned from the full product list, then written in blocks of one
time chunk × ``block``² pixels as parallel Dask tasks (on the engine of ``run.dask_engine``),
one tile-year after another: each task decodes only the JP2 windows it needs and writes whole
chunks (or whole shards), so every chunk is written exactly once. In a Zarr folder, progress
is recorded per block in the group's attributes: a rerun after a crash resumes with the
blocks not yet written; a run with new products appends their dates (rewriting at most the
last partial time chunk); a run with nothing new writes nothing. The time axis is committed
only when its arrays agree (``cube.protocol``), so a run killed at any point leaves a state the
rerun repairs, never a group marked complete with missing data. In an icechunk repository a
tile-year is one commit (``icechunk_repo``): a killed run leaves the last commit, and the
rerun redoes the tile-year it was writing.

    python -m sentinel2_l1c.convert_safe_to_zarr [--format zarr_sharded|icechunk]
        [--layout chunks_128_lz4] [--tiles 35VLH …] [--years 2024 …] [--cluster local|slurm]
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import icechunk
import numpy as np
import zarr
from rasterio.windows import Window

from sentinel2_l1c import formats
from sentinel2_l1c.cube import layouts as zarr_layouts
from sentinel2_l1c.cube.icechunk_repo import (
    BRANCH,
    TileYearCommit,
    history,
    open_repository,
    upgrade_repository,
)
from sentinel2_l1c.cube.layouts import GroupLayout, ZarrLayout
from sentinel2_l1c.cube.protocol import (
    Block,
    FolderWriter,
    TileYearWriter,
    arrays_agree,
    blocks,
    committed_products,
    done_blocks,
    is_complete,
    mark_complete,
    new_group,
    record_blocks,
    set_times,
    withdraw,
)
from sentinel2_l1c.cube.schema import add_crs_attributes, check_same_grid, group_path, layout_name
from sentinel2_l1c.cube.writer_lock import WriterLock
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.formats.zarr import ZarrFormat
from sentinel2_l1c.formats.zarr_stac import write_collection
from sentinel2_l1c.run.cli import (
    add_conversion_arguments,
    add_lock_wait,
    dask_engine,
    new_parser,
    run_cli,
)
from sentinel2_l1c.run.dask_engine import DaskEngine
from sentinel2_l1c.run.parallel import compute_in_batches
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.s2.listing import Selection, tile_years
from sentinel2_l1c.s2.product import Grid, SafeProduct, read_band
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.places import FolderPlace, Place

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZarrOptions:
    safe_root: Path
    target: Place  # a folder or a bucket (a Path: a folder)
    fmt: ZarrFormat = formats.ZARR
    #: None: an existing group's own layout, and the format's default for new groups
    layout: ZarrLayout | None = None
    selection: Selection = field(default_factory=Selection)
    engine: DaskEngine = field(default_factory=DaskEngine)
    overwrite: bool = False
    band_groups: tuple[BandGroup, ...] = BAND_GROUPS
    lock_wait: float = 0.0  # seconds to wait for another writer of a tile-year

    def __post_init__(self) -> None:
        if not isinstance(self.target, Place):
            object.__setattr__(self, "target", FolderPlace(Path(self.target)))

    @property
    def new_layout(self) -> ZarrLayout:
        """The layout of groups created (or rebuilt) by this conversion."""
        return self.layout or zarr_layouts.get(self.fmt.layout)


@dataclass
class ZarrSummary:
    target: Place
    groups: list[str] = field(default_factory=list)
    layouts: set[str] = field(default_factory=set)
    products: int = 0
    blocks_written: int = 0
    bytes_decoded: int = 0
    commits: list[str] = field(default_factory=list)
    described: int = 0  # existing groups given the CRS attributes
    commit_seconds: float = 0.0  # merging forks and committing (icechunk)
    catalogued: int = 0  # STAC Items written (one per complete band group: ``zarr_stac``)
    seconds: float = 0.0

    def lines(self) -> list[str]:
        count = len(self.commits)
        commits = f"; {count} commit{'s' * (count != 1)} (icechunk)" if self.commits else ""
        if self.described:
            commits += f"; CRS attributes added to {self.described} existing groups"
        return [
            f"{self.target}: {len(self.groups)} groups of {self.products} products (layout "
            f"{', '.join(sorted(self.layouts))}); "
            f"{self.blocks_written} blocks written ({self.bytes_decoded / 1e6:.0f} MB decoded) "
            f"in {self.seconds:.1f} s{commits}; STAC: {self.catalogued} Items and their Collection"
        ]


@dataclass(frozen=True)
class StoredDate:
    """A date the store already holds and whose SAFE is not at hand (``ingest`` keeps none):
    where a block of it is written again, its pixels are read back from the store."""

    product_id: str
    start_time64: np.datetime64


#: A date of a tile-year: its SAFE product, or what the store holds of it
Date = SafeProduct | StoredDate


def stored_dates(group: zarr.Group) -> list[StoredDate]:
    """The committed dates of a group (``protocol.committed_products``), oldest first."""
    committed = committed_products(group)
    if not committed:  # none, or a creation that never finished
        return []
    times = group["time"][: len(committed)].astype("datetime64[ms]")
    return [StoredDate(i, t) for i, t in zip(committed, times, strict=True)]


def grid_of(group: zarr.Group, band_group: BandGroup) -> tuple[Grid, str]:
    """A group's pixel grid and CRS, from its ``data``'s GeoZarr attributes."""
    attrs = group["data"].attrs
    a, _, c, _, e, f = attrs["spatial:transform"]
    rows, columns = attrs["spatial:shape"]
    crs = attrs.get("proj:code") or attrs["proj:wkt2"]
    return Grid(band_group.resolution, rows, columns, c, f, a, e), str(crs)


def written_dates(group: zarr.Group, band_group: BandGroup, sharded: bool) -> int:
    """How many of a group's committed dates, from the first, have every block written (a
    killed run leaves the blocks of its dates, and of the partial time chunk before them,
    to write)."""
    committed = committed_products(group)
    if not committed:
        return 0
    if is_complete(group):
        return len(committed)
    layout = zarr_layouts.get(layout_name(group.attrs)).of(band_group, sharded)
    done = done_blocks(group)
    shape = group["data"].shape[2:]
    undone = [b.t0 for b in blocks(len(committed), shape, layout) if b.key not in done]
    return min(undone, default=len(committed))


@dataclass(frozen=True)
class _Task:
    """One block of one group, with the band files of its time steps (picklable)."""

    #: what it writes through (``TileYearWriter.forks``): a writable Zarr store, or an
    #: icechunk fork session (returned, to be merged)
    through: Any
    path: str
    block: Block
    #: per time step, its band files; None: the stored pixels of that date
    band_files: tuple[tuple[str, ...] | None, ...]
    bands: int
    #: the Zarr store stored pixels are read from (None: the one written)
    source: Any = None


def write_block(task: _Task) -> tuple[int, Any]:
    """Decode the block's JP2 windows and write its chunks; returns the bytes written and the
    task's icechunk session (to be merged), if any."""
    block = task.block
    through = task.through
    store = through.store if isinstance(through, icechunk.Session) else through
    array = zarr.open_array(store, path=f"{task.path}/data", mode="r+", zarr_format=3)
    window = Window(block.x0, block.y0, block.x1 - block.x0, block.y1 - block.y0)
    pixels = np.zeros((block.t1 - block.t0, task.bands, window.height, window.width), np.uint16)
    stored = array
    if task.source is not None:
        stored = zarr.open_array(task.source, path=f"{task.path}/data", mode="r", zarr_format=3)
    for t, files in enumerate(task.band_files):
        if files is None:
            pixels[t] = stored[block.t0 + t, :, block.y0 : block.y1, block.x0 : block.x1]
            continue
        for b, file in enumerate(files):
            pixels[t, b] = read_band(Path(file), window)
    array[block.t0 : block.t1, :, block.y0 : block.y1, block.x0 : block.x1] = pixels
    return pixels.nbytes, through


@dataclass(frozen=True)
class _Prepared:
    """A group ready for its blocks: where it is, its layout, what is left to write."""

    path: str
    bands: tuple[str, ...]
    layout: GroupLayout
    todo: list[Block]
    added: list[str]  # product ids new to the group
    described: bool  # the CRS attributes were added to an existing group


def _prepare_group(
    root: zarr.Group,
    path: str,
    products: Sequence[Date],
    band_group: BandGroup,
    options: ZarrOptions,
    source: zarr.Group | None,
) -> _Prepared:
    """Create or extend one group; returns its layout and the blocks still to write. Its grid
    is its SAFE products', or (none at hand) that of the group at ``path`` in ``source``."""
    sources = [p for p in products if isinstance(p, SafeProduct)]
    if sources:
        first = sources[0]
        grid, crs = first.grid(band_group.resolution), first.crs
        for product in sources:
            if product.grid(band_group.resolution) != grid or product.crs != first.crs:
                raise InputDataError(f"{product.path}: grid differs from {first.path} of the same tile")  # fmt: skip
    elif source is not None and path in source:
        grid, crs = grid_of(source[path], band_group)
    else:
        raise InputDataError(f"{options.target}/{path}: no SAFE products nor a group to copy")
    committed = None if options.overwrite or path not in root else committed_products(root[path])
    wanted = [p.product_id for p in products]
    if committed is None and len(sources) < len(products) and source is None:
        raise InputDataError(
            f"{options.target}/{path} holds no committed dates while the other groups of its "
            "tile-year do, and their SAFE products are not at hand: rebuild the tile-year"
        )
    if committed is None:  # new, rebuilt, or a creation that never committed
        layout = options.new_layout.of(band_group, options.fmt.sharded)
        group = new_group(root, path, band_group, grid, crs, layout)
        committed, described = [], False
    else:
        group = root[path]
        check_same_grid(group, grid, f"{options.target}/{path}")
        layout = _existing_layout(group, options, f"{options.target}/{path}", band_group)
        if wanted[: len(committed)] != committed:
            raise InputDataError(
                f"{options.target}/{path} holds products that are not the first of the SAFE "
                "root's (dates before its last one were added, or products removed); rerun with "
                "--overwrite to rebuild it"
            )
        described = add_crs_attributes(group, crs, grid)  # a group from before them
    done = done_blocks(group)
    if wanted != committed or not arrays_agree(group, len(wanted)):
        # Completeness is withdrawn before the time axis changes: blocks from the last,
        # partial time chunk of the committed axis on are written again.
        step = layout.time_step
        partial_start = len(committed) - len(committed) % step
        done = {key for key in done if int(key.split("/")[0]) < partial_start}
        withdraw(group, done)
        set_times(group, products)
    todo = [b for b in blocks(len(products), grid.shape, layout) if b.key not in done]
    if not todo:
        mark_complete(group)
    return _Prepared(path, band_group.bands, layout, todo, wanted[len(committed) :], described)


def _existing_layout(
    group: zarr.Group, options: ZarrOptions, where: str, band_group: BandGroup
) -> GroupLayout:
    """The layout an existing group goes on with: its own; another asked for is refused."""
    recorded = layout_name(group.attrs)
    if options.layout is not None and options.layout.name != recorded:
        raise InputDataError(
            f"{where} has layout {recorded}, not {options.layout.name}: append with "
            f"--layout {recorded}, or rebuild with --overwrite"
        )
    layout = options.layout or zarr_layouts.get(recorded)
    return layout.of(band_group, options.fmt.sharded)


def convert(options: ZarrOptions, show_progress: bool = True) -> ZarrSummary:
    """Convert every selected tile-year under the SAFE root, each written (and, in an
    icechunk repository, committed) before the next."""
    started = time.perf_counter()
    products = options.selection.products(options.safe_root)
    summary = ZarrSummary(options.target, products=len(products))
    writers = TileYearWriters(options)
    with options.engine.running():
        for (tile, year), members in sorted(tile_years(products).items()):
            with writers.tile_year(tile, year) as writes:
                convert_tile_year(writes, (tile, year), members, options, summary, show_progress)
    summary.catalogued = writers.write_catalogue()
    summary.seconds = time.perf_counter() - started
    return summary


class TileYearWriters:
    """The writers of a target's tile-years, each under its writer lock (``WriterLock``):
    a folder's or bucket's Zarr groups, or one commit of an icechunk repository."""

    def __init__(self, options: ZarrOptions) -> None:
        self.options = options
        options.target.create()
        self.repository = (
            open_repository(options.target, create=True) if options.fmt.transactional else None
        )

    def read_root(self) -> zarr.Group | None:
        """The target's last committed state, read-only (None: nothing there yet)."""
        store = (
            self.options.target.zarr_writer()
            if self.repository is None
            else self.repository.readonly_session(BRANCH).store
        )
        try:
            return zarr.open_group(store, mode="r", zarr_format=3)
        except FileNotFoundError:  # zarr's GroupNotFoundError too
            return None

    def write_catalogue(self) -> int:
        """The store's STAC Collection and Items from what is committed (``zarr_stac``)."""
        fmt = self.options.fmt
        root = self.read_root()
        return write_collection(self.options.target, fmt.name, fmt.label, root, fmt.transactional)

    @contextmanager
    def tile_year(self, tile: str, year: int) -> Iterator[TileYearWriter]:
        target = self.options.target
        with WriterLock(target, f"{tile}-{year}", self.options.lock_wait):
            if self.repository is None:
                yield FolderWriter(target, f"{tile}/{year}")
            else:
                yield TileYearCommit(self.repository)


def convert_tile_year(
    writes: TileYearWriter,
    tile_year: tuple[str, int],
    members: Sequence[Date],
    options: ZarrOptions,
    summary: ZarrSummary,
    show_progress: bool,
    source: zarr.Group | None = None,
    commit: bool = True,
) -> list[str]:
    """Prepare a tile-year's groups, write their blocks, commit (unless not ``commit``: more
    rounds follow, then ``commit_tile_year``); returns the product ids added. ``members``:
    every date of the tile-year, oldest first; the pixels of its stored dates come from the
    target itself, or from ``source`` (another store, or the commit an icechunk repository
    had)."""
    root = writes.root
    tile, year = tile_year
    prepared = [
        _prepare_group(root, group_path(tile, year, g), members, g, options, source)
        for g in options.band_groups
    ]
    summary.groups += [p.path for p in prepared if p.path not in summary.groups]
    summary.layouts |= {p.layout.name for p in prepared}
    summary.described += sum(p.described for p in prepared)
    name = f"{tile} {year}"
    todo = [(p, block) for p in prepared for block in p.todo]
    forks = writes.forks(len(todo), name)
    tasks = [
        _Task(
            through,
            p.path,
            block,
            tuple(
                tuple(str(m.band_path(b)) for b in p.bands) if isinstance(m, SafeProduct) else None
                for m in members[block.t0 : block.t1]
            ),
            len(p.bands),
            None if source is None else source.store,
        )
        for (p, block), through in zip(todo, forks, strict=True)
    ]
    _run_tasks(tasks, writes, options, summary, show_progress)
    added = prepared[0].added
    if not commit:
        return added
    if options.overwrite:
        message = f"{name}: rebuilt from {len(members)} products"
    elif added:
        message = f"{name}: {len(added)} products added ({added[0]} … {added[-1]})"
    elif todo:
        message = f"{name}: blocks of {len(members)} products completed"
    else:
        message = f"{name}: CRS attributes added"
    commit_tile_year(writes, message, added, summary)
    return added


def commit_tile_year(
    writes: TileYearWriter, message: str, added: list[str], summary: ZarrSummary
) -> None:
    """The tile-year's commit (icechunk: one snapshot of ``main``; folders: none beyond the
    write protocol's)."""
    begin = time.perf_counter()
    snapshot = writes.commit(message, added)
    summary.commit_seconds += time.perf_counter() - begin
    if snapshot is not None:
        summary.commits.append(snapshot)


def _run_tasks(
    tasks: list[_Task],
    writes: TileYearWriter,
    options: ZarrOptions,
    summary: ZarrSummary,
    show_progress: bool,
) -> None:
    """Write blocks in batches; after each batch, merge their sessions and record them in
    their groups' attributes."""
    root = writes.root
    paths = {task.path for task in tasks}
    done = {path: done_blocks(root[path]) for path in paths}
    remaining = {path: sum(1 for t in tasks if t.path == path) for path in paths}

    def record(batch: list[_Task], written: list[tuple[int, Any]]) -> None:
        begin = time.perf_counter()
        writes.merge([through for _, through in written])
        summary.commit_seconds += time.perf_counter() - begin
        summary.bytes_decoded += sum(size for size, _ in written)
        summary.blocks_written += len(batch)
        for task in batch:
            done[task.path].add(task.block.key)
            remaining[task.path] -= 1
        for path in {task.path for task in batch}:
            record_blocks(root[path], done[path], complete=remaining[path] == 0)

    compute_in_batches(
        write_block,
        tasks,
        parallel=options.engine.parallel,
        label="blocks",
        show_progress=show_progress,
        after_batch=record,
    )


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def make(fmt: formats.Format, source: Path, target: Path, show_progress: bool) -> list[str]:
    """The format registry's hook: make the Zarr format ``fmt`` at ``target`` from SAFE."""
    assert isinstance(fmt, ZarrFormat), f"{fmt.name} is not made by convert_safe_to_zarr"
    return convert(ZarrOptions(source, target, fmt), show_progress).lines()


def zarr_formats() -> dict[str, ZarrFormat]:
    """The formats this module makes: the Zarr formats of the registry."""
    return {name: f for name, f in formats.FORMATS.items() if isinstance(f, ZarrFormat)}


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Convert Sentinel-2 L1C SAFE products to Zarr v3: groups /{tile}/{year}/{band_group}, "
        "each chunk written once; resumable and appendable.",
        prog="python -m sentinel2_l1c.convert_safe_to_zarr",
    )
    parser.add_argument(
        "--format", default=formats.ZARR.name, choices=zarr_formats(),
        help="Zarr format to write (zarr_sharded: with the sharding codec; icechunk: an "
        "icechunk repository, one commit per tile-year).",
    )  # fmt: skip
    parser.add_argument(
        "--sharded", dest="format", action="store_const", const=formats.ZARR_SHARDED.name,
        help="The same as --format zarr_sharded.",
    )  # fmt: skip
    parser.add_argument(
        "--layout", metavar="NAME",
        help="Chunks, shards and codec of new or rebuilt groups (default: an existing group's "
        f"own, else the format's: {formats.ZARR.name} {formats.ZARR.layout}, "
        f"{formats.ZARR_SHARDED.name} {formats.ZARR_SHARDED.layout}); one of: "
        + "; ".join(f"{name} ({layout.summary()})" for name, layout in zarr_layouts.LAYOUTS.items())
        + f". NAME{zarr_layouts.WITH_CHECKSUM} adds a crc32c checksum to every chunk: a "
        "changed stored byte is then an error naming the chunk, never other pixels (costs 6 %% "
        "of a cold load from temp through tensorstore; GDAL reads it from 3.13).",
    )  # fmt: skip
    add_conversion_arguments(
        parser,
        "SAFE root (default: $DSLAB_S2L1C_NETWORK_SAFE_PATH).",
        "Zarr store (default: the format's $DSLAB_S2L1C_NETWORK_{FORMAT}_PATH).",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="Rebuild groups whose products changed (icechunk: in a new commit).",
    )  # fmt: skip
    add_lock_wait(parser)
    parser.add_argument(
        "--history", action="store_true",
        help="List the commits of an icechunk repository (newest first) and exit.",
    )  # fmt: skip
    parser.add_argument(
        "--upgrade-icechunk", action="store_true",
        help="Migrate an icechunk repository written by icechunk 1 (format v1) to the current "
        "format in place with icechunk's own migration, and exit (nothing else may use the "
        "repository meanwhile; without it, a v1 repository is read and written as it is).",
    )  # fmt: skip
    return parser


def _run(args: argparse.Namespace) -> int:
    layout = zarr_layouts.get(args.layout) if args.layout else None
    locations = Locations.from_environment()
    fmt = zarr_formats()[args.format]
    if args.history or args.upgrade_icechunk:
        option = "--history" if args.history else "--upgrade-icechunk"
        if not fmt.transactional:
            raise ConfigError(f"{option} is for an icechunk repository, not {fmt.name}")
        place = FolderPlace(args.target or storages.NETWORK.path(locations, fmt))
        if args.upgrade_icechunk:
            print(upgrade_repository(place))
            return 0
        for commit in history(place):
            print(commit.line())
        return 0
    options = ZarrOptions(
        safe_root=args.source or storages.NETWORK.path(locations, formats.SAFE),
        target=args.target or storages.NETWORK.path(locations, fmt),
        fmt=fmt,
        layout=layout,
        selection=Selection(tuple(args.tiles or ()), tuple(args.years or ())),
        engine=dask_engine(args, os.environ),
        overwrite=args.overwrite,
        lock_wait=args.lock_wait,
    )
    if args.show_job_script:
        print(options.engine.slurm.job_script())
        return 0
    for line in convert(options, show_progress=not args.quiet).lines():
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
