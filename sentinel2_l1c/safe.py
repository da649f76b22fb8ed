"""One Sentinel-2 L1C SAFE product: its name, its XML metadata, its band files, its grids.

Everything geometric is read from the product (``MTD_TL.xml``), never assumed: the offline
lab writes tiles smaller than ESA's 109.8 km. Also lists the products of a tile-year under a
SAFE root in CDSE layout (``Sentinel-2/MSI/L1C/YYYY/MM/DD/<name>.SAFE``), one per datatake.
"""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import RasterioError
from rasterio.windows import Window

from .errors import InputDataError
from .utils import BANDS, RESOLUTIONS, parse_tile_id

log = logging.getLogger(__name__)

CDSE_PREFIX = PurePosixPath("Sentinel-2/MSI/L1C")
PRODUCT_METADATA = "MTD_MSIL1C.xml"
TILE_METADATA = "MTD_TL.xml"

_NAME_RE = re.compile(
    r"^(?P<mission>S2[A-D])_MSIL1C_(?P<datatake>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_(?P<generation>\d{8}T\d{6})\.SAFE$"
)
_BAND_FILE_RE = re.compile(r"_(B\d[\dA])$")


def _compact_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def parse_utc(text: str) -> datetime:
    """Parse an ISO 8601 UTC time as ESA writes it (``2024-02-21T09:50:31.024Z``)."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_utc(value: datetime, digits: int = 3) -> str:
    """Format a UTC time as ESA does, with ``digits`` fractional digits and a ``Z``."""
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[: len(text) - 6 + digits] if digits else text[:-7]) + "Z"


@dataclass(frozen=True)
class SafeName:
    """The fields encoded in an L1C product name."""

    name: str
    mission: str
    datatake_start: datetime
    baseline: str  # "05.10"
    relative_orbit: int
    tile: str
    generation_time: datetime

    @classmethod
    def parse(cls, name: str) -> SafeName:
        """Parse ``S2A_MSIL1C_20240221T095031_N0510_R079_T35VLH_20240221T103209.SAFE``."""
        match = _NAME_RE.match(name)
        if not match:
            raise InputDataError(
                f"{name}: not a Sentinel-2 L1C SAFE name (expected "
                "S2?_MSIL1C_<datatake start>_N<baseline>_R<orbit>_T<tile>_<generation time>.SAFE)"
            )
        try:
            datatake = _compact_time(match["datatake"])
            generation = _compact_time(match["generation"])
        except ValueError:
            raise InputDataError(f"{name}: invalid date in SAFE name") from None
        digits = match["baseline"]
        return cls(
            name=name,
            mission=match["mission"],
            datatake_start=datatake,
            baseline=f"{digits[:2]}.{digits[2:]}",
            relative_orbit=int(match["orbit"]),
            tile=match["tile"],
            generation_time=generation,
        )

    @property
    def datatake_key(self) -> tuple[str, datetime, str]:
        """Identifies one acquisition of one tile, whatever its processing."""
        return (self.mission, self.datatake_start, self.tile)

    @property
    def baseline_number(self) -> int:
        """Processing baseline as a comparable number (``05.10`` → 510)."""
        return int(self.baseline.replace(".", ""))

    @property
    def cdse_folder(self) -> PurePosixPath:
        """Relative folder of the product in CDSE layout (``Sentinel-2/MSI/L1C/YYYY/MM/DD``)."""
        return CDSE_PREFIX / self.datatake_start.strftime("%Y/%m/%d")

    @property
    def cdse_path(self) -> PurePosixPath:
        """Relative path of the product folder in CDSE layout."""
        return self.cdse_folder / self.name


def resolve_duplicates(names: Iterable[SafeName]) -> list[SafeName]:
    """One product per datatake and tile: highest baseline, then latest generation, by time."""
    best: dict[tuple[str, datetime, str], SafeName] = {}
    for name in names:
        key = name.datatake_key
        current = best.get(key)
        rank = (name.baseline_number, name.generation_time, name.name)
        if current is None or rank > (
            current.baseline_number,
            current.generation_time,
            current.name,
        ):
            best[key] = name
    return sorted(best.values(), key=lambda name: (name.datatake_start, name.mission, name.tile))


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
    def from_path(cls, path: Path | str) -> SafeProduct:
        """Read a product folder; raises InputDataError naming the file at fault."""
        path = Path(path)
        name = SafeName.parse(path.name)
        if not path.is_dir():
            raise InputDataError(f"{path}: SAFE product folder not found")
        product_xml = _read_xml(path / PRODUCT_METADATA)
        info = _child(product_xml, "General_Info/Product_Info", path / PRODUCT_METADATA)
        image = _child(
            product_xml, "General_Info/Product_Image_Characteristics", path / PRODUCT_METADATA
        )
        band_paths = _band_paths(path, info)
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


def safe_folders(safe_root: Path, year: int | None = None) -> list[Path]:
    """Every ``*.SAFE`` folder under a SAFE root in CDSE layout (names unchecked, duplicates kept)."""
    year_glob = str(year) if year is not None else "[0-9][0-9][0-9][0-9]"
    return sorted(Path(safe_root).glob(f"{CDSE_PREFIX}/{year_glob}/[0-9][0-9]/[0-9][0-9]/*.SAFE"))


def product_paths(safe_root: Path, tile: str | None = None, year: int | None = None) -> list[Path]:
    """Product folders under ``safe_root`` (CDSE layout), duplicates resolved, by time.

    Only names are read, so this is cheap; folders that are not L1C SAFE names (temporary
    downloads, other levels) are skipped.
    """
    root = Path(safe_root)
    if not root.is_dir():
        raise InputDataError(
            f"SAFE root {root} does not exist: set DSLAB_S2L1C_NETWORK_SAFE_PATH or run intake"
        )
    names: dict[str, Path] = {}
    for folder in safe_folders(root, year):
        try:
            name = SafeName.parse(folder.name)
        except InputDataError:
            log.warning("skipping %s: not a Sentinel-2 L1C product name", folder)
            continue
        if tile is None or name.tile == tile:
            names[name.name] = folder
    return [names[name.name] for name in resolve_duplicates(SafeName.parse(n) for n in names)]


def list_products(
    safe_root: Path, tile: str | None = None, year: int | None = None
) -> list[SafeProduct]:
    """Products of ``tile`` and UTC ``year`` under ``safe_root``, one per datatake, by time."""
    products = [SafeProduct.from_path(path) for path in product_paths(safe_root, tile, year)]
    if year is not None:
        products = [product for product in products if product.year == year]
    return sorted(products, key=lambda product: (product.start_time, product.name.name))


@dataclass(frozen=True)
class Selection:
    """The tile-years a converter works on: every tile and year found, or only these."""

    tiles: tuple[str, ...] = ()
    years: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiles", tuple(dict.fromkeys(map(parse_tile_id, self.tiles))))
        object.__setattr__(self, "years", tuple(dict.fromkeys(self.years)))

    def products(self, safe_root: Path) -> list[SafeProduct]:
        """The selected products under ``safe_root``, by time; InputDataError if there are none."""
        found = [
            product
            for tile in self.tiles or (None,)
            for year in self.years or (None,)
            for product in list_products(safe_root, tile, year)
        ]
        if not found:
            raise InputDataError(
                f"no L1C products{self.describe()} under {safe_root}: run intake first"
            )
        return sorted(found, key=lambda product: (product.start_time, product.name.name))

    def describe(self) -> str:
        """`` of tile 35VLH in 2024``-style words, empty when everything is selected."""
        tiles = (
            f" of tile{'s' * (len(self.tiles) > 1)} {' '.join(self.tiles)}" if self.tiles else ""
        )
        years = f" in {' '.join(map(str, self.years))}" if self.years else ""
        return tiles + years


def tile_years(products: Sequence[SafeProduct]) -> dict[tuple[str, int], list[SafeProduct]]:
    """Products by (tile, year), each in the given order."""
    grouped: dict[tuple[str, int], list[SafeProduct]] = defaultdict(list)
    for product in products:
        grouped[(product.tile, product.year)].append(product)
    return dict(grouped)


# --------------------------------------------------------------------------------------
# XML helpers: ESA's namespaces and prefixes vary between versions, so tags are matched by
# local name after stripping namespaces.
# --------------------------------------------------------------------------------------


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


def _band_paths(product: Path, info: ET.Element) -> dict[str, Path]:
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
        if not paths[band].is_file():
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
