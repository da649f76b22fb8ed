"""One Sentinel-2 L1C SAFE product: its XML metadata, its band files, its grids.

Everything geometric is read from the product (``MTD_TL.xml``), never assumed: the offline
lab writes tiles smaller than ESA's 109.8 km. ESA's XML namespaces and prefixes vary between
versions, so tags are matched by local name after stripping namespaces.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.warp import transform as warp_transform
from rasterio.windows import Window

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.s2.bands import BANDS, RESOLUTIONS
from sentinel2_l1c.s2.names import SafeName, parse_utc

PRODUCT_METADATA = "MTD_MSIL1C.xml"
TILE_METADATA = "MTD_TL.xml"
_BAND_FILE_RE = re.compile(r"_(B\d[\dA])$")


@dataclass(frozen=True)
class Grid:
    """The pixel grid of one resolution, from ``MTD_TL.xml``."""

    resolution: int
    nrows: int
    ncols: int
    ulx: float
    uly: float
    xdim: float
    ydim: float

    @property
    def transform(self) -> Affine:
        return Affine(self.xdim, 0.0, self.ulx, 0.0, self.ydim, self.uly)

    @property
    def shape(self) -> tuple[int, int]:
        return (self.nrows, self.ncols)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the tile's CRS."""
        right = self.ulx + self.ncols * self.xdim
        bottom = self.uly + self.nrows * self.ydim
        return (self.ulx, bottom, right, self.uly)

    def x_centres(self) -> np.ndarray:
        return self.ulx + (np.arange(self.ncols) + 0.5) * self.xdim

    def y_centres(self) -> np.ndarray:
        return self.uly + (np.arange(self.nrows) + 0.5) * self.ydim


@dataclass(frozen=True)
class Wavelength:
    minimum: float
    maximum: float
    central: float


@dataclass(frozen=True)
class SafeProduct:
    """An L1C product on disk with the metadata the conversions and benchmark need."""

    path: Path
    name: SafeName
    start_time: datetime  # PRODUCT_START_TIME, millisecond precision
    sensing_time: datetime  # tile SENSING_TIME
    processing_baseline: str
    generation_time: datetime
    spacecraft: str
    orbit_number: int
    orbit_direction: str
    quantification_value: int
    radiometric_offsets: dict[str, int]
    wavelengths: dict[str, Wavelength]
    cloud_cover: float | None
    crs: str
    grids: dict[int, Grid]
    band_paths: dict[str, Path]

    @classmethod
    def from_path(cls, path: Path | str, band_files: bool = True) -> SafeProduct:
        """Read a product folder; raises InputDataError naming the file at fault.
        ``band_files=False``: a folder of the metadata files only (the band files are
        elsewhere, e.g. in CDSE's bucket)."""
        path = Path(path)
        name = SafeName.parse(path.name)
        if not path.is_dir():
            raise InputDataError(f"{path}: SAFE product folder not found")
        product_xml = _read_xml(path / PRODUCT_METADATA)
        info = _child(product_xml, "General_Info/Product_Info", path / PRODUCT_METADATA)
        image = _child(
            product_xml, "General_Info/Product_Image_Characteristics", path / PRODUCT_METADATA
        )
        band_paths = _band_paths(path, info, band_files)
        tile_xml_path = _granule_folder(path, band_paths) / TILE_METADATA
        tile_xml = _read_xml(tile_xml_path)
        text = _Texts(product_xml, path / PRODUCT_METADATA)
        tile_text = _Texts(tile_xml, tile_xml_path)
        cloud = product_xml.find("Quality_Indicators_Info/Cloud_Coverage_Assessment")
        return cls(
            path=path,
            name=name,
            start_time=text.time("General_Info/Product_Info/PRODUCT_START_TIME"),
            sensing_time=tile_text.time("General_Info/SENSING_TIME"),
            processing_baseline=text.get("General_Info/Product_Info/PROCESSING_BASELINE"),
            generation_time=text.time("General_Info/Product_Info/GENERATION_TIME"),
            spacecraft=text.get("General_Info/Product_Info/Datatake/SPACECRAFT_NAME"),
            orbit_number=text.number("General_Info/Product_Info/Datatake/SENSING_ORBIT_NUMBER"),
            orbit_direction=text.get("General_Info/Product_Info/Datatake/SENSING_ORBIT_DIRECTION"),
            quantification_value=text.number(
                "General_Info/Product_Image_Characteristics/QUANTIFICATION_VALUE"
            ),
            radiometric_offsets=_radiometric_offsets(image, path / PRODUCT_METADATA),
            wavelengths=_wavelengths(image, path / PRODUCT_METADATA),
            cloud_cover=float(cloud.text) if cloud is not None and cloud.text else None,
            crs=tile_text.get("Geometric_Info/Tile_Geocoding/HORIZONTAL_CS_CODE"),
            grids=_grids(tile_xml, tile_xml_path),
            band_paths=band_paths,
        )

    @property
    def tile(self) -> str:
        return self.name.tile

    @property
    def year(self) -> int:
        return self.start_time.year

    @property
    def product_id(self) -> str:
        """The product name without ``.SAFE``, as STAC item ids have it."""
        return self.name.name.removesuffix(".SAFE")

    @property
    def start_time64(self) -> np.datetime64:
        """PRODUCT_START_TIME as a naive-UTC ``datetime64[ms]``."""
        return np.datetime64(self.start_time.replace(tzinfo=None), "ms")

    @property
    def epsg(self) -> int:
        return int(self.crs.split(":")[1])

    def outline(self) -> tuple[dict[str, Any], list[float]]:
        """The tile's outline and bounding box in longitude and latitude (``lonlat_outline``)."""
        return lonlat_outline(self.crs, self.grid(10).bounds)

    def grid(self, resolution: int) -> Grid:
        return self.grids[resolution]

    def read_bands(self, bands: Iterable[str], window: Window | None = None) -> np.ndarray:
        """Decode ``bands`` (same resolution) within ``window`` as (band, y, x) uint16."""
        return np.stack([read_band(self.band_paths[band], window) for band in bands])

    def band_path(self, band: str) -> Path:
        return self.band_paths[band]


