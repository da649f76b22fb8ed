"""The SAFE archive read in place: SAFE, SAFE + TLM, SAFE as virtual Zarr and Zarr side by side.

Builds (or reuses) a lab tile-year (synthetic products, intake to the network drive), converts
it to Zarr (timed) and indexes it into a virtual Zarr (timed, from scratch), publishes SAFE,
the manifests and Zarr to the lab's S3, and benchmarks patch loads of ``safe``,
``safe_virtual@gdal_tlm``, ``safe_virtual`` and ``zarr`` on the network drive, S3 and CDSE
(each format where that storage holds it) under the lab's network profiles (S3 like Allas,
CDSE like CDSE with its 4 connections). Then counts requests per patch on S3 and CDSE
through the lab's counting proxy, and splits a virtual patch load into its parts: fetching
the touched JP2 tiles, decoding them whole, and decoding only the area of each tile the patch
needs (what the codec does: OpenJPEG's decode area). Writes ``virtual-safe.json`` in the lab.

    .venv/bin/python benchmarks/virtual_safe.py --lab /tmp/layout-lab --scale 2 --dates 40
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import obstore
import rasterio

from sentinel2_l1c import formats, index_safe, publish_s3
from sentinel2_l1c.bench.config import (
    BenchmarkConfig,
    Pair,
    plan_patch,
)
from sentinel2_l1c.bench.run import catalogue, open_loader, run_benchmark, table
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions, convert
from sentinel2_l1c.cube.layouts import touched_chunks
from sentinel2_l1c.demo import DemoOptions, intake, make_source, synthetic_options
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.jp2 import openjpeg
from sentinel2_l1c.jp2.index import Siz, tile_codestream
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import CDSE_PROFILE, LocalCdse
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_locations, source_root
from sentinel2_l1c.lab.object_store import write_aws_files
from sentinel2_l1c.lab.proxy import LabProxy
from sentinel2_l1c.lab.synthetic import TileGeometry
from sentinel2_l1c.loaders.base import slices
from sentinel2_l1c.loaders.zarr_arrays import ZarrLoader
from sentinel2_l1c.run.cli import interrupt_on_sigterm
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_write_text

KEYS = ("safe", "safe_virtual@gdal_tlm", "safe_virtual", "zarr")
STORAGES = ("network", "s3", "cdse")


def clear_gdal_cache() -> None:
    """Forget what GDAL's ``/vsicurl/`` cache holds (headers and tiles of earlier loads), so a
    counted load of a GDAL reader makes the requests of a first read of its files."""
    library = next(Path(rasterio.__file__).parent.parent.glob("rasterio.libs/libgdal*"))
    ctypes.CDLL(str(library)).VSICurlClearCache()


def requests_per_patch(config, locations, cdse: LocalCdse, patches: int) -> dict[str, float]:  # noqa: ANN001
    """Requests per patch of every remote storage × key, through a counting proxy in front of
    SeaweedFS (both the storage's and CDSE's profile), after one warm-up load; GDAL's cache is
    cleared before each counted load (the virtual store has none)."""
    counts = {}
    with LabProxy(cdse.store.s3_port, every=None) as proxy:
        files = write_aws_files(
            locations.results_folder() / "aws-count", proxy.endpoint,
            {LAB_S3_PROFILE: cdse.storage_user, CDSE_PROFILE: cdse.cdse_user},
        )  # fmt: skip
        counted = replace(
            locations, aws_config_file=files.config, aws_credentials_file=files.credentials
        )
        found = catalogue(config, counted)
        for pair in config.pairs():
            if pair.storage.name == "network":
                continue
            loader = open_loader(pair, counted, found)
            try:
                loader.load(plan_patch(config, -1))
                counted_requests = 0
                for repeat in range(patches):
                    clear_gdal_cache()
                    before = proxy.requests
                    loader.load(plan_patch(config, repeat))
                    counted_requests += proxy.requests - before
                counts[pair.name] = counted_requests / patches
            finally:
                loader.close()
    return counts


def touched(loader: ZarrLoader, patch) -> list[tuple[object, bytes, tuple, tuple]]:  # noqa: ANN001
    """Every JP2 tile a patch touches, from the virtual loader: its reference, its file's main
    header, and the rows and columns of the tile the patch needs."""
    manifest, found = loader.store.manifest, []
    for group in BAND_GROUPS:
        array = loader.arrays[group.name]
        rows, cols = slices(patch, loader.origins[group.name], group)
        height, width = array.chunks[2:]
        window = rasterio.windows.Window.from_slices(rows, cols)
        for index in touched_chunks(array.shape, array.chunks, window):
            key = f"{array.path}/{array.metadata.encode_chunk_key(index)}"
            top, left = index[2] * height, index[3] * width
            needed_rows = (max(rows.start - top, 0), min(rows.stop - top, height))
            needed_cols = (max(cols.start - left, 0), min(cols.stop - left, width))
            header = array.metadata.codecs[0].header
            found.append((manifest.references[key], header, needed_rows, needed_cols))
    return found


def where_time_goes(config, locations, patches: int) -> dict[str, object]:  # noqa: ANN001
    """JP2 tiles the counted patches touch, and where the time of a virtual load of the first
    goes: fetching its tiles, decoding them whole, decoding only the parts the patch needs
    (what the codec does), each on one thread; and the bytes of the tiles' prefixes the
    patch needs (what the virtual store fetches)."""
    found = catalogue(config, locations)
    loader = open_loader(Pair.parse("network", "safe_virtual"), locations, found)
    assert isinstance(loader, ZarrLoader)
    counts = [len(touched(loader, plan_patch(config, repeat))) for repeat in range(patches)]
    references = touched(loader, plan_patch(config, 0))
    loader.close()
    files = storages.NETWORK.place(locations, formats.SAFE).obstore()

    async def fetch_all() -> list[bytes]:
        return [bytes(b) for b in await asyncio.gather(*(
            obstore.get_range_async(files, r.path, start=r.offset, length=r.size)
            for r, *_ in references
        ))]  # fmt: skip

    begin = time.perf_counter()
    tiles = asyncio.run(fetch_all())
    fetched = time.perf_counter() - begin
    codestreams = [tile_codestream(h, t) for (_, h, *_), t in zip(references, tiles, strict=True)]
    begin = time.perf_counter()
    decoded = 0
    for codestream, (_, header, *_) in zip(codestreams, references, strict=True):
        siz = Siz.parse(header)  # the tile size; edge tiles are clipped to the image
        decoded += openjpeg.decode(codestream, (0, siz.tile_height), (0, siz.tile_width)).size
    whole = time.perf_counter() - begin
    begin = time.perf_counter()
    for codestream, (_, _, rows, cols) in zip(codestreams, references, strict=True):
        openjpeg.decode(codestream, rows, cols)
    partial = time.perf_counter() - begin
    needed = sum((r[1] - r[0]) * (c[1] - c[0]) for _, _, r, c in references)
    fetched_bytes = sum(
        reference.size if reference.prefixes is None else reference.prefixes.needed(rows, cols)
        for reference, _, rows, cols in references
    )
    return {
        "tiles_per_counted_patch": sum(counts) / patches,
        "tiles": len(references),
        "tile_bytes": sum(len(t) for t in tiles),
        "prefix_bytes (what the virtual store fetches)": fetched_bytes,
        "fetch_s": fetched,
        "decode_whole_tiles_s (one thread)": whole,
        "decode_needed_areas_s (one thread)": partial,
        "pixels_in_touched_tiles_per_pixel_needed": decoded / needed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", type=Path, default=Path("/tmp/layout-lab"))
    parser.add_argument("--scale", type=int, default=2)
    parser.add_argument("--dates", type=int, default=40)
    parser.add_argument("--patch-size", type=int, default=5100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--count-patches", type=int, default=2)
    parser.add_argument("--network", default="allas", help="network profile of the lab's S3")
    parser.add_argument("--cdse-network", default="cdse", help="network profile of CDSE")
    args = parser.parse_args()
    options = DemoOptions(lab=args.lab, scale=args.scale, dates=args.dates)
    try:  # checked before minutes of building the lab, on the tile the lab will have
        bounds = TileGeometry.for_tile(options.tile, options.scale).grids[10].bounds
        config = BenchmarkConfig(
            STORAGES, KEYS, args.repeats, options.tile, options.year,
            (bounds[0], bounds[3], bounds[2], bounds[1]), patch_size=args.patch_size,
        )  # fmt: skip
        synthetic_options(options)
    except ConfigError as error:
        parser.error(str(error))
    interrupt_on_sigterm()  # a kill stops the lab servers too
    args.lab.mkdir(parents=True, exist_ok=True)
    if not source_root(args.lab).exists():
        make_source(options, synthetic_options(options), show_progress=True)
    summary_path = args.lab / "virtual-safe.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    with LocalCdse(
        args.lab, source_root(args.lab), network=network.parse(args.network),
        cdse_network=network.parse(args.cdse_network),
    ) as cdse:  # fmt: skip
        locations = cdse.locations(lab_locations(args.lab))
        safe = storages.NETWORK.path(locations, formats.SAFE)
        if not safe.exists():
            intake(options, locations, show_progress=True)
        products = list_products(safe, options.tile, options.year)
        zarr_root = storages.NETWORK.path(locations, formats.ZARR)
        if "zarr_conversion_s" not in summary or not zarr_root.exists():  # timed from scratch
            shutil.rmtree(zarr_root, ignore_errors=True)
            begin = time.perf_counter()
            convert(ZarrOptions(safe, zarr_root), show_progress=True)
            summary["zarr_conversion_s"] = time.perf_counter() - begin
        indexed = index_safe.index(
            index_safe.IndexOptions(
                safe, storages.NETWORK.path(locations, formats.SAFE_VIRTUAL), overwrite=True
            ),
            show_progress=True,
        )
        summary["index"] = {
            "seconds": indexed.seconds, "reads": indexed.reads, "files": indexed.files_indexed,
            "references": indexed.references, "manifest_bytes": indexed.manifest_bytes,
            "indexed_bytes": indexed.indexed_bytes,
        }  # fmt: skip
        publish_s3.publish(
            publish_s3.PublishOptions(("safe", "safe_virtual", "zarr")),
            locations, locations.results_folder(), True,
        )  # fmt: skip
        assert products[0].grid(10).bounds == bounds, "the lab's tile is not the one planned"
        target, results = run_benchmark(config, locations, locations.results_folder())
        assert not results.mismatches(), results.mismatches()
        summary["results"] = str(target)
        summary["load_s"] = {f"{s}/{k}": t.mean for s, k, t in results.rows() if k in KEYS}
        summary["load_stderr_s"] = {f"{s}/{k}": t.stderr for s, k, t in results.rows() if k in KEYS}
        summary["requests_per_patch"] = requests_per_patch(
            config, locations, cdse, args.count_patches
        )
        summary["where_time_goes"] = where_time_goes(config, locations, args.count_patches)
        summary["dates"] = len(products)
        summary["tile_px"] = products[0].grid(10).shape[0]
        atomic_write_text(summary_path, json.dumps(summary, indent=1))
    print("\n".join(table(results)))
    index = summary["index"]
    print(
        f"{summary['dates']} dates, {summary['tile_px']} px at 10 m; Zarr conversion "
        f"{summary['zarr_conversion_s']:.1f} s; index {index['seconds']:.2f} s "
        f"(1/{summary['zarr_conversion_s'] / index['seconds']:.0f} of it, {index['reads']} reads "
        f"of {index['files']} files); manifest {index['manifest_bytes'] / 1e6:.2f} MB = "
        f"{index['manifest_bytes'] / index['indexed_bytes']:.4%} of the SAFE bytes; "
        f"{index['references']} references"
    )
    for name, count in summary["requests_per_patch"].items():
        print(f"{name:32} {count:8.1f} requests per patch")
    print(json.dumps(summary["where_time_goes"], indent=1))
    print(f"summary: {summary_path}")


if __name__ == "__main__":
    main()
