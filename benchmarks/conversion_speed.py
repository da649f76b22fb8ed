"""Conversion time vs the time to only decode the same JP2 files (the floor of conversion).

Writes N full-size synthetic products (or uses --safe_root), then times with the same
number of Dask threads: decoding every band of every product, SAFE → Zarr, SAFE → sharded
Zarr, SAFE → COG, and zipping the Zarr. Prints ratios to decode-only and object counts and
sizes per format.

    .venv/bin/python benchmarks/conversion_speed.py --count 4 --scale 1
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

from sentinel2_l1c import convert_safe_to_cog, convert_safe_to_zarr, zip_zarr  # noqa: E402
from sentinel2_l1c.lab.synthetic import SyntheticOptions, generate  # noqa: E402
from sentinel2_l1c.safe import list_products, read_band  # noqa: E402
from sentinel2_l1c.utils import BANDS, compute_in_batches, tree_size  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--safe_root", type=Path, default=None, help="use these products instead")
    parser.add_argument("--formats", nargs="+", default=["zarr", "zarr_sharded", "cog", "zipzarr"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dslab-convert-bench-"))
    try:
        safe_root = args.safe_root
        if safe_root is None:
            safe_root = work / "safe"
            started = time.perf_counter()
            options = SyntheticOptions(
                start=date(2024, 6, 1), end=date(2024, 6, 30), count=args.count, scale=args.scale
            )
            list(generate(options, safe_root, show_progress=False))
            print(
                f"generated {args.count} products at scale {args.scale} in {time.perf_counter() - started:.0f} s"
            )
        products = list_products(safe_root)
        files = [str(p.band_path(b)) for p in products for b in BANDS]
        started = time.perf_counter()
        compute_in_batches(
            lambda f: read_band(Path(f)).nbytes,
            files,
            workers=args.workers,
            scheduler=None,
            label="decode",
            show_progress=False,
        )
        decode = time.perf_counter() - started
        print(f"decode only: {len(products)} products, {len(files)} JP2 files in {decode:.1f} s")
        timings = {}
        for name, run in [
            (
                "zarr",
                lambda: convert_safe_to_zarr.convert(
                    convert_safe_to_zarr.ZarrOptions(
                        safe_root, work / "zarr", workers=args.workers
                    ),
                    False,
                ),
            ),
            (
                "zarr_sharded",
                lambda: convert_safe_to_zarr.convert(
                    convert_safe_to_zarr.ZarrOptions(
                        safe_root, work / "zarr_sharded", sharded=True, workers=args.workers
                    ),
                    False,
                ),
            ),
            (
                "cog",
                lambda: convert_safe_to_cog.convert(
                    convert_safe_to_cog.CogOptions(safe_root, work / "cog", workers=args.workers),
                    False,
                ),
            ),
            ("zipzarr", lambda: zip_zarr.zip_store(work / "zarr", work / "zipzarr.zip", False)),
        ]:
            if name not in args.formats:
                continue
            started = time.perf_counter()
            run()
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
