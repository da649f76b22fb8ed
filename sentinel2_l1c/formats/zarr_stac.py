"""STAC for the Zarr formats and icechunk: a Collection with the store as its asset, and an Item
per tile-year band group describing its cube with the datacube extension.

Written into the store's root by the command that writes the store (``convert_safe_to_zarr``,
``ingest``), from what is committed there, so publish and stage carry it with the tree:
``collection.json`` (the store as asset ``store``) and ``stac/{tile}-{year}-{band_group}.json``
(the group as asset ``data``; ``cube:dimensions`` time, band, y, x with the dates, band names,
the grid in the tile's CRS; ``cube:variables`` ``data`` and ``product_id``; the projection
extension). One cube per Item because every tile has its own CRS and every band group its own
resolution. Every href is relative. Items are written before the Collection that links them,
each under a temporary name and renamed; a run rewrites them all (a few per tile-year).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from sentinel2_l1c.cube.protocol import is_complete
from sentinel2_l1c.cube.schema import TIME_UNITS, listing_groups
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.names import format_utc
from sentinel2_l1c.s2.product import lonlat_outline

if TYPE_CHECKING:
    import zarr

    from sentinel2_l1c.storage.places import Place

COLLECTION = "collection.json"
ITEMS = "stac"
ZARR_MEDIA_TYPE = "application/vnd+zarr"
DATACUBE = "https://stac-extensions.github.io/datacube/v2.2.0/schema.json"
PROJECTION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"


def item_id(tile: str, year: int, band_group: str) -> str:
    return f"{tile}-{year}-{band_group}"


def _times(group: zarr.Group) -> list[str]:
    """The group's dates as ISO 8601 UTC (stored as ms since 1970, ``cube.schema``)."""
    assert group["time"].attrs.get("units") == TIME_UNITS, "times as cube.schema stores them"
    stored = np.asarray(group["time"][:], dtype="int64").astype("datetime64[ms]")
    return [format_utc(value.item(), 3) for value in stored]


def group_item(
    group: zarr.Group, tile: str, year: int, band_group: str, collection: str, transactional: bool
) -> dict:
    """The Item of one band group's cube, its hrefs relative to ``stac/``: the group's folder,
    or for an icechunk repository (whose groups are no folders) the repository."""
    data = group["data"].attrs
    crs, shape = str(data["proj:code"]), list(data["spatial:shape"])
    left, bottom, right, top = data["spatial:bbox"]
    resolution = float(data["spatial:transform"][0])
    geometry, bbox = lonlat_outline(crs, (left, bottom, right, top))
    times = _times(group)
    epsg = int(crs.split(":")[1])
    bands = [str(band) for band in group["band"][:]]
    return {
        "type": "Feature",
        "stac_version": "1.1.0",
        "stac_extensions": [DATACUBE, PROJECTION],
        "id": item_id(tile, year, band_group),
        "collection": collection,
        "geometry": geometry,
        "bbox": bbox,
        "properties": {
            "datetime": None,
            "start_datetime": times[0],
            "end_datetime": times[-1],
            "proj:code": crs,
            "proj:shape": shape,
            "proj:transform": list(data["spatial:transform"]),
            "cube:dimensions": {
                "time": {"type": "temporal", "extent": [times[0], times[-1]], "values": times},
                "band": {"type": "bands", "values": bands},
                "y": {
                    "type": "spatial",
                    "axis": "y",
                    "extent": [bottom, top],
                    "step": -resolution,
                    "reference_system": epsg,
                },
                "x": {
                    "type": "spatial",
                    "axis": "x",
                    "extent": [left, right],
                    "step": resolution,
                    "reference_system": epsg,
                },
            },  # fmt: skip
            "cube:variables": {
                "data": {
                    "dimensions": ["time", "band", "y", "x"],
                    "type": "data",
                    "description": str(data.get("description", "")),
                    "unit": "1",
                },
                "product_id": {
                    "dimensions": ["time"],
                    "type": "auxiliary",
                    "description": "the SAFE product of each date",
                },
            },  # fmt: skip
        },
        "links": [
            {"rel": "root", "href": f"../{COLLECTION}", "type": "application/json"},
            {"rel": "parent", "href": f"../{COLLECTION}", "type": "application/json"},
            {"rel": "collection", "href": f"../{COLLECTION}", "type": "application/json"},
        ],
        "assets": {
            "data": {
                "href": "../" if transactional else f"../{tile}/{year}/{band_group}",
                "type": ZARR_MEDIA_TYPE,
                "roles": ["data"],
                "title": f"{'icechunk repository, ' * transactional}Zarr group "
                f"{tile}/{year}/{band_group}: data (time, band, y, x) uint16",
            }
        },
    }


