"""Convert SAFE products to Cloud Optimized GeoTIFFs: one multi-band COG per band group.

Layout under the COG root::

    {tile}/{year}/{product_id}/B02_B03_B04_B08.tif
                              /B05_B06_B07_B8A_B11_B12.tif
                              /B01_B09_B10.tif
                              /product.json      product id, PRODUCT_START_TIME (ms), ...

Bands are stacked in band-group order with their names as descriptions and wavelengths as
tags; DEFLATE with horizontal predictor, 512 px blocks, overviews (nodata-aware average),
nodata 0; written by GDAL's COG driver through rasterio, in-process. Each product folder lands
atomically; a rerun skips products already converted. Products run as parallel Dask tasks.

    python -m sentinel2_l1c.convert_safe_to_cog [--tile 35VLH] [--year 2024]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS

from .errors import InputDataError
from .safe import SafeProduct, format_utc, list_products
from .utils import (
    BAND_GROUPS,
    BandGroup,
    add_conversion_arguments,
    atomic_output,
    compute_in_batches,
    new_parser,
    parse_tile_id,
    run_cli,
    storage_path,
)

METADATA = "product.json"
COG_OPTIONS = {
    "compress": "DEFLATE",
    "predictor": 2,
    "blocksize": 512,
    "overviews": "AUTO",
    "overview_resampling": "AVERAGE",
    "bigtiff": "IF_SAFER",
}


def product_folder(cog_root: Path, product: SafeProduct) -> Path:
    return Path(cog_root) / product.tile / str(product.year) / product.product_id


def cog_path(cog_root: Path, product: SafeProduct, band_group: BandGroup) -> Path:
    return product_folder(cog_root, product) / f"{band_group.name}.tif"


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
    return sum(path.stat().st_size for path in target.iterdir())


@dataclass(frozen=True)
class CogOptions:
    safe_root: Path
    target: Path
    tile: str | None = None
    year: int | None = None
    workers: int | None = None
    scheduler: str | None = None

    def __post_init__(self) -> None:
        if self.tile is not None:
            object.__setattr__(self, "tile", parse_tile_id(self.tile))


def convert(options: CogOptions, show_progress: bool = True) -> list[str]:
    """Convert every product not yet converted; returns the lines of a summary."""
    started = time.perf_counter()
    products = list_products(options.safe_root, options.tile, options.year)
    if not products:
        raise InputDataError(f"no L1C products under {options.safe_root}: run intake first")
    tasks = [
        _Task(str(product.path), str(product_folder(options.target, product)))
        for product in products
        if not product_folder(options.target, product).is_dir()
    ]
    written = compute_in_batches(
        convert_product,
        tasks,
        workers=options.workers,
        scheduler=options.scheduler,
        label="products",
        show_progress=show_progress,
    )
    return [
        f"{options.target}: {len(tasks)} of {len(products)} products converted "
        f"({int(np.sum(written, dtype=np.int64)) / 1e6:.0f} MB) in {time.perf_counter() - started:.1f} s"
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Convert Sentinel-2 L1C SAFE products to COGs, one per product and band group.",
        prog="python -m sentinel2_l1c.convert_safe_to_cog",
    )
    add_conversion_arguments(parser, "COG root (default: $DSLAB_S2L1C_NETWORK_COG_PATH).")
    return parser


def _run(args: argparse.Namespace) -> int:
    options = CogOptions(
        safe_root=args.source or storage_path("network", "safe"),
        target=args.target or storage_path("network", "cog"),
        tile=args.tile,
        year=args.year,
        workers=args.workers,
        scheduler=args.scheduler,
    )
    for line in convert(options, show_progress=not args.quiet):
        print(line)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
