"""Histogram of the object sizes of a Zarr store, per band group.

Object stores charge and throttle per request and cap objects per bucket; small objects cost
more than their bytes. This shows how big the chunk (or shard) objects of each band group
are: counts and mean sizes in the legend. Works on every format whose objects are Zarr chunks
or shards (plain or sharded Zarr), on every storage (a folder, or an S3 bucket).

    python -m sentinel2_l1c.file_size_histogram --storage s3 --format zarr_sharded
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from sentinel2_l1c import formats
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.run.cli import new_parser, run_cli
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_output
from sentinel2_l1c.storage.locations import Locations

#: The formats whose objects are Zarr chunks or shards.
CHUNKED = [name for name, fmt in formats.FORMATS.items() if fmt.chunk_objects]


def object_sizes(
    locations: Locations, storage_name: str, format_name: str
) -> list[tuple[str, int]]:
    """(key relative to the store root, size) of every object of the store."""
    storage, fmt = storages.get(storage_name), formats.get(format_name)
    if not fmt.chunk_objects:
        raise ConfigError(f"format must be one of {', '.join(CHUNKED)}, got {format_name!r}")
    place = storage.place(locations, fmt)
    objects = fmt.object_sizes(place) if place.exists() else {}
    if not objects:
        raise InputDataError(
            f"{place} ({storage.name} {fmt.name}) does not exist: run {storage.step_for(fmt)} first"
        )
    return list(objects.items())


def sizes_by_group(objects: list[tuple[str, int]]) -> dict[str, list[int]]:
    """Chunk/shard object sizes per band group (keys ``…/{group}/data/c/…``)."""
    groups: dict[str, list[int]] = {group.name: [] for group in BAND_GROUPS}
    for key, size in objects:
        parts = key.split("/")
        if "data" in parts and parts.index("data") >= 1:
            name = parts[parts.index("data") - 1]
            if name in groups and "c" in parts[parts.index("data") :]:
                groups[name].append(size)
    return {name: sizes for name, sizes in groups.items() if sizes}


def count(sizes: list[int]) -> str:
    return f"{len(sizes)} object{'' if len(sizes) == 1 else 's'}"


def histogram(groups: dict[str, list[int]], title: str, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    everything = [size for sizes in groups.values() for size in sizes]
    low, high = max(1, min(everything)), max(everything)
    bins = np.geomspace(low, high * 1.001, 40) if high > low else 10
    figure, axes = plt.subplots(figsize=(9, 4.5))
    for name, sizes in groups.items():
        label = f"{name}: {count(sizes)}, mean {np.mean(sizes) / 1e6:.2f} MB"
        axes.hist(sizes, bins=bins, alpha=0.6, label=label)
    if high > low:
        axes.set_xscale("log")
    axes.set_xlabel("object size (bytes)")
    axes.set_ylabel("objects")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=8)
    figure.tight_layout()
    with atomic_output(target) as temp:
        figure.savefig(temp, format="png", dpi=120)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__.split("\n\n")[0], "python -m sentinel2_l1c.file_size_histogram")
    parser.add_argument(
        "--storage", default=storages.NETWORK.name, choices=storages.STORAGES,
        help="Where the store is.",
    )  # fmt: skip
    parser.add_argument("--format", default=formats.ZARR.name, choices=CHUNKED, help="Which store.")
    parser.add_argument(
        "--chart",
        type=Path,
        default=None,
        help="PNG to write (default: img/file_sizes_{storage}_{format}.png).",
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    locations = Locations.from_environment()
    groups = sizes_by_group(object_sizes(locations, args.storage, args.format))
    if not groups:
        raise InputDataError(f"{args.storage} {args.format}: no chunk objects found")
    target = args.chart or Path("img") / f"file_sizes_{args.storage}_{args.format}.png"
    histogram(groups, f"object sizes of the {args.storage} {args.format} store", target)
    for name, sizes in groups.items():
        print(f"{name}: {count(sizes)}, mean {np.mean(sizes) / 1e6:.2f} MB")
    print(f"histogram: {target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    sys.exit(main())