def store_collection(
    name: str, label: str, items: list[dict[str, Any]], transactional: bool
) -> dict:
    """The Collection of a whole store, linking its Items, the store itself as asset."""
    boxes = [item["bbox"] for item in items]
    union = [min(b[0] for b in boxes), min(b[1] for b in boxes),
             max(b[2] for b in boxes), max(b[3] for b in boxes)]  # fmt: skip
    starts = [item["properties"]["start_datetime"] for item in items]
    ends = [item["properties"]["end_datetime"] for item in items]
    store_title = (
        "icechunk repository (open with icechunk: its chunks are not plain Zarr keys)"
        if transactional
        else "Zarr v3 store, groups /{tile}/{year}/{band_group}"
    )
    return {
        "type": "Collection",
        "stac_version": "1.1.0",
        "stac_extensions": [],
        "id": f"sentinel2-l1c-{name.replace('_', '-')}",
        "title": f"Sentinel-2 L1C, {label}",
        "description": "Sentinel-2 Level-1C tile-years as written by datacube-storage-lab: "
        "digital numbers as in the SAFE products, one cube per band group (see its Items).",
        "license": "other",
        "extent": {
            "spatial": {"bbox": [union, *boxes]},
            "temporal": {"interval": [[min(starts), max(ends)]]},
        },
        "links": [
            {"rel": "root", "href": f"./{COLLECTION}", "type": "application/json"},
            *(
                {
                    "rel": "item",
                    "href": f"./{ITEMS}/{item['id']}.json",
                    "type": "application/geo+json",
                }
                for item in items
            ),
        ],  # fmt: skip
        "assets": {
            "store": {
                "href": "./",
                "type": ZARR_MEDIA_TYPE,
                "roles": ["data"],
                "title": store_title,
            }
        },
    }


def complete_groups(root: zarr.Group) -> list[tuple[str, int, str, zarr.Group]]:
    """Every complete tile-year band group of a store (``cube.protocol``)."""
    found = []
    with listing_groups():
        tile_years = [(t, y, g) for t, tile in root.groups() for y, g in tile.groups()]
    for tile, year, year_group in sorted(tile_years, key=lambda found: found[:2]):
        for band_group in BAND_GROUPS:
            group = year_group.get(band_group.name)
            if group is not None and is_complete(group):
                found.append((tile, int(year), band_group.name, group))
    return found


def write_collection(
    place: Place, name: str, label: str, root: zarr.Group | None, transactional: bool
) -> int:
    """The store's Items, then its Collection, from what ``root`` holds; the Items written."""
    groups = complete_groups(root) if root is not None else []
    if not groups:
        return 0
    collection = f"sentinel2-l1c-{name.replace('_', '-')}"
    items = [
        group_item(g, tile, year, band, collection, transactional) for tile, year, band, g in groups
    ]
    for item in items:
        place.write(f"{ITEMS}/{item['id']}.json", json.dumps(item, indent=1).encode())
    text = json.dumps(store_collection(name, label, items, transactional), indent=1)
    place.write(COLLECTION, text.encode())
    return len(items)
