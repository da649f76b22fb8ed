"""Write realistic synthetic Sentinel-2 L1C SAFE products of a tile into a SAFE root.

The products have ESA's folder tree and file names (~67 files), real XML metadata with true
values, and 13 band JP2 files written by GDAL's JP2OpenJPEG driver as ESA writes them:
15-bit samples, lossless 5/3 wavelet, 5 resolution levels, 64×64 code-blocks, 256×256
precincts, one quality layer in LRCP order, 1024/640/192 px tiles, PLT markers (``--tlm``
adds TLM markers as products since February 2026 have). Pixels come from ``scene.Scene``.

Simplifications, documented rather than hidden: quality masks (MSK_DETFOO, MSK_QUALIT,
MSK_CLASSI) are written on the 60 m grid for every band; AUX_DATA files are placeholders;
TCI is lossless. ``--scale N`` divides the tile's pixel counts by N (N must divide 1830,
so the 10/20/60 m grids stay aligned) at unchanged pixel sizes.

    python -m sentinel2_l1c.lab.synthetic --tile 35VLH --start 2024-01-01 --end 2025-01-01
"""

from __future__ import annotations

import argparse
import logging
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform as warp_transform

from sentinel2_l1c.cube.layouts import JP2_TILE
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.lab import safe_xml
from sentinel2_l1c.lab.scene import BAND_BITS, Scene
from sentinel2_l1c.lab.schedule import Acquisition, plan_acquisitions
from sentinel2_l1c.lab.tile_grid import FULL_TILE_SIZE, tile_origin
from sentinel2_l1c.run.cli import new_parser, options_from_args, run_cli
from sentinel2_l1c.run.progress import progress_bar
from sentinel2_l1c.s2.bands import BANDS, RESOLUTIONS, band_resolution, parse_tile_id
from sentinel2_l1c.s2.product import Grid
from sentinel2_l1c.storage.files import atomic_output, remove_tree

log = logging.getLogger(__name__)

FULL_SIZE_60M = 1830
PREVIEW_STRIDE = 32  # the PVI preview is at 320 m
DEFAULT_OUTPUT = Path("lab/eodata")
# Quality reports ESA puts in the granule's and the datastrip's QI_DATA.
_GRANULE_REPORTS = ("FORMAT_CORRECTNESS", "GENERAL_QUALITY", "GEOMETRIC_QUALITY", "SENSOR_QUALITY")
_DATASTRIP_REPORTS = _GRANULE_REPORTS + ("RADIOMETRIC_QUALITY",)
_REP_INFO = (
    "S2_PDI_Level-1C_Tile_Metadata.xsd",
    "S2_PDI_Level-1C_Datastrip_Metadata.xsd",
    "S2_User_Product_Level-1C_Metadata.xsd",
)


@dataclass(frozen=True)
class SyntheticOptions:
    """What to generate; validated on construction."""

    tile: str = "35VLH"
    start: date = date(2024, 1, 1)
    end: date = date(2025, 1, 1)
    interval_days: int | None = 2
    count: int | None = None
    scale: int = 10
    seed: int = 0
    duplicates: int = 0
    cloudy_share: float = 0.3
    tlm: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tile", parse_tile_id(self.tile))
        if self.end <= self.start:
            raise ConfigError(f"end date {self.end} must be after start date {self.start}")
        if self.scale < 1 or FULL_SIZE_60M % self.scale:
            divisors = [n for n in range(1, FULL_SIZE_60M + 1) if FULL_SIZE_60M % n == 0]
            raise ConfigError(
                f"scale {self.scale} must divide {FULL_SIZE_60M} so the 10/20/60 m grids stay "
                f"aligned; choose one of {', '.join(map(str, divisors[:8]))}, …"
            )
        if self.interval_days is not None and self.interval_days < 1:
            raise ConfigError(f"interval_days must be at least 1, got {self.interval_days}")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"count must be at least 1, got {self.count}")
        if self.duplicates < 0:
            raise ConfigError(f"duplicates must not be negative, got {self.duplicates}")
        if not 0 <= self.cloudy_share <= 1:
            raise ConfigError(f"cloudy_share must be between 0 and 1, got {self.cloudy_share}")

    def acquisitions(self) -> list[Acquisition]:
        return plan_acquisitions(
            self.tile,
            self.start,
            self.end,
            interval_days=None if self.count else self.interval_days,
            count=self.count,
            cloudy_share=self.cloudy_share,
            duplicates=self.duplicates,
            seed=self.seed,
        )


