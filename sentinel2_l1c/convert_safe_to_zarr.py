"""Convert the SAFE products of tile-years to Zarr v3 (``--format zarr_sharded``: sharded).

The arrays are chunked, sharded and compressed per a named layout (``--layout``, default the
format's; ``zarr_layouts``), planned from the full product list, then written in blocks of one
time chunk × ``block``² pixels as parallel Dask tasks: each task decodes only
the JP2 windows it needs and writes whole chunks (or whole shards), so every chunk is
written exactly once. Progress is recorded per block in the group's attributes: a rerun after
a crash resumes with the blocks not yet written; a run with new products appends their dates
(rewriting at most the last partial time chunk); a run with nothing new writes nothing. The
time axis is committed only when its arrays agree (``zarr_store``), so a run killed at any
point leaves a state the rerun repairs, never a group marked complete with missing data.

    python -m sentinel2_l1c.convert_safe_to_zarr [--format zarr_sharded] [--layout chunks_128]
        [--tile 35VLH] [--year 2024]
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zarr
from rasterio.windows import Window

from . import formats, storages, zarr_layouts
from .cli import add_conversion_arguments, new_parser, run_cli
from .errors import ConfigError, InputDataError
from .formats.zarr import ZarrFormat
from .locations import Locations
from .safe import SafeProduct, list_products, read_band
from .utils import BAND_GROUPS, BandGroup, compute_in_batches, parse_tile_id
from .zarr_layouts import GroupLayout, ZarrLayout
from .zarr_store import (
    COMPLETE,
    DONE,
    Block,
    arrays_agree,
    blocks,
    check_same_grid,
    committed_products,
    create_group,
    group_path,
    layout_name,
    set_times,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ZarrOptions:
    safe_root: Path
    target: Path
    sharded: bool = False
    #: None: an existing group's own layout, and the format's default for new groups
    layout: ZarrLayout | None = None
    tile: str | None = None
    year: int | None = None
    workers: int | None = None
    scheduler: str | None = None
    overwrite: bool = False
    band_groups: tuple[BandGroup, ...] = BAND_GROUPS

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        if self.tile is not None:
            object.__setattr__(self, "tile", parse_tile_id(self.tile))

    @property
    def new_layout(self) -> ZarrLayout:
        """The layout of groups created (or rebuilt) by this conversion."""
        fmt = formats.ZARR_SHARDED if self.sharded else formats.ZARR
        return self.layout or zarr_layouts.get(fmt.layout)


@dataclass
class ZarrSummary:
    target: Path
    groups: list[str] = field(default_factory=list)
    layouts: set[str] = field(default_factory=set)
    products: int = 0
    blocks_written: int = 0
    bytes_decoded: int = 0
    seconds: float = 0.0

    def lines(self) -> list[str]:
        return [
            f"{self.target}: {len(self.groups)} groups of {self.products} products (layout "
            f"{', '.join(sorted(self.layouts))}); "
            f"{self.blocks_written} blocks written ({self.bytes_decoded / 1e6:.0f} MB decoded) "
            f"in {self.seconds:.1f} s"
        ]


@dataclass(frozen=True)
class _Task:
    """One block of one group, with the band files of its time steps (picklable)."""

    store: str
    path: str
    block: Block
    band_files: tuple[tuple[str, ...], ...]


def write_block(task: _Task) -> int:
    """Decode the block's JP2 windows and write its chunks; returns bytes written."""
    block = task.block
    window = Window(block.x0, block.y0, block.x1 - block.x0, block.y1 - block.y0)
    pixels = np.zeros(
        (block.t1 - block.t0, len(task.band_files[0]), window.height, window.width), np.uint16
    )
    for t, files in enumerate(task.band_files):
        for b, file in enumerate(files):
            pixels[t, b] = read_band(Path(file), window)
    array = zarr.open_array(task.store, path=f"{task.path}/data", mode="r+", zarr_format=3)
    array[block.t0 : block.t1, :, block.y0 : block.y1, block.x0 : block.x1] = pixels
    return pixels.nbytes


def tile_years(products: Sequence[SafeProduct]) -> dict[tuple[str, int], list[SafeProduct]]:
    grouped: dict[tuple[str, int], list[SafeProduct]] = defaultdict(list)
    for product in products:
        grouped[(product.tile, product.year)].append(product)
    return dict(grouped)


