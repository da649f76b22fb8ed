"""Convert SAFE products to Cloud Optimized GeoTIFFs: one multi-band COG per band group.

The layout under the COG root is the format's (``formats.cog``): a folder per product with a
COG per band group and ``product.json``. Bands are stacked in band-group order with their names as descriptions and wavelengths as
tags; DEFLATE with horizontal predictor, 512 px blocks, overviews (nodata-aware average),
nodata 0; written by GDAL's COG driver through rasterio, in-process. Each product folder lands
atomically; a rerun skips products already converted. Products run as parallel Dask tasks.
Then the STAC catalogue of the tree (``formats.cog_stac``): an Item per product, for STAC-based
loaders such as odc-stac.

    python -m sentinel2_l1c.convert_safe_to_cog [--tile 35VLH] [--year 2024]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS

from sentinel2_l1c import formats
from sentinel2_l1c.formats.cog import METADATA, product_folder
from sentinel2_l1c.formats.cog_stac import item_name, item_text, write_catalogue
from sentinel2_l1c.run.cli import add_conversion_arguments, dask_engine, new_parser, run_cli
from sentinel2_l1c.run.dask_engine import DaskEngine
from sentinel2_l1c.run.parallel import compute_in_batches
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.s2.listing import Selection
from sentinel2_l1c.s2.names import format_utc
from sentinel2_l1c.s2.product import SafeProduct
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_output
from sentinel2_l1c.storage.locations import Locations

COG_OPTIONS = {
    "compress": "DEFLATE",
    "predictor": 2,
    "blocksize": 512,
    "overviews": "AUTO",
    "overview_resampling": "AVERAGE",
    "bigtiff": "IF_SAFER",
}


def product_metadata(product: SafeProduct) -> dict:
    return {
        "product_id": product.product_id,
        "product_start_time": format_utc(product.start_time, 3),
        "sensing_time": format_utc(product.sensing_time, 6),
        "tile": product.tile,
        "crs": product.crs,
        "processing_baseline": product.processing_baseline,
        "spacecraft": product.spacecraft,
        "relative_orbit": product.orbit_number,
        "quantification_value": product.quantification_value,
        "radiometric_offsets": product.radiometric_offsets,
        "cloud_cover": product.cloud_cover,
        "band_groups": {group.name: list(group.bands) for group in BAND_GROUPS},
    }


def write_cog(path: Path, product: SafeProduct, band_group: BandGroup) -> None:
    """Decode the group's bands and write them as one COG with names and wavelengths."""
    pixels = product.read_bands(band_group.bands)
    grid = product.grid(band_group.resolution)
    with rasterio.open(
        path,
        "w",
        driver="COG",
        width=grid.ncols,
        height=grid.nrows,
        count=len(band_group.bands),
        dtype="uint16",
        crs=CRS.from_string(product.crs),
        transform=grid.transform,
        nodata=0,
        **COG_OPTIONS,
    ) as dataset:
        dataset.write(pixels)
        dataset.update_tags(
            PRODUCT_ID=product.product_id,
            PRODUCT_START_TIME=format_utc(product.start_time, 3),
            TILE=product.tile,
            PROCESSING_BASELINE=product.processing_baseline,
            QUANTIFICATION_VALUE=product.quantification_value,
        )
        for index, band in enumerate(band_group.bands, 1):
            wavelength = product.wavelengths[band]
            dataset.set_band_description(index, band)
            dataset.update_tags(
                index,
                BANDNAME=band,
                WAVELENGTH=wavelength.central,
                WAVELENGTH_MIN=wavelength.minimum,
                WAVELENGTH_MAX=wavelength.maximum,
                WAVELENGTH_UNIT="nm",
                RADIO_ADD_OFFSET=product.radiometric_offsets[band],
            )


@dataclass(frozen=True)
class _Task:
    product: str
    target: str


def convert_product(task: _Task) -> int:
    """All COGs and the metadata of one product, landing together; returns bytes written."""
    product = SafeProduct.from_path(task.product)
    target = Path(task.target)
    if target.is_dir():
        return 0
    with atomic_output(target) as temp, rasterio.Env(GDAL_PAM_ENABLED="NO"):
        temp.mkdir()
        for band_group in BAND_GROUPS:
            write_cog(temp / f"{band_group.name}.tif", product, band_group)
        (temp / METADATA).write_text(json.dumps(product_metadata(product), indent=2) + "\n")
        (temp / Path(item_name(product)).name).write_text(item_text(product))
    return sum(path.stat().st_size for path in target.iterdir())


@dataclass(frozen=True)
class CogOptions:
    safe_root: Path
    target: Path
    selection: Selection = field(default_factory=Selection)
    engine: DaskEngine = field(default_factory=DaskEngine)


def convert(options: CogOptions, show_progress: bool = True) -> list[str]:
    """Convert every product not yet converted; returns the lines of a summary."""
    started = time.perf_counter()
    products = options.selection.products(options.safe_root)
    folders = [(product, options.target / product_folder(product)) for product in products]
    tasks = [_Task(str(p.path), str(folder)) for p, folder in folders if not folder.is_dir()]
    with options.engine.running():
        written = compute_in_batches(
            convert_product,
            tasks,
            parallel=options.engine.parallel,
            label="products",
            show_progress=show_progress,
        )
    items = write_catalogue(options.target, products)
    return [
        f"{options.target}: {len(tasks)} of {len(products)} products converted "
        f"({int(np.sum(written, dtype=np.int64)) / 1e6:.0f} MB), {items} STAC items written, "
        f"in {time.perf_counter() - started:.1f} s"
    ]


def make(fmt: formats.Format, source: Path, target: Path, show_progress: bool) -> list[str]:
    """The format registry's hook: make the COG format at ``target`` from SAFE at ``source``."""
    return convert(CogOptions(source, target), show_progress)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Convert Sentinel-2 L1C SAFE products to COGs, one per product and band group.",
        prog="python -m sentinel2_l1c.convert_safe_to_cog",
    )
    add_conversion_arguments(
        parser,
        "SAFE root (default: $DSLAB_S2L1C_NETWORK_SAFE_PATH).",
        "COG root (default: $DSLAB_S2L1C_NETWORK_COG_PATH).",
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    locations = Locations.from_environment()
    options = CogOptions(
        safe_root=args.source or storages.NETWORK.path(locations, formats.SAFE),
        target=args.target or storages.NETWORK.path(locations, formats.COG),
        selection=Selection(tuple(args.tiles or ()), tuple(args.years or ())),
        engine=dask_engine(args, os.environ),
    )
    if args.show_job_script:
        print(options.engine.slurm.job_script())
        return 0
    for line in convert(options, show_progress=not args.quiet):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
