"""What the crc32c of every chunk costs a patch load: the same patches from a store written
with checksums and one without (``--layout NAME_crc32c`` and ``NAME``), loaded alternately
(the order flips every patch) by each reader of the format, cold (files evicted from the page
cache before each load) on folders. Prints the mean load of each and their ratio, per reader.

    .venv/bin/python benchmarks/checksum_cost.py --safe LAB/network/sentinel2_l1c_safe \\
        --format zarr_sharded --with STORE_CRC32C --without STORE --patches 40
    # on S3 (under python -m sentinel2_l1c.lab.serve): --with s3://BUCKET --without s3://…
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import formats
from sentinel2_l1c.bench.run import evict
from sentinel2_l1c.loaders.base import GRID, Catalogue, Patch, checksum
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.locations import Locations


def patches(catalogue: Catalogue, count: int, size: int, seed: int) -> list[Patch]:
    left, bottom, right, top = catalogue.products[0].grid(10).bounds
    rng = random.Random(seed)
    columns, rows = int((right - left - size) // GRID), int((top - bottom - size) // GRID)
    return [
        Patch(left + rng.randint(0, columns) * GRID, top - rng.randint(0, rows) * GRID, size)
        for _ in range(count)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--safe", type=Path, required=True, help="SAFE root (the catalogue).")
    parser.add_argument("--tile", default="35VLH")
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument("--format", default="zarr_sharded", choices=["zarr", "zarr_sharded"])
    parser.add_argument("--with", dest="checked", required=True, help="Store with checksums.")
    parser.add_argument("--without", required=True, help="The same store without.")
    parser.add_argument("--patches", type=int, default=40)
    parser.add_argument("--patch-size", type=int, default=5100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    products = tuple(list_products(args.safe, args.tile, args.year))
    catalogue = Catalogue(args.tile, args.year, products)
    fmt = formats.get(args.format)
    locations = Locations.from_environment()
    stores = {
        "crc32c": storages.place_at(args.checked, locations),
        "none": storages.place_at(args.without, locations),
    }
    files = {
        name: None if where.local_path() is None else [
            p for p in where.local_path().rglob("*") if p.is_file()
        ]
        for name, where in stores.items()
    }  # fmt: skip
    chosen = patches(catalogue, args.patches, args.patch_size, args.seed)
    print(f"{fmt.name}, {len(products)} dates, {len(chosen)} patches, cold; mean load s")
    for reader in [r for r in fmt.readers if not r.asks_service]:  # reads the stores
        loaders = {n: reader.open(w, catalogue, "convert_safe_to_zarr") for n, w in stores.items()}
        times: dict[str, list[float]] = {name: [] for name in loaders}
        for number, patch in enumerate(chosen):
            order = list(loaders) if number % 2 == 0 else list(reversed(loaders))
            sums = set()
            for name in order:
                if files[name] is not None:
                    evict(files[name])
                begin = time.perf_counter()
                pixels = loaders[name].load(patch)
                times[name].append(time.perf_counter() - begin)
                sums.add(checksum(pixels))
            assert len(sums) == 1, f"{reader.name}: different pixels for patch {number}"
        for loader in loaders.values():
            loader.close()
        means = {name: statistics.mean(values) for name, values in times.items()}
        ratios = [a / b for a, b in zip(times["crc32c"], times["none"], strict=True)]
        print(
            f"  {fmt.key(reader):28} crc32c {means['crc32c']:.4f}  none {means['none']:.4f}  "
            f"ratio of means {means['crc32c'] / means['none']:.3f}  "
            f"median paired ratio {statistics.median(ratios):.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