@dataclass(frozen=True)
class TileGeometry:
    epsg: int
    grids: dict[int, Grid]

    @property
    def extent(self) -> float:
        grid = self.grids[10]
        return grid.ncols * grid.xdim

    @classmethod
    def for_tile(cls, tile: str, scale: int) -> TileGeometry:
        origin = tile_origin(tile)
        grids = {}
        for resolution in RESOLUTIONS:
            pixels = FULL_TILE_SIZE // resolution // scale
            grids[resolution] = Grid(
                resolution, pixels, pixels, origin.ulx, origin.uly, resolution, -resolution
            )
        return cls(epsg=origin.epsg, grids=grids)

    def footprint(self) -> list[tuple[float, float]]:
        """Tile corners as a closed (lon, lat) ring, clockwise from the upper left."""
        left, bottom, right, top = self.grids[10].bounds
        xs = [left, right, right, left, left]
        ys = [top, top, bottom, bottom, top]
        lons, lats = warp_transform(CRS.from_epsg(self.epsg), CRS.from_epsg(4326), xs, ys)
        return list(zip(lons, lats, strict=False))


class ProductWriter:
    """Writes synthetic products of one tile; a scene is shared so layers are reused."""

    def __init__(self, options: SyntheticOptions) -> None:
        self.options = options
        self.geometry = TileGeometry.for_tile(options.tile, options.scale)
        self.scene = Scene(options.tile, options.seed, self.geometry.extent)

    def write(self, acquisition: Acquisition, safe_root: Path) -> Path:
        """Write one product under ``safe_root`` in CDSE layout; skip it if it is complete."""
        name = acquisition.safe_name
        target = Path(safe_root) / name.cdse_path
        if target.is_dir():
            log.debug("exists, skipping: %s", target)
            return target
        for stale in target.parent.glob(f".{target.name}.tmp-*"):
            remove_tree(stale)
        # No .aux.xml side files; OpenJPEG encodes with every core.
        with (
            atomic_output(target) as temp,
            rasterio.Env(GDAL_PAM_ENABLED="NO", GDAL_NUM_THREADS="ALL_CPUS"),
        ):
            self._write_tree(acquisition, temp)
        return target

    def _write_tree(self, acquisition: Acquisition, product: Path) -> None:
        granule = product / "GRANULE" / acquisition.granule_name
        stem = acquisition.band_file_stem
        img_data, qi_data = granule / "IMG_DATA", granule / "QI_DATA"
        for folder in (
            img_data,
            qi_data,
            granule / "AUX_DATA",
            product / "HTML",
            product / "rep_info",
        ):
            folder.mkdir(parents=True)
        grids = self.geometry.grids

        for band in sorted(BANDS, key=band_resolution):  # one resolution's layers at a time
            grid = grids[band_resolution(band)]
            self._write_jp2(
                img_data / f"{stem}_{band}.jp2", self.scene.band(acquisition, band, grid), grid
            )
        tci = self._true_colour(acquisition)
        self._write_jp2(img_data / f"{stem}_TCI.jp2", tci, grids[10])
        preview_grid = _coarser(grids[10], PREVIEW_STRIDE)
        self._write_jp2(
            qi_data / f"{stem}_PVI.jp2",
            tci[:, ::PREVIEW_STRIDE, ::PREVIEW_STRIDE][
                :, : preview_grid.nrows, : preview_grid.ncols
            ],
            preview_grid,
        )
        classes = self.scene.classification(acquisition, grids[60])
        self._write_jp2(qi_data / "MSK_CLASSI_B00.jp2", classes, grids[60])
        detectors = self._detector_footprint(acquisition)
        for band in BANDS:
            self._write_jp2(qi_data / f"MSK_DETFOO_{band}.jp2", detectors, grids[60])
            self._write_jp2(
                qi_data / f"MSK_QUALIT_{band}.jp2",
                np.zeros((8, *grids[60].shape), np.uint8),
                grids[60],
            )
        for report in _GRANULE_REPORTS:
            (qi_data / f"{report}.xml").write_text(
                safe_xml.quality_report(report, acquisition.granule_name)
            )

        cloud_percent = _cloud_percent(classes, self.scene.nodata_mask(acquisition, grids[60]))
        footprint = self.geometry.footprint()
        latitude = float(np.mean([lat for _, lat in footprint[:4]]))
        (granule / "MTD_TL.xml").write_text(
            safe_xml.tile_metadata(acquisition, self.geometry.epsg, grids, latitude, cloud_percent)
        )
        for aux in ("AUX_CAMSFO", "AUX_ECMWFT"):
            (granule / "AUX_DATA" / aux).write_bytes(_placeholder_grib(aux, acquisition))
        self._write_datastrip(acquisition, product)
        self._write_html(product)
        for schema in _REP_INFO:
            (product / "rep_info" / schema).write_text(_schema_stub(schema))

        relative = granule.relative_to(product) / "IMG_DATA"
        image_files = [f"{relative.as_posix()}/{stem}_{band}" for band in BANDS]
        image_files.append(f"{relative.as_posix()}/{stem}_TCI")
        (product / "MTD_MSIL1C.xml").write_text(
            safe_xml.product_metadata(acquisition, image_files, footprint, cloud_percent)
        )
        (product / "INSPIRE.xml").write_text(safe_xml.inspire_metadata(acquisition, footprint))
        files = [path for path in product.rglob("*") if path.is_file()]
        (product / "manifest.safe").write_text(safe_xml.manifest(acquisition, product, files))

    def _true_colour(self, acquisition: Acquisition) -> np.ndarray:
        """TCI: B04, B03, B02 mapped from reflectance 0–0.2 to 1–255, 0 = no data."""
        grid = self.geometry.grids[10]
        layers = []
        for band in ("B04", "B03", "B02"):
            digital = self.scene.band(acquisition, band, grid).astype(np.float32)
            scaled = np.clip(np.rint((digital - 1000) / 2000 * 254) + 1, 1, 255).astype(np.uint8)
            scaled[digital == 0] = 0
            layers.append(scaled)
        return np.stack(layers)

    def _detector_footprint(self, acquisition: Acquisition) -> np.ndarray:
        """Detector numbers 1–12 in slanted stripes, 0 where there is no data."""
        grid = self.geometry.grids[60]
        columns = np.arange(grid.ncols)[None, :] + 0.2 * np.arange(grid.nrows)[:, None]
        detectors = (columns * 12 // (grid.ncols * 1.2) % 12 + 1).astype(np.uint8)
        nodata = self.scene.nodata_mask(acquisition, grid)
        if nodata is not None:
            detectors[nodata] = 0
        return detectors

    def _write_datastrip(self, acquisition: Acquisition, product: Path) -> None:
        datastrip = product / "DATASTRIP" / acquisition.datastrip_name
        (datastrip / "QI_DATA").mkdir(parents=True)
        (datastrip / "MTD_DS.xml").write_text(safe_xml.datastrip_metadata(acquisition))
        for report in _DATASTRIP_REPORTS:
            (datastrip / "QI_DATA" / f"{report}.xml").write_text(
                safe_xml.quality_report(report, acquisition.datastrip_name)
            )

    def _write_html(self, product: Path) -> None:
        html = product / "HTML"
        (html / "UserProduct_index.html").write_text(
            "<html><head><title>Sentinel-2 Level-1C product</title></head>"
            f"<body><h1>{product.name}</h1></body></html>\n"
        )
        (html / "UserProduct_index.xsl").write_text(
            '<?xml version="1.0"?>\n<xsl:stylesheet version="1.0" '
            'xmlns:xsl="http://www.w3.org/1999/XSL/Transform"/>\n'
        )
        for number in (1, 2, 3):
            _write_picture(html / f"banner_{number}.png", "PNG", number)
        _write_picture(html / "star_bg.jpg", "JPEG", 4)

    def _write_jp2(self, path: Path, pixels: np.ndarray, grid: Grid) -> None:
        """Lossless JP2 as ESA writes it, georeferenced."""
        layers = pixels if pixels.ndim == 3 else pixels[None]
        height, width = layers.shape[1:]
        options = esa_jp2_options(
            height, width, layers.dtype, JP2_TILE.get(grid.resolution, 1024), self.options.tlm
        )
        with rasterio.open(
            path,
            "w",
            driver="JP2OpenJPEG",
            width=width,
            height=height,
            count=layers.shape[0],
            dtype=layers.dtype,
            crs=CRS.from_epsg(self.geometry.epsg),
            transform=grid.transform,
            **options,
        ) as dataset:
            dataset.write(layers)


def esa_jp2_options(
    height: int, width: int, dtype: np.dtype, block: int, tlm: bool = False
) -> dict[str, object]:
    """GDAL JP2OpenJPEG creation options of ESA's codestream: lossless 5/3 wavelet, up to
    5 resolution levels, 64×64 code-blocks, 256×256 precincts (GDAL's defaults differ: 512×512
    at full resolution, narrower below), LRCP, PLT markers, ``block`` px tiles."""
    resolutions = max(1, min(5, int(math.log2(min(height, width))) - 2))
    options: dict[str, object] = {
        "QUALITY": 100,
        "REVERSIBLE": "YES",
        "RESOLUTIONS": resolutions,
        "PRECINCTS": ",".join(["{256,256}"] * resolutions),
        "CODEBLOCK_WIDTH": 64,
        "CODEBLOCK_HEIGHT": 64,
        "PROGRESSION": "LRCP",
        "PLT": "YES",
        "TLM": "YES" if tlm else "NO",
        "GeoJP2": "NO",
        "GMLJP2": "YES",
    }
    if np.dtype(dtype) == np.uint16:
        options["NBITS"] = BAND_BITS
    if max(height, width) > block:  # smaller images are one JP2 tile (GDAL's default)
        # rasterio passes only the lower-case spelling on (BLOCKXSIZE is dropped).
        options.update(blockxsize=block, blockysize=block)
    return options


def _coarser(grid: Grid, stride: int) -> Grid:
    size = grid.xdim * stride
    return Grid(
        grid.resolution * stride,
        math.ceil(grid.nrows / stride),
        math.ceil(grid.ncols / stride),
        grid.ulx,
        grid.uly,
        size,
        -size,
    )


def _cloud_percent(classes: np.ndarray, nodata: np.ndarray | None) -> float:
    cloudy = (classes[0] > 0) | (classes[1] > 0)
    valid = np.ones(cloudy.shape, bool) if nodata is None else ~nodata
    return float(100 * cloudy[valid].mean()) if valid.any() else 0.0


def _write_picture(path: Path, driver: str, seed: int) -> None:
    """A small real PNG/JPEG standing in for the HTML page's pictures (not georeferenced)."""
    pixels = np.random.default_rng(seed).integers(0, 255, size=(3, 16, 64), dtype=np.uint8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver=driver, width=64, height=16, count=3, dtype="uint8"
        ) as dataset:
            dataset.write(pixels)


def _placeholder_grib(kind: str, acquisition: Acquisition) -> bytes:
    """Stand-in for ESA's GRIB auxiliary data: readers of this lab never open it."""
    return f"GRIB placeholder {kind} {acquisition.safe_name.name}\n".encode().ljust(512, b"\0")


def _schema_stub(name: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema"><!-- {name} --></xs:schema>\n'
    )


def generate(
    options: SyntheticOptions, safe_root: Path, show_progress: bool = True
) -> Iterator[Path]:
    """Write every planned product under ``safe_root``; yields product folders as they land."""
    acquisitions = options.acquisitions()
    writer = ProductWriter(options)
    with progress_bar(len(acquisitions), "products", enabled=show_progress) as bar:
        bar.update(0)
        for number, acquisition in enumerate(acquisitions, 1):
            yield writer.write(acquisition, safe_root)
            bar.update(number)


# --------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------


def _iso_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Write synthetic Sentinel-2 L1C SAFE products of one tile (CDSE folder layout).",
        prog="python -m sentinel2_l1c.lab.synthetic",
    )
    defaults = SyntheticOptions()
    parser.add_argument("--tile", default=defaults.tile, help="MGRS tile id.")
    parser.add_argument("--start", type=_iso_date, default=defaults.start, help="First date (UTC).")
    parser.add_argument("--end", type=_iso_date, default=defaults.end, help="End date, excluded.")
    timing = parser.add_mutually_exclusive_group()
    timing.add_argument(
        "--interval-days",
        type=int,
        default=defaults.interval_days,
        help=f"Days between acquisitions (default: {defaults.interval_days}).",
    )
    timing.add_argument(
        "--count",
        type=int,
        help="Number of acquisitions, spread evenly (instead of --interval-days).",
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=defaults.scale,
        help="Divide pixel counts by this (must divide 1830; 1 = full size).",
    )
    parser.add_argument(
        "--seed", type=int, default=defaults.seed, help="Random seed: same seed, same products."
    )
    parser.add_argument(
        "--duplicates",
        type=int,
        default=defaults.duplicates,
        help="Extra reprocessed products of existing datatakes.",
    )
    parser.add_argument(
        "--cloudy-share",
        type=float,
        default=defaults.cloudy_share,
        help="Share of cloudy acquisitions.",
    )
    parser.add_argument(
        "--tlm",
        action="store_true",
        help="Write TLM markers in the JP2 files (products since 2026).",
    )
    parser.add_argument(
        "--target", type=Path, default=DEFAULT_OUTPUT, help="SAFE root to write into."
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    options = options_from_args(SyntheticOptions, args)
    products = list(generate(options, args.target, show_progress=not args.quiet))
    print(f"{len(products)} products of tile {options.tile} under {args.target}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
