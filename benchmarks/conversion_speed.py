"""Conversion time vs the time to only decode the same JP2 files (the floor of conversion).

Writes N synthetic products per tile-year (``--tiles``; or uses --safe_root), then times on
the same Dask engine (threads, or ``--cluster local`` with ``--workers`` processes):
decoding every band of every product, SAFE → each Zarr format of the registry (Zarr, sharded
Zarr, icechunk: its commit time too), SAFE → COG, and zipping the Zarr. Prints ratios to
decode-only, and object counts and sizes per format.

    .venv/bin/python benchmarks/conversion_speed.py --count 4 --scale 1
    .venv/bin/python benchmarks/conversion_speed.py --tiles 35VLH 35VLG --formats zarr icechunk \
        --cluster local --workers 2
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import convert_safe_to_cog, convert_safe_to_zarr, formats, zip_zarr
from sentinel2_l1c.lab.synthetic import SyntheticOptions, generate
from sentinel2_l1c.run.dask_engine import CLUSTERS, DaskEngine
from sentinel2_l1c.run.parallel import compute_in_batches
from sentinel2_l1c.s2.bands import BANDS
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.s2.product import read_band
from sentinel2_l1c.storage.files import tree_size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cluster", choices=CLUSTERS, default="threads")
    parser.add_argument("--tiles", nargs="+", default=["35VLH"], help="one tile-year each")
    parser.add_argument("--safe_root", type=Path, default=None, help="use these products instead")
    parser.add_argument(
        "--formats", nargs="+", default=["zarr", "zarr_sharded", "icechunk", "cog", "zipzarr"]
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dslab-convert-bench-"))
    try:
        safe_root = args.safe_root
        if safe_root is None:
            safe_root = work / "safe"
            started = time.perf_counter()
            for tile in args.tiles:
                options = SyntheticOptions(
                    tile=tile, start=date(2024, 6, 1), end=date(2024, 6, 30), count=args.count,
                    scale=args.scale,
                )  # fmt: skip
                list(generate(options, safe_root, show_progress=False))
            print(
                f"generated {args.count} products of each of {len(args.tiles)} tiles at scale {args.scale} in {time.perf_counter() - started:.0f} s"
            )
        products = list_products(safe_root)
        files = [str(p.band_path(b)) for p in products for b in BANDS]
        engine = DaskEngine(workers=args.workers, cluster=args.cluster)
        started = time.perf_counter()
        with engine.running():
            compute_in_batches(
                lambda f: read_band(Path(f)).nbytes, files, parallel=engine.parallel,
                label="decode", show_progress=False,
            )  # fmt: skip
        decode = time.perf_counter() - started
        print(f"decode only: {len(products)} products, {len(files)} JP2 files in {decode:.1f} s")
        timings = {}
        for name in args.formats:
            fmt = formats.get(name)
            started = time.perf_counter()
            if isinstance(fmt, convert_safe_to_zarr.ZarrFormat):
                options = convert_safe_to_zarr.ZarrOptions(
                    safe_root, work / name, fmt, engine=engine
                )
                summary = convert_safe_to_zarr.convert(options, False)
                if summary.commits:
                    print(
                        f"{name}: {len(summary.commits)} commits in {summary.commit_seconds:.2f} s"
                    )
            elif name == "cog":
                cog = convert_safe_to_cog.CogOptions(safe_root, work / name, engine=engine)
                convert_safe_to_cog.convert(cog, False)
            elif name == "zipzarr":
                zip_zarr.zip_store(work / "zarr", work / "zipzarr.zip", False)
            timings[name] = time.perf_counter() - started
        safe_count, safe_size = tree_size(safe_root)
        print(f"safe: {safe_count} files, {safe_size / 1e9:.2f} GB")
        for name, seconds in timings.items():
            count, size = tree_size(work / ("zipzarr.zip" if name == "zipzarr" else name))
            print(
                f"{name}: {seconds:.1f} s = {seconds / decode:.2f}× decode-only; {count} objects, {size / 1e9:.2f} GB"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