def read_band(path: Path | str, window: Window | None = None) -> np.ndarray:
    """Decode one band file (or a window of it); InputDataError names a file that fails."""
    try:
        with rasterio.open(path) as dataset:
            return dataset.read(1, window=window)
    except RasterioError as err:
        raise InputDataError(f"{path}: cannot read JP2 ({err})") from err


def _read_xml(path: Path) -> ET.Element:
    if not path.is_file():
        raise InputDataError(f"{path}: metadata file missing")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as err:
        raise InputDataError(f"{path}: corrupt XML ({err})") from err
    for element in root.iter():
        if isinstance(element.tag, str) and "}" in element.tag:
            element.tag = element.tag.rsplit("}", 1)[1]
    return root


def _child(root: ET.Element, xpath: str, source: Path) -> ET.Element:
    element = root.find(xpath)
    if element is None:
        raise InputDataError(f"{source}: missing element {xpath}")
    return element


class _Texts:
    """Typed text lookups in one XML file, raising errors that name the file and element."""

    def __init__(self, root: ET.Element, source: Path) -> None:
        self.root = root
        self.source = source

    def get(self, xpath: str, element: ET.Element | None = None) -> str:
        found = (element if element is not None else self.root).find(xpath)
        if found is None or not (found.text or "").strip():
            raise InputDataError(f"{self.source}: missing element {xpath}")
        return found.text.strip()

    def number(self, xpath: str, element: ET.Element | None = None) -> int:
        text = self.get(xpath, element)
        try:
            return int(float(text))
        except ValueError:
            raise InputDataError(f"{self.source}: {xpath} is not a number: {text!r}") from None

    def real(self, xpath: str, element: ET.Element | None = None) -> float:
        text = self.get(xpath, element)
        try:
            return float(text)
        except ValueError:
            raise InputDataError(f"{self.source}: {xpath} is not a number: {text!r}") from None

    def time(self, xpath: str) -> datetime:
        text = self.get(xpath)
        try:
            return parse_utc(text)
        except ValueError:
            raise InputDataError(f"{self.source}: {xpath} is not a UTC time: {text!r}") from None


