"""The products under a SAFE root in CDSE layout (``Sentinel-2/MSI/L1C/YYYY/MM/DD/*.SAFE``):
listed by name, one per datatake, selected by tile and year, grouped into tile-years."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.s2.bands import parse_tile_id
from sentinel2_l1c.s2.names import CDSE_PREFIX, SafeName, resolve_duplicates
from sentinel2_l1c.s2.product import SafeProduct

log = logging.getLogger(__name__)


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
    safe_root: Path, tile: str | None = None, year: int | None = None, band_files: bool = True
) -> list[SafeProduct]:
    """Products of ``tile`` and UTC ``year`` under ``safe_root``, one per datatake, by time
    (``band_files=False``: folders of their metadata files only)."""
    paths = product_paths(safe_root, tile, year)
    products = [SafeProduct.from_path(path, band_files) for path in paths]
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
