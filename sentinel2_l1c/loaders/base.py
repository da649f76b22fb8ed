"""What every loader shares: the patch, the tile-year it is cut from, the ``Loader`` interface,
a checksum of the pixels, and how a Zarr tile-year's band groups are opened (missing or
incomplete groups refused in one line naming the command that makes them).

A loader returns, per band group, the (time, band, y, x) pixels of a patch. The loaders:
``zarr_arrays`` (zarr-python on any Zarr store, and the ideal reference beside it),
``tensorstore_arrays``, ``gdal_files`` (windowed GDAL reads of per-product files) and
``gdal_tlm`` (what GDAL opens for a band file whose tiles a manifest indexes). Formats open
them through their readers (``formats``); nothing here knows where data lives or how it was
made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, runtime_checkable

import numpy as np
from rasterio.windows import Window

from sentinel2_l1c.cube.protocol import complete_per_metadata
from sentinel2_l1c.cube.schema import codec_names, group_path, layout_name
from sentinel2_l1c.errors import InputDataError, RemoteError
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.s2.product import SafeProduct

GRID = 60  # patches align to the coarsest grid, so every band group gets whole pixels


@dataclass(frozen=True)
class Patch:
    """Upper-left corner and side, in metres of the tile's CRS."""

    x: float
    y: float
    size: int

    def window(self, ulx: float, uly: float, resolution: int) -> Window:
        return Window(
            round((self.x - ulx) / resolution),
            round((uly - self.y) / resolution),
            self.size // resolution,
            self.size // resolution,
        )


@dataclass(frozen=True)
class Catalogue:
    """What a loader needs to know of the tile-year: its products (for per-product files), and
    the STAC API they were found in (for readers over its Items)."""

    tile: str
    year: int
    products: tuple[SafeProduct, ...]
    workers: int = 8  # threads of windowed file reads
    stac_url: str = ""


class Loader(Protocol):
    #: what reads the data: libraries, store and filesystem classes (recorded in results)
    stack: dict[str, str]
    #: the named layout of a Zarr store (recorded in results); None for per-product files
    layout: str | None

    def load(self, patch: Patch) -> Any: ...

    def close(self) -> None: ...


@runtime_checkable
class ServedLoader(Loader, Protocol):
    """A loader that asks a server to cut the patch, and knows what that cost."""

    def served(self) -> dict[str, float]:
        """The last load's costs (``server_cpu_seconds``, ``link_bytes``)."""


def checksum(pixels: dict[str, np.ndarray]) -> str:
    """SHA-256 of a patch's pixels, band group by band group."""
    digest = hashlib.sha256()
    for name in sorted(pixels):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(pixels[name]).tobytes())
    return digest.hexdigest()


#: what a chunk whose stored bytes changed is (its crc32c, the shard index's or the zip's fails)
CORRUPTED = "does not match its checksum: its stored bytes changed"
_CHECKSUM_FAILURES = ("checksum", "Digest mismatch", "Bad CRC-32")


def first_line(err: BaseException) -> str:
    """The first line of an error's message (its type's name when it has none)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def corrupted_chunk(where: str, chunk: str, err: BaseException, made_by: str) -> InputDataError:
    """The one line for a stored chunk that fails to decode: which, why, and the fix."""
    failed = any(failure in str(err) for failure in _CHECKSUM_FAILURES)
    reason = CORRUPTED if failed else f"does not decode ({first_line(err)})"
    return InputDataError(f"{where}: {chunk} {reason}: write it again ({made_by})")


@contextmanager
def reported(where: str, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """A client's own errors (after its own retries) as one RemoteError line naming ``where``."""
    try:
        yield
    except errors as err:
        first = first_line(err).split(" [")[0]  # without tensorstore's [spec=…] [http_…=…]
        raise RemoteError(f"{where}: read failed: {first}") from err


def origin(group: BandGroup, x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """The outer corner of a band group's grid from its first pixel-centre coordinates."""
    return float(x[0]) - group.resolution / 2, float(y[0]) + group.resolution / 2


def slices(patch: Patch, corner: tuple[float, float], group: BandGroup) -> tuple[slice, slice]:
    """The rows and columns of a patch in a band group's grid."""
    w = patch.window(*corner, group.resolution)
    return slice(w.row_off, w.row_off + w.height), slice(w.col_off, w.col_off + w.width)


def group_corners(product: SafeProduct) -> dict[str, tuple[float, float]]:
    """The outer corner of each band group's grid (every product of a tile shares them)."""
    grids = {group.name: product.grid(group.resolution) for group in BAND_GROUPS}
    return {name: (grid.ulx, grid.uly) for name, grid in grids.items()}


def patch_bounds(
    patch: Patch, corner: tuple[float, float], group: BandGroup
) -> tuple[float, float, float, float]:
    """(left, bottom, right, top) of the patch's pixels in a band group's grid."""
    rows, cols = slices(patch, corner, group)
    (left, top), res = corner, group.resolution
    return (
        left + cols.start * res, top - rows.stop * res,
        left + cols.stop * res, top - rows.start * res,
    )  # fmt: skip


class GroupMetadata(Protocol):
    """What a Zarr library reads of a tile-year's group at ``path`` before any pixel."""

    def attributes(self, path: str) -> Mapping[str, Any] | None:
        """The group's attributes; None when there is no group."""

    def time_length(self, path: str, name: str) -> int:
        """The time length of the group's array ``name``; KeyError when it is missing."""

    def data_json(self, path: str) -> Mapping[str, Any]:
        """The group's ``data`` array metadata as stored (read before the library parses it)."""

    def data(self, path: str) -> Any:
        """The group's ``data`` array, as the library reads it."""

    def first_centres(self, path: str) -> tuple[Sequence[float], Sequence[float]]:
        """The first two x and y pixel-centre coordinates."""


@dataclass(frozen=True)
class BandGroupArrays:
    """A tile-year's band groups as a Zarr reader opened them."""

    arrays: dict[str, Any]  # band group name → its data array
    origins: dict[str, tuple[float, float]]  # band group name → outer corner of its grid
    layout: str  # the named layout the groups were written with


def open_band_groups(
    metadata: GroupMetadata,
    catalogue: Catalogue,
    where: str,
    made_by: str,
    check_codecs: Callable[[str, list[str]], None] = lambda layout, names: None,
) -> BandGroupArrays:
    """Every band group of the tile-year; InputDataError for a group that is missing or not
    complete (``cube.protocol``), naming the command that makes it. ``check_codecs(layout,
    names)`` refuses codecs the reader cannot decode before the arrays are opened."""
    arrays, origins, layout = {}, {}, ""
    for group in BAND_GROUPS:
        path = group_path(catalogue.tile, catalogue.year, group)
        attributes = metadata.attributes(path)
        if attributes is None:
            raise InputDataError(f"{where}: no group {path}: run {made_by}")
        if not complete_per_metadata(attributes, partial(metadata.time_length, path)):
            raise InputDataError(f"{where}: group {path} is not complete: rerun {made_by}")
        layout = layout_name(attributes)
        check_codecs(layout, codec_names(metadata.data_json(path)))
        arrays[group.name] = metadata.data(path)
        origins[group.name] = origin(group, *metadata.first_centres(path))
    return BandGroupArrays(arrays, origins, layout)
