"""The Zarr v3 layout of a tile-year: groups, arrays, coordinates, and which blocks are written.

A store holds groups ``/{tile}/{year}/{band_group}``, each with

- ``data`` (time, band, y, x) uint16, fill 0, chunked (and sharded: shards of one time chunk
  × ``block`` × ``block`` pixels) and compressed per the named layout (``zarr_layouts``) whose
  name is the group attribute ``dslab_layout``,
- ``time`` (ms since 1970, CF-encoded so xarray decodes datetime64) from PRODUCT_START_TIME,
  ``product_id`` per time step, ``band`` names, ``y``/``x`` UTM pixel centres, and
  ``spatial_ref`` (CF grid mapping with the CRS WKT and GeoTransform, read by rioxarray).

Conversion writes the data in blocks (one time chunk × ``block``² pixels, whole chunks or
shards); the group attribute ``dslab_done_blocks`` lists the blocks written, and
``dslab_complete`` is true only when all are. ``dslab_products`` is the commit point of the
time axis: the product ids the arrays hold, written only after ``data``, ``time`` and
``product_id`` agree in length, so a conversion killed at any write leaves either the last
committed state or a group without it (whose creation never finished). Readers refuse a
group unless it is complete and its arrays agree with its committed products.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zarr
from rasterio.crs import CRS
from zarr.abc.codec import ArrayBytesCodec

from .errors import InputDataError
from .safe import Grid, SafeProduct
from .utils import BandGroup
from .zarr_layouts import LEGACY, GroupLayout

TIME_UNITS = "milliseconds since 1970-01-01T00:00:00"
COORDINATE_CHUNK = 4096  # one chunk holds every date of a tile-year
DONE = "dslab_done_blocks"
COMPLETE = "dslab_complete"
PRODUCTS = "dslab_products"
LAYOUT = "dslab_layout"
TIME_ARRAYS = ("data", "time", "product_id")  # the arrays with a time axis
ARRAYS = (*TIME_ARRAYS, "band", "y", "x", "spatial_ref")  # every array of a group


def group_path(tile: str, year: int, band_group: BandGroup) -> str:
    return f"{tile}/{year}/{band_group.name}"


@dataclass(frozen=True)
class Block:
    """A region written by one task: time steps [t0, t1) and pixels [y0, y1) × [x0, x1)."""

    t0: int
    t1: int
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def key(self) -> str:
        return f"{self.t0}/{self.y0}/{self.x0}"


def blocks(
    times: int, shape: tuple[int, int], layout: GroupLayout, first_time: int = 0
) -> Iterator[Block]:
    """Blocks covering time steps from the time chunk holding ``first_time`` to ``times``."""
    step = layout.chunks[0]
    for t0 in range(first_time - first_time % step, times, step):
        for y0 in range(0, shape[0], layout.block):
            for x0 in range(0, shape[1], layout.block):
                yield Block(
                    t0,
                    min(t0 + step, times),
                    y0,
                    min(y0 + layout.block, shape[0]),
                    x0,
                    min(x0 + layout.block, shape[1]),
                )


def create_group(
    root: zarr.Group,
    path: str,
    band_group: BandGroup,
    grid: Grid,
    crs: str,
    layout: GroupLayout,
    serializer: ArrayBytesCodec | None = None,
) -> zarr.Group:
    """Empty arrays and fixed coordinates of one group (time coordinates come with products);
    whatever an interrupted creation left at ``path`` is removed first. A ``serializer``
    replaces the layout's compression (a virtual Zarr's chunks are encoded elsewhere)."""
    parent, _, name = path.rpartition("/")
    group = root.require_group(parent).create_group(name, overwrite=True)
    group.attrs.update({DONE: [], COMPLETE: False, LAYOUT: layout.name})
    group.create_array(
        "data",
        shape=(0, len(band_group.bands), grid.nrows, grid.ncols),
        chunks=layout.chunks,
        shards=layout.shards,
        dtype="uint16",
        fill_value=0,
        **(
            {"compressors": [layout.codec.blosc()]}
            if serializer is None
            else {"serializer": serializer, "compressors": None}
        ),
        dimension_names=("time", "band", "y", "x"),
        attributes={
            "grid_mapping": "spatial_ref",
            "coordinates": "product_id spatial_ref",
            "long_name": "Sentinel-2 L1C digital number",
            "description": "reflectance = (DN + RADIO_ADD_OFFSET) / QUANTIFICATION_VALUE; 0 = no data",
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


def set_times(group: zarr.Group, products: Sequence[SafeProduct]) -> None:
    """Size the time axis to ``products``, (re)write its coordinates, then commit them.

    Callers withdraw completeness first: until ``dslab_products`` is written, a crash leaves
    the previous commit, which the next run repeats this from.
    """
    times = np.array([p.start_time64 for p in products], dtype="datetime64[ms]").astype("int64")
    ids = [p.product_id for p in products]
    for name in ("time", "product_id"):
        group[name].resize((len(products),))
    group["time"][:] = times
    group["product_id"][:] = np.array(ids)
    data = group["data"]
    data.resize((len(products), *data.shape[1:]))
    group.attrs[PRODUCTS] = ids


def product_ids(group: zarr.Group) -> list[str]:
    return [str(v) for v in group["product_id"][:]] if group["product_id"].shape[0] else []


def arrays_agree(group: zarr.Group, count: int) -> bool:
    """Whether every array with a time axis exists and has ``count`` time steps."""
    return time_lengths_agree(lambda name: group[name].shape[0], count)


def time_lengths_agree(time_length: Callable[[str], int], count: int) -> bool:
    """``arrays_agree`` from a function giving an array's time length (KeyError: missing)."""
    try:
        return all(time_length(name) == count for name in TIME_ARRAYS)
    except KeyError:
        return False


def committed_products(group: zarr.Group) -> list[str] | None:
    """The product ids of the group's last commit; None if its creation never finished.

    A group written before ``dslab_products`` existed is taken at its word when it has every
    array and they agree.
    """
    committed = group.attrs.get(PRODUCTS)
    if committed is not None:
        return list(committed)
    if DONE not in group.attrs or not all(name in group for name in ARRAYS):
        return None
    legacy = product_ids(group)
    return legacy if arrays_agree(group, len(legacy)) else None


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


def is_complete(group: zarr.Group) -> bool:
    """All blocks written, and the arrays agree with the committed products."""
    return complete_per_metadata(group.attrs, lambda name: group[name].shape[0])


def complete_per_metadata(attrs: Mapping[str, Any], time_length: Callable[[str], int]) -> bool:
    """``is_complete`` from a group's attributes and its arrays' time lengths (KeyError for a
    missing array), for readers that are not zarr-python."""
    committed = attrs.get(PRODUCTS)
    if not attrs.get(COMPLETE, False) or committed is None:
        return False
    return time_lengths_agree(time_length, len(committed))
