"""Benchmark random patch time-series loads for every storage × format.

A patch is one random 60 m-aligned window of ``--patch-size`` metres, read for every band
group and every date of the tile-year. For a seed and repeat the patch and the shuffled
storage × format order are always the same. One uncounted warm-up loads every combination
first; stores are opened before any timing. Each load's pixels are hashed: every combination
must return the same pixels for the same patch, or the run ends with exit code 1. Beside every
plain Zarr the run times the ideal: fetching (through obstore) and decompressing only the
chunks the patch touches, all at once on every core (``ideal`` in the results). Each format is
read by its default reader (tensorstore for the Zarr formats, GDAL for SAFE and COG); reader
variants (``zarr@zarr-python``, ``zarr@obstore``, ``zipzarr@async_zipfs``,
``zipzarr@zipstore``) are timed as formats of their own. Results go to
``$DSLAB_LOG_FOLDER/sentinel2_l1c_YYYY-MM-DD_HH-MM-SS.json``, rewritten (atomically) after
every repeat, so an interrupted run keeps what it measured. ``--concurrency 1 4 16`` then loads
``--patches`` patches from every storage × format with that many in flight, in threads sharing
one store or in worker processes with their own (``--loader``), as a training data loader
does: patches per second and per-patch latency (p50, p95), under ``throughput`` in the results;
with ``--duration MINUTES`` the patches keep flowing for that long instead (a soak, under
``soak``: patches/s, memory, open files and sockets every minute, wrong and retried loads).

    python -m sentinel2_l1c.benchmark_patch_load --storages network temp --num-repeats 10
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sentinel2_l1c import formats
from sentinel2_l1c.bench.config import BenchmarkConfig, with_zip_reader
from sentinel2_l1c.bench.loader_mode import LOADERS
from sentinel2_l1c.bench.run import run_benchmark, table
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.run.cli import add_results_folder, new_parser, parse_bool, run_cli
from sentinel2_l1c.s2.bands import parse_tile_id
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import Locations

Bounds = tuple[float, float, float, float]


def detect(args: argparse.Namespace, locations: Locations) -> tuple[str, int, Bounds]:
    """Tile, year and bounds from the arguments, else from the network SAFE products."""
    safe_root = storages.NETWORK.path(locations, formats.SAFE)
    tile = parse_tile_id(args.tile) if args.tile else None
    products = list_products(safe_root, tile, args.year)
    if not products:
        raise InputDataError(
            f"no L1C products{' of ' + tile if tile else ''} under {safe_root}: run intake first"
        )
    tiles = sorted({p.tile for p in products})
    if len(tiles) > 1:
        raise ConfigError(f"products of several tiles ({', '.join(tiles)}): choose one with --tile")
    year = args.year or max(p.year for p in products)
    left, bottom, right, top = products[0].grid(10).bounds
    bounds = (
        args.x1 if args.x1 is not None else left,
        args.y1 if args.y1 is not None else top,
        args.x2 if args.x2 is not None else right,
        args.y2 if args.y2 is not None else bottom,
    )
    return tiles[0], year, bounds


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Benchmark random patch time-series loads for every storage × format.",
        prog="python -m sentinel2_l1c.benchmark_patch_load",
    )
    parser.add_argument(
        "--storages", nargs="+", default=list(storages.STORAGES), choices=storages.STORAGES,
        metavar="STORAGE", help=f"Storages to benchmark (of {', '.join(storages.STORAGES)}).",
    )  # fmt: skip
    parser.add_argument(
        "--formats", nargs="+", default=list(formats.FORMATS), choices=formats.reader_keys(),
        metavar="FORMAT", help=f"Formats to benchmark (of {', '.join(formats.FORMATS)}), each "
        "with its default reader; a FORMAT@READER key picks another reader.",
    )  # fmt: skip
    parser.add_argument(
        "--readers", nargs="+", default=[], choices=formats.reader_keys(), metavar="FORMAT@READER",
        help="Reader variants to time as well, as formats of their own (of "
        f"{', '.join(k for k in formats.reader_keys() if '@' in k)}).",
    )  # fmt: skip
    parser.add_argument(
        "--num-repeats", type=int, default=10, help="Timed repeats (2 or more), after one warm-up."
    )
    parser.add_argument(
        "--year",
        type=int,
        default=None,
        help="Year (default: the latest in the network SAFE root).",
    )
    parser.add_argument(
        "--tile", default=None, help="Tile (default: the only tile in the network SAFE root)."
    )
    parser.add_alias("--tile_id", "--tile")
    for name, what in (("x1", "left"), ("y1", "top"), ("x2", "right"), ("y2", "bottom")):
        parser.add_argument(
            f"--{name}", type=float, default=None,
            help=f"{what.capitalize()} edge in the tile's CRS (default: the tile's).",
        )  # fmt: skip
    parser.add_argument(
        "--async-zipfs", nargs="?", const=True, default=None, type=parse_bool,
        metavar="true|false",
        help="The first version's switch: zipped Zarr read through async_zipfs (true, the same "
        "as zipzarr@async_zipfs) or zarr's ZipStore (false: zipzarr@zipstore) instead of its "
        "default reader (default: not given)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="Seed of patches and order.")
    parser.add_argument(
        "--patch-size", type=int, default=5100, help="Patch side in metres (a multiple of 60)."
    )
    parser.add_argument(
        "--workers", type=int, default=8, help="Threads for SAFE/COG windowed reads."
    )
    parser.add_argument(
        "--skip", nargs="+", default=[], metavar="STORAGE/FORMAT",
        help="Storage × format pairs left out, e.g. temp/safe@odc-stac (default: none).",
    )  # fmt: skip
    parser.add_argument(
        "--cold", action="store_true",
        help="Evict the files from the OS page cache before each timed load, and before each "
        "storage × format of the loader mode (local storages and the network drive; the "
        "results say where it was not possible).",
    )  # fmt: skip
    mode = parser.add_argument_group("loader mode (patches in flight, as a training data loader)")
    mode.add_argument(
        "--concurrency", nargs="+", type=int, default=[], metavar="N",
        help="Patches in flight to measure, e.g. 1 4 16 (default: none, loader mode not run).",
    )  # fmt: skip
    mode.add_argument(
        "--loader", choices=LOADERS, default="threads",
        help="Threads sharing one opened store, or worker processes each opening its own "
        "(a DataLoader's workers) (default: threads).",
    )  # fmt: skip
    mode.add_argument(
        "--patches", type=int, default=16,
        help="Patches loaded per storage × format at each concurrency (default: 16).",
    )  # fmt: skip
    mode.add_argument(
        "--duration", type=float, default=0.0, metavar="MINUTES",
        help="Soak instead: load patches in turn for this long per storage × format at each "
        "--concurrency (threads), reporting patches/s, memory, open files and sockets every "
        "minute, wrong pixels and retried loads (default: 0, no soak).",
    )  # fmt: skip
    mode.add_argument(
        "--loader-formats", nargs="+", default=None, choices=formats.reader_keys(),
        metavar="FORMAT", help="Formats (and FORMAT@READER keys) of the loader mode, among "
        "those benchmarked (default: all of them).",
    )  # fmt: skip
    add_results_folder(parser)
    return parser


def _run(args: argparse.Namespace) -> int:
    locations = Locations.from_environment()
    tile, year, bounds = detect(args, locations)
    keys = with_zip_reader(tuple(dict.fromkeys([*args.formats, *args.readers])), args.async_zipfs)
    config = BenchmarkConfig(
        storages=tuple(dict.fromkeys(args.storages)),
        formats=tuple(dict.fromkeys(keys)),
        num_repeats=args.num_repeats,
        tile=tile,
        year=year,
        bounds=bounds,
        seed=args.seed,
        patch_size=args.patch_size,
        workers=args.workers,
        cold=args.cold,
        concurrency=tuple(dict.fromkeys(args.concurrency)),
        loader=args.loader,
        patches=args.patches,
        loader_formats=tuple(args.loader_formats) if args.loader_formats else None,
        duration=args.duration,
        skip=tuple(dict.fromkeys(args.skip)),
    )
    output: Path = locations.results_folder(args.output)
    target, results = run_benchmark(config, locations, output, quiet=args.quiet)
    for line in table(results):
        print(line)
    print(f"results: {target}")
    wrong = results.mismatches()
    if wrong:
        print(
            "error: formats returned different pixels for the same patch: " + "; ".join(wrong),
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