def _band_paths(product: Path, info: ET.Element, present: bool) -> dict[str, Path]:
    source = product / PRODUCT_METADATA
    paths: dict[str, Path] = {}
    for element in info.iterfind("Product_Organisation/Granule_List/Granule/IMAGE_FILE"):
        relative = (element.text or "").strip()
        match = _BAND_FILE_RE.search(relative)
        if match:
            paths[match[1]] = product / f"{relative}.jp2"
    missing_entries = [band for band in BANDS if band not in paths]
    if missing_entries:
        raise InputDataError(f"{source}: no IMAGE_FILE entry for {', '.join(missing_entries)}")
    for band in BANDS:
        if present and not paths[band].is_file():
            raise InputDataError(f"{paths[band]}: band file missing")
    return {band: paths[band] for band in BANDS}


def _granule_folder(product: Path, band_paths: dict[str, Path]) -> Path:
    # .../GRANULE/<granule>/IMG_DATA/<file>.jp2
    return band_paths[BANDS[0]].parent.parent


def _radiometric_offsets(image: ET.Element, source: Path) -> dict[str, int]:
    """Per-band offsets (baseline >= 04.00: -1000); zero for older products without the list."""
    offsets = {band: 0 for band in BANDS}
    texts = _Texts(image, source)
    for element in image.iterfind("Radiometric_Offset_List/RADIO_ADD_OFFSET"):
        band = _band_by_id(element.get("band_id"), source)
        offsets[band] = texts.number(".", element)
    return offsets


def _wavelengths(image: ET.Element, source: Path) -> dict[str, Wavelength]:
    texts = _Texts(image, source)
    result: dict[str, Wavelength] = {}
    for element in image.iterfind("Spectral_Information_List/Spectral_Information"):
        band = _band_by_id(element.get("bandId"), source)
        result[band] = Wavelength(
            minimum=texts.real("Wavelength/MIN", element),
            maximum=texts.real("Wavelength/MAX", element),
            central=texts.real("Wavelength/CENTRAL", element),
        )
    missing = [band for band in BANDS if band not in result]
    if missing:
        raise InputDataError(f"{source}: no Spectral_Information for {', '.join(missing)}")
    return result


def _band_by_id(band_id: str | None, source: Path) -> str:
    try:
        return BANDS[int(band_id or "")]
    except (ValueError, IndexError):
        raise InputDataError(f"{source}: invalid band id {band_id!r}") from None


def _grids(tile_xml: ET.Element, source: Path) -> dict[int, Grid]:
    texts = _Texts(tile_xml, source)
    geocoding = _child(tile_xml, "Geometric_Info/Tile_Geocoding", source)
    grids: dict[int, Grid] = {}
    for resolution in RESOLUTIONS:
        size = geocoding.find(f"Size[@resolution='{resolution}']")
        position = geocoding.find(f"Geoposition[@resolution='{resolution}']")
        if size is None or position is None:
            raise InputDataError(
                f"{source}: missing Size or Geoposition for resolution {resolution}"
            )
        grids[resolution] = Grid(
            resolution=resolution,
            nrows=texts.number("NROWS", size),
            ncols=texts.number("NCOLS", size),
            ulx=texts.real("ULX", position),
            uly=texts.real("ULY", position),
            xdim=texts.real("XDIM", position),
            ydim=texts.real("YDIM", position),
        )
    return grids


def lonlat_outline(
    crs: str, bounds: tuple[float, float, float, float]
) -> tuple[dict[str, Any], list[float]]:
    """A projected box (left, bottom, right, top) as a GeoJSON polygon in longitude and
    latitude (counter-clockwise, as RFC 7946 asks) and its bounding box: STAC's geometry."""
    left, bottom, right, top = bounds
    lons, lats = warp_transform(
        crs, "EPSG:4326", [left, right, right, left, left], [bottom, bottom, top, top, bottom]
    )
    ring = [[round(lon, 7), round(lat, 7)] for lon, lat in zip(lons, lats, strict=True)]
    xs, ys = [c[0] for c in ring], [c[1] for c in ring]
    return {"type": "Polygon", "coordinates": [ring]}, [min(xs), min(ys), max(xs), max(ys)]
