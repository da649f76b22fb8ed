"""Zipped Zarr through async_zipfs vs plain Zarr vs zarr's ZipStore, locally and on S3.

The stores are opened by the registry's readers (``formats``) on places of the storages
(``storage.storages``), exactly as the benchmark opens them.


One run on one machine: writes a synthetic tile-year, converts it to Zarr and sharded Zarr,
zips both, puts everything on the lab's S3 store (SeaweedFS behind a request-counting
proxy), then loads the same random patch time series (all band groups, all dates) through
every storage × layout × access combination, in a shuffled order per patch, after one
uncounted warm-up each. Prints mean ± stderr per combination, the ratios that matter and
S3 requests per patch; checks that every combination returned the same pixels.

    .venv/bin/python benchmarks/zip_access.py --scale 10 --count 24 --patches 12
"""

from __future__ import annotations

import argparse
import hashlib
import random
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import zarr

from sentinel2_l1c import convert_safe_to_zarr, formats, zip_zarr
from sentinel2_l1c.cube.schema import group_path
from sentinel2_l1c.lab.network import NetworkProfile
from sentinel2_l1c.lab.object_store import Identity, SeaweedFS, write_aws_files
from sentinel2_l1c.lab.proxy import LabProxy
from sentinel2_l1c.lab.synthetic import SyntheticOptions, generate
from sentinel2_l1c.run.cli import interrupt_on_sigterm
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage.places import BucketPlace, FolderPlace
from sentinel2_l1c.storage.s3_account import S3Account

PROFILE = "bench"


def upload_tree(client, bucket: str, root: Path) -> None:
    client.create_bucket(Bucket=bucket)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), bucket, path.relative_to(root).as_posix())


def patch_windows(size_px: int, tile_px: int, count: int, seed: int) -> list[tuple[int, int]]:
    """Upper-left corners (10 m pixels) of random patches aligned to the 60 m grid."""
    rng = random.Random(seed)
    cells = (tile_px - size_px) // 6
    return [(rng.randint(0, cells) * 6, rng.randint(0, cells) * 6) for _ in range(count)]


def load(arrays: dict[str, zarr.Array], corner: tuple[int, int], size_px: int) -> str:
    """Read the patch of every band group; returns a checksum of the pixels."""
    digest = hashlib.sha256()
    for group in BAND_GROUPS:
        factor = group.resolution // 10
        y, x, n = corner[0] // factor, corner[1] // factor, size_px // factor
        digest.update(arrays[group.name][:, :, y : y + n, x : x + n].tobytes())
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=10)
    parser.add_argument("--count", type=int, default=24, help="dates in the tile-year")
    parser.add_argument("--patches", type=int, default=12)
    parser.add_argument("--patch-size", type=int, default=5100, help="metres")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every S3 request")
    args = parser.parse_args()
    interrupt_on_sigterm()  # a kill stops the lab servers too
    work = Path(tempfile.mkdtemp(prefix="dslab-zip-bench-"))
    store = None
    try:
        options = SyntheticOptions(
            start=date(2024, 1, 1), end=date(2025, 1, 1), count=args.count, scale=args.scale
        )
        list(generate(options, work / "safe", show_progress=False))
        for name in ("zarr", "zarr_sharded"):
            convert_safe_to_zarr.convert(
                convert_safe_to_zarr.ZarrOptions(work / "safe", work / name, formats.get(name)),
                False,
            )
            zip_zarr.zip_store(work / name, work / f"{name}.zip", show_progress=False)
        product = list_products(work / "safe")[0]
        tile, year = product.tile, product.year

        admin = Identity("admin", ("Admin", "Read", "Write", "List", "Tagging"))
        store = SeaweedFS(work / "s3", [admin]).start()
        client = store.client(admin)
        for name in ("zarr", "zarr_sharded"):
            upload_tree(client, f"bench-{name.replace('_', '-')}", work / name)
        client.create_bucket(Bucket="bench-zip")
        for name in ("zarr", "zarr_sharded"):
            client.upload_file(str(work / f"{name}.zip"), "bench-zip", f"{name}.zip")
        delay = NetworkProfile(latency_ms=args.latency_ms)
        proxy = LabProxy(store.s3_port, every=None, network=delay).__enter__()
        files = write_aws_files(work / "aws", proxy.endpoint, {PROFILE: admin})
        account = S3Account(PROFILE, files.config, files.credentials)

        plain, zipped = formats.ZARR.reader("zarr-python"), formats.ZIPZARR  # zarr-python stores
        readers = {
            "plain": plain,
            "async zip": zipped.reader("async_zipfs"),
            "ZipStore": zipped.reader("zipstore"),
        }
        combos = {}
        for name in ("zarr", "zarr_sharded"):
            places = {
                "local": (FolderPlace(work / name), FolderPlace(work / f"{name}.zip")),
                "s3": (
                    BucketPlace(account, f"bench-{name.replace('_', '-')}"),
                    BucketPlace(account, "bench-zip", f"{name}.zip"),
                ),
            }
            for storage, (tree, archive) in places.items():
                for kind, reader in readers.items():
                    place = tree if reader is plain else archive
                    combos[(storage, name, kind)] = reader.store(place)[0]
        arrays = {
            combo: {
                g.name: zarr.open_array(s, path=f"{group_path(tile, year, g)}/data", mode="r")
                for g in BAND_GROUPS
            }
            for combo, s in combos.items()
        }
        size_px = args.patch_size // 10
        tile_px = product.grid(10).ncols
        corners = patch_windows(size_px, tile_px, args.patches + 1, args.seed)
        durations = {combo: [] for combo in combos}
        requests = {combo: [] for combo in combos}
        rng = random.Random(args.seed)
        for number, corner in enumerate(corners):
            order = list(combos)
            rng.shuffle(order)
            checksums = set()
            for combo in order:
                before = proxy.requests
                started = time.perf_counter()
                checksums.add(load(arrays[combo], corner, size_px))
                elapsed = time.perf_counter() - started
                if number:  # the first patch is the warm-up
                    durations[combo].append(elapsed)
                    requests[combo].append(proxy.requests - before)
            assert len(checksums) == 1, f"patch {corner}: formats returned different pixels"

        print(
            f"{args.count} dates, tile {tile_px} px at 10 m, patch {size_px} px, {args.patches} patches, "
            f"+{args.latency_ms:g} ms per S3 request"
        )
        means = {}
        for combo in combos:
            values = durations[combo]
            means[combo] = statistics.mean(values)
            stderr = statistics.stdev(values) / len(values) ** 0.5
            per_patch = statistics.mean(requests[combo]) if combo[0] == "s3" else float("nan")
            print(
                f"{combo[0]:5} {combo[1]:12} {combo[2]:9}: {means[combo] * 1000:7.1f} ± {stderr * 1000:5.1f} ms, {per_patch:6.1f} S3 requests/patch"
            )
        for storage in ("local", "s3"):
            for name in ("zarr", "zarr_sharded"):
                plain = means[(storage, name, "plain")]
                async_zip = means[(storage, name, "async zip")]
                zipstore = means[(storage, name, "ZipStore")]
                print(
                    f"{storage} {name}: async zip / plain = {async_zip / plain:.2f}; "
                    f"ZipStore / async zip = {zipstore / async_zip:.2f}"
                )
        proxy.__exit__(None, None, None)
    finally:
        if store is not None:
            store.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
