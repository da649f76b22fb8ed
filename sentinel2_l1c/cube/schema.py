"""The Zarr v3 schema of a tile-year: its groups, arrays and coordinates.

A store holds groups ``/{tile}/{year}/{band_group}``, each with

- ``data`` (time, band, y, x) uint16, fill 0, chunked (and sharded: shards of one time chunk
  × ``block`` × ``block`` pixels) and compressed per the named layout (``layouts``) whose
  name is the group attribute ``dslab_layout``,
- ``time`` (ms since 1970, CF-encoded so xarray decodes datetime64) from PRODUCT_START_TIME,
  ``product_id`` per time step, ``band`` names, ``y``/``x`` UTM pixel centres, and
  ``spatial_ref`` (CF grid mapping with the CRS WKT and GeoTransform, read by rioxarray);
  the ``data`` array also carries the CRS as GDAL and the GeoZarr conventions read it
  (``crs_attributes``).

How the arrays are filled, and when a group counts as complete, is the write protocol's
business (``protocol``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import numpy as np
import zarr
from rasterio.crs import CRS
from zarr.abc.codec import ArrayBytesCodec

from sentinel2_l1c.cube.layouts import LEGACY, GroupLayout
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.s2.bands import BandGroup
from sentinel2_l1c.s2.product import Grid

TIME_UNITS = "milliseconds since 1970-01-01T00:00:00"
COORDINATE_CHUNK = 4096  # one chunk holds every date of a tile-year
LAYOUT = "dslab_layout"
#: The Zarr conventions of the GeoZarr attributes, as registered in ``zarr_conventions``.
PROJ_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/geo-proj/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/geo-proj/blob/v1/README.md",
    "uuid": "f17cb550-5864-4468-aeb7-f3180cfb622f",
    "name": "proj:",
    "description": "Coordinate reference system information for geospatial data",
}
SPATIAL_CONVENTION = {
    "schema_url": "https://raw.githubusercontent.com/zarr-conventions/spatial/refs/tags/v1/schema.json",
    "spec_url": "https://github.com/zarr-conventions/spatial/blob/v1/README.md",
    "uuid": "689b58e2-cf7b-45e0-9fff-9cfc0883d6b4",
    "name": "spatial:",
    "description": "Spatial coordinate information",
}
TIME_ARRAYS = ("data", "time", "product_id")  # the arrays with a time axis
ARRAYS = (*TIME_ARRAYS, "band", "y", "x", "spatial_ref")  # every array of a group


def group_path(tile: str, year: int, band_group: BandGroup) -> str:
    return f"{tile}/{year}/{band_group.name}"


@contextmanager
def listing_groups() -> Iterator[None]:
    """Listing a group's members without zarr-python's warning about every key that is no
    Zarr node: a store's root also holds its STAC catalogue (``formats.zarr_stac``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Object at .* is not recognized")
        yield


def create_group(
    root: zarr.Group,
    path: str,
    band_group: BandGroup,
    grid: Grid,
    crs: str,
    layout: GroupLayout,
    serializer: ArrayBytesCodec | None = None,
    attributes: Mapping[str, Any] | None = None,
) -> zarr.Group:
    """Empty arrays and fixed coordinates of one group (time coordinates come with products);
    whatever an interrupted creation left at ``path`` is removed first. A ``serializer``
    replaces the layout's compression (a virtual Zarr's chunks are encoded elsewhere);
    ``attributes`` are the group's first (written before any array)."""
    parent, _, name = path.rpartition("/")
    group = root.require_group(parent).create_group(name, overwrite=True)
    group.attrs.update({**(attributes or {}), LAYOUT: layout.name})
    group.create_array(
        "data",
        shape=(0, len(band_group.bands), grid.nrows, grid.ncols),
        chunks=layout.chunks,
        shards=layout.shards,
        dtype="uint16",
        fill_value=0,
        **(
            layout.codec.array_codecs(layout.checksum)
            if serializer is None
            else {"serializer": serializer, "compressors": None}
        ),
        dimension_names=("time", "band", "y", "x"),
        attributes={
            "grid_mapping": "spatial_ref",
            "coordinates": "product_id spatial_ref",
            "long_name": "Sentinel-2 L1C digital number",
            "description": "reflectance = (DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE; 0 = no data",
            **crs_attributes(crs, grid),
        },
    )
    _coordinate(
        group,
        "time",
        np.zeros(0, "int64"),
        ("time",),
        {"units": TIME_UNITS, "calendar": "proleptic_gregorian", "standard_name": "time"},
    )
    _coordinate(group, "product_id", np.zeros(0, dtype=str), ("time",), {})
    _coordinate(group, "band", np.array(band_group.bands), ("band",), {})
    _coordinate(
        group,
        "y",
        grid.y_centres(),
        ("y",),
        {"units": "m", "standard_name": "projection_y_coordinate"},
    )
    _coordinate(
        group,
        "x",
        grid.x_centres(),
        ("x",),
        {"units": "m", "standard_name": "projection_x_coordinate"},
    )
    wkt = CRS.from_string(crs).to_wkt()
    transform = grid.transform
    group.create_array(
        "spatial_ref",
        shape=(),
        dtype="int32",
        fill_value=0,
        attributes={
            "crs_wkt": wkt,
            "spatial_ref": wkt,
            "GeoTransform": " ".join(
                str(v)
                for v in (
                    transform.c,
                    transform.a,
                    transform.b,
                    transform.f,
                    transform.d,
                    transform.e,
                )
            ),
        },
    )
    return group