def _prepare_group(
    root: zarr.Group, products: Sequence[SafeProduct], band_group: BandGroup, options: ZarrOptions
) -> tuple[zarr.Group, str, GroupLayout, list[Block]]:
    """Create or extend one group; returns it with its layout and the blocks still to write."""
    first = products[0]
    path = group_path(first.tile, first.year, band_group)
    grid = first.grid(band_group.resolution)
    for product in products:
        if product.grid(band_group.resolution) != grid or product.crs != first.crs:
            raise InputDataError(f"{product.path}: grid differs from {first.path} of the same tile")
    committed = None if options.overwrite or path not in root else committed_products(root[path])
    wanted = [p.product_id for p in products]
    if committed is None:  # new, rebuilt, or a creation that never committed
        layout = options.new_layout.of(band_group, options.sharded)
        group = create_group(root, path, band_group, grid, first.crs, layout)
        committed = []
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
    done = set(group.attrs.get(DONE, []))
    if wanted != committed or not arrays_agree(group, len(wanted)):
        # Completeness is withdrawn before the time axis changes: blocks from the last,
        # partial time chunk of the committed axis on are written again.
        step = layout.chunks[0]
        partial_start = len(committed) - len(committed) % step
        done = {key for key in done if int(key.split("/")[0]) < partial_start}
        group.attrs.update({DONE: sorted(done), COMPLETE: False})
        set_times(group, products)
    todo = [b for b in blocks(len(products), grid.shape, layout) if b.key not in done]
    if not todo and not group.attrs.get(COMPLETE):
        group.attrs[COMPLETE] = True
    return group, path, layout, todo


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
    return layout.of(band_group, options.sharded)


def _remove_partial_files(target: Path) -> None:
    """Temporary files zarr's LocalStore leaves when a write is killed."""
    for leftover in target.rglob("*.partial"):
        leftover.unlink()


def convert(options: ZarrOptions, show_progress: bool = True) -> ZarrSummary:
    """Convert every tile-year under the SAFE root (or the one asked for)."""
    started = time.perf_counter()
    products = list_products(options.safe_root, options.tile, options.year)
    if not products:
        raise InputDataError(
            f"no L1C products{' of tile ' + options.tile if options.tile else ''}"
            f"{' in ' + str(options.year) if options.year else ''} under {options.safe_root}: "
            "run intake first"
        )
    summary = ZarrSummary(options.target, products=len(products))
    if options.target.exists():
        _remove_partial_files(options.target)
    root = zarr.open_group(str(options.target), mode="a", zarr_format=3)
    tasks: list[tuple[zarr.Group, _Task]] = []
    for _, members in sorted(tile_years(products).items()):
        for band_group in options.band_groups:
            group, path, layout, todo = _prepare_group(root, members, band_group, options)
            summary.groups.append(path)
            summary.layouts.add(layout.name)
            for block in todo:
                files = tuple(
                    tuple(str(p.band_path(b)) for b in band_group.bands)
                    for p in members[block.t0 : block.t1]
                )
                tasks.append((group, _Task(str(options.target), path, block, files)))
    _run_tasks(tasks, options, summary, show_progress)
    summary.seconds = time.perf_counter() - started
    return summary


def _run_tasks(
    tasks: list[tuple[zarr.Group, _Task]],
    options: ZarrOptions,
    summary: ZarrSummary,
    show_progress: bool,
) -> None:
    """Write blocks in batches; after each batch, record them in their groups' attributes."""
    groups = {task.path: group for group, task in tasks}
    done = {path: set(group.attrs.get(DONE, [])) for path, group in groups.items()}
    remaining = {path: sum(1 for _, t in tasks if t.path == path) for path in groups}

    def record(batch: list[_Task], written: list[int]) -> None:
        summary.bytes_decoded += sum(written)
        summary.blocks_written += len(batch)
        for task in batch:
            done[task.path].add(task.block.key)
            remaining[task.path] -= 1
        for path in {task.path for task in batch}:
            groups[path].attrs.update({DONE: sorted(done[path]), COMPLETE: remaining[path] == 0})

    compute_in_batches(
        write_block,
        [task for _, task in tasks],
        workers=options.workers,
        scheduler=options.scheduler,
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
    return convert(ZarrOptions(source, target, sharded=fmt.sharded), show_progress).lines()


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
        help="Zarr format to write (zarr_sharded: with the sharding codec).",
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
        + "; ".join(f"{name} ({layout.summary()})" for name, layout in zarr_layouts.LAYOUTS.items()),
    )  # fmt: skip
    add_conversion_arguments(
        parser,
        "SAFE root (default: $DSLAB_S2L1C_NETWORK_SAFE_PATH).",
        "Zarr store (default: the format's $DSLAB_S2L1C_NETWORK_{FORMAT}_PATH).",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="Rebuild groups whose products changed."
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    layout = zarr_layouts.get(args.layout) if args.layout else None
    locations = Locations.from_environment()
    fmt = zarr_formats()[args.format]
    options = ZarrOptions(
        safe_root=args.source or storages.NETWORK.path(locations, formats.SAFE),
        target=args.target or storages.NETWORK.path(locations, fmt),
        sharded=fmt.sharded,
        layout=layout,
        tile=args.tile,
        year=args.year,
        workers=args.workers,
        scheduler=args.scheduler,
        overwrite=args.overwrite,
    )
    for line in convert(options, show_progress=not args.quiet).lines():
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
