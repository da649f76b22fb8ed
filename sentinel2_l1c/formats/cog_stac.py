"""STAC for the COG format: one Item per product, the way STAC-based loaders find the files.

Each product's folder gets an Item ``{product_id}.json`` beside its COGs: one asset per band
group (``B02_B03_B04_B08`` …) with the projection (``proj:code``, ``proj:shape``,
``proj:transform``), raster (``raster:bands``: data type, no-data, scale and offset to
reflectance) and eo (``eo:bands``: names, common names, centre wavelengths) extensions.
Tile-years get a catalogue ``{tile}/{year}/catalog.json``, the root ``catalog.json`` links
them. Every link and asset is relative, so the catalogue is right wherever the tree is copied
(publish, stage) and is read through the place's own reads. An Item lands with its product's
folder; the catalogues are written after the conversion, each under a temporary name and
renamed, and again by the next run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any

import pystac

from sentinel2_l1c.formats.cog import cog_file, product_folder
from sentinel2_l1c.s2.bands import BAND_GROUPS, band_resolution
from sentinel2_l1c.s2.product import SafeProduct
from sentinel2_l1c.storage.files import atomic_write_text

ROOT = "catalog.json"
COG_MEDIA_TYPE = "image/tiff; application=geotiff; profile=cloud-optimized"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
NODATA = 0  # the COGs' (convert_safe_to_cog)

#: STAC eo common names of the Sentinel-2 MSI bands
COMMON_NAMES = {
    "B01": "coastal", "B02": "blue", "B03": "green", "B04": "red", "B05": "rededge",
    "B06": "rededge", "B07": "rededge", "B08": "nir", "B8A": "nir08", "B09": "nir09",
    "B10": "cirrus", "B11": "swir16", "B12": "swir22",
}  # fmt: skip


def item_name(product: SafeProduct) -> str:
    """The product's Item, relative to the COG root."""
    return str(product_folder(product) / f"{product.product_id}.json")


def tile_year_catalogue(tile: str, year: int) -> str:
    return f"{tile}/{year}/{ROOT}"


def raster_band(product: SafeProduct, band: str) -> dict[str, Any]:
    """A band's ``raster:bands`` entry: its stored type and no-data, and the scale and offset
    that turn its digital numbers into reflectance (the product's quantification and offset)."""
    quantification = product.quantification_value
    return {
        "name": band,
        "data_type": "uint16",
        "nodata": NODATA,
        "spatial_resolution": band_resolution(band),
        "scale": 1 / quantification,
        "offset": product.radiometric_offsets[band] / quantification,
    }


def cog_item(product: SafeProduct) -> pystac.Item:
    """The product's Item, its assets relative to the Item's own folder."""
    geometry, bbox = product.outline()
    item = pystac.Item(
        id=product.product_id,
        geometry=geometry,
        bbox=bbox,
        datetime=product.start_time,
        properties={
            "platform": product.spacecraft.lower(),
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "proj:code": product.crs,
            "eo:cloud_cover": product.cloud_cover,
            "s2:processing_baseline": product.processing_baseline,
            "s2:tile_id": product.tile,
            "s2:sensing_time": product.sensing_time.isoformat(),
        },
        stac_extensions=[PROJECTION, RASTER, EO],
    )
    for group in BAND_GROUPS:
        grid = product.grid(group.resolution)
        extra = {
            "proj:shape": list(grid.shape),
            "proj:transform": list(grid.transform)[:6],
            "raster:bands": [raster_band(product, band) for band in group.bands],
            "eo:bands": [
                {
                    "name": band,
                    "common_name": COMMON_NAMES[band],
                    "center_wavelength": round(product.wavelengths[band].central / 1000, 6),
                }
                for band in group.bands
            ],
        }
        href = f"./{PurePosixPath(cog_file(product, group)).name}"
        asset = pystac.Asset(href, title=group.name, media_type=COG_MEDIA_TYPE, roles=["data"])
        asset.extra_fields.update(extra)
        item.add_asset(group.name, asset)
    return item


def item_text(product: SafeProduct) -> str:
    """The product's Item as its file holds it, linked to its tile-year's catalogue."""
    document = cog_item(product).to_dict(include_self_link=False, transform_hrefs=False)
    document["links"] = [
        {"rel": "root", "href": f"../../../{ROOT}", "type": "application/json"},
        {"rel": "parent", "href": f"../{ROOT}", "type": "application/json"},
    ]
    return _dump(document)


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=1) + "\n"


def write_catalogue(root: Path, products: Sequence[SafeProduct]) -> int:
    """Write the catalogues of the tile-years of ``products`` whose COGs are under ``root``
    and the root's, and any Item such a product lacks (each lands with its product's folder,
    ``convert_safe_to_cog``); returns the Items written."""
    written = 0
    by_tile_year: dict[tuple[str, int], list[SafeProduct]] = {}
    for product in products:
        if not (root / product_folder(product)).is_dir():
            continue
        by_tile_year.setdefault((product.tile, product.year), []).append(product)
        path = root / item_name(product)
        if not path.is_file():  # a tree converted before the catalogue existed
            atomic_write_text(path, item_text(product))
            written += 1
    for (tile, year), members in sorted(by_tile_year.items()):
        items = sorted(
            {item_name(p) for p in members}
            | {str(p.relative_to(root)) for p in (root / tile / str(year)).glob("*/*.json")
               if p.name != "product.json"}
        )  # fmt: skip
        links = [{"rel": "item", "href": f"./{PurePosixPath(n).relative_to(f'{tile}/{year}')}",
                  "type": "application/geo+json"} for n in items]  # fmt: skip
        atomic_write_text(
            root / tile_year_catalogue(tile, year),
            _dump(_catalogue(f"{tile}-{year}", f"Sentinel-2 L1C {tile} {year} as COGs", links, 2)),
        )
    children = sorted(str(p.relative_to(root)) for p in root.glob(f"*/*/{ROOT}"))
    links = [{"rel": "child", "href": f"./{child}", "type": "application/json"} for child in children]  # fmt: skip
    atomic_write_text(root / ROOT, _dump(_catalogue("sentinel2-l1c-cog", "Sentinel-2 L1C as COGs", links, 0)))  # fmt: skip
    return written


def _catalogue(
    id_: str, description: str, links: list[dict[str, str]], depth: int
) -> dict[str, Any]:
    up = "../" * depth
    return {
        "type": "Catalog",
        "stac_version": pystac.get_stac_version(),
        "id": id_,
        "description": description,
        "links": [{"rel": "root", "href": f"./{up}{ROOT}", "type": "application/json"}, *links],
    }


def read_items(
    read: Callable[[str], bytes], locate: Callable[[str], str], tile: str, year: int
) -> list[pystac.Item]:
    """The tile-year's Items, read with ``read(name)`` (names relative to the COG root), each
    asset's href made what ``locate(name)`` says (the file as GDAL opens it), by time."""
    catalogue = json.loads(read(tile_year_catalogue(tile, year)))
    items = []
    for link in catalogue["links"]:
        if link["rel"] != "item":
            continue
        name = PurePosixPath(tile, str(year), link["href"].removeprefix("./"))
        item = pystac.Item.from_dict(json.loads(read(str(name))), preserve_dict=False)
        for asset in item.assets.values():
            asset.href = locate(str(name.parent / asset.href.removeprefix("./")))
        items.append(item)
    return sorted(items, key=lambda item: (item.datetime or datetime.min, item.id))