def crs_attributes(crs: str, grid: Grid) -> dict[str, Any]:
    """A band group's CRS and grid where the tools beyond xarray look for them: GDAL's Zarr
    driver reads ``_CRS`` (every version), the GeoZarr conventions ``proj:`` and ``spatial:``
    are read by rioxarray (0.23+) and GDAL (3.13+). The CF grid mapping (``spatial_ref``)
    stays for xarray and older rioxarray."""
    reference = CRS.from_string(crs)
    wkt2 = reference.to_wkt(version="WKT2_2019")
    transform, bounds = grid.transform, grid.bounds
    return {
        "_CRS": {"wkt": wkt2, "projjson": reference.to_dict(projjson=True)},
        "zarr_conventions": [PROJ_CONVENTION, SPATIAL_CONVENTION],
        **({"proj:code": f"EPSG:{reference.to_epsg()}"} if reference.to_epsg() else {}),
        "proj:wkt2": wkt2,
        "spatial:dimensions": ["y", "x"],
        "spatial:transform_type": "affine",
        "spatial:transform": [
            transform.a,
            transform.b,
            transform.c,
            transform.d,
            transform.e,
            transform.f,
        ],
        "spatial:bbox": [float(value) for value in bounds],
        "spatial:shape": [grid.nrows, grid.ncols],
        "spatial:registration": "pixel",
    }


def add_crs_attributes(group: zarr.Group, crs: str, grid: Grid) -> bool:
    """Give an existing group's ``data`` the CRS attributes it lacks (a group written before
    they were), rewriting only its metadata document; True when it did."""
    data, wanted = group["data"], crs_attributes(crs, grid)
    if all(data.attrs.get(name) == value for name, value in wanted.items()):
        return False
    data.attrs.update(wanted)
    return True


def _coordinate(
    group: zarr.Group, name: str, values: np.ndarray, dims: tuple[str, ...], attrs: dict[str, Any]
) -> None:
    chunk = COORDINATE_CHUNK if dims == ("time",) else max(1, len(values))
    array = group.create_array(
        name,
        shape=values.shape,
        chunks=(chunk,),
        dtype=values.dtype if values.dtype.kind != "U" else str,
        dimension_names=dims,
        attributes=attrs,
    )
    if len(values):
        array[:] = values


def product_ids(group: zarr.Group) -> list[str]:
    return [str(v) for v in group["product_id"][:]] if group["product_id"].shape[0] else []


def codec_names(array_metadata: Mapping[str, Any]) -> list[str]:
    """The codecs of a Zarr v3 array's metadata, those inside a sharding codec too."""
    names = []
    for codec in array_metadata.get("codecs", []):
        names.append(codec["name"])
        names += codec_names(codec.get("configuration", {}))
    return names


def layout_name(attrs: Mapping[str, Any]) -> str:
    """The named layout a group was written with (groups from before layouts: the first)."""
    return str(attrs.get(LAYOUT, LEGACY))


def check_same_grid(group: zarr.Group, grid: Grid, path: str) -> None:
    """An existing group must have the product's grid (a different one means another tile)."""
    expected = (grid.nrows, grid.ncols)
    if tuple(group["data"].shape[2:]) != expected or not math.isclose(
        float(group["x"][0]), float(grid.x_centres()[0])
    ):
        raise InputDataError(f"{path}: existing Zarr group has another grid than the products")
