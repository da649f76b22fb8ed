"""Loading one patch time series: the loaders the benchmark times, opened before timing.

A loader returns, per band group, the (time, band, y, x) pixels of a patch: ``ZarrLoader``
from any Zarr store (plain, sharded, zipped, local or remote), ``FileLoader`` by windowed
GDAL reads of per-product files (SAFE band files, COGs) in parallel threads. ``IdealLoader``
is the reference beside a Zarr store: it only fetches and decompresses the chunks a patch
touches. Formats open these through their readers (``formats``); nothing here knows where
data lives or how it was made.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import rasterio
import zarr
from numcodecs import blosc
from rasterio.errors import RasterioError
from rasterio.windows import Window
from zarr.abc.store import Store
from zarr.codecs import BloscCodec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.sync import sync as zarr_sync
from zarr.storage import FsspecStore

from .errors import InputDataError, RemoteError
from .remote import call_with_retries, is_transient
from .safe import SafeProduct
from .storages import Place
from .utils import BAND_GROUPS, BandGroup
from .zarr_layouts import touched_chunks
from .zarr_store import group_path, is_complete, layout_name

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
    """What a loader needs to know of the tile-year: its products (for per-product files)."""

    tile: str
    year: int
    products: tuple[SafeProduct, ...]
    workers: int = 8  # threads of windowed file reads


class Loader(Protocol):
    #: what reads the data: libraries, store and filesystem classes (recorded in results)
    stack: dict[str, str]
    #: the named layout of a Zarr store (recorded in results); None for per-product files
    layout: str | None

    def load(self, patch: Patch) -> Any: ...

    def close(self) -> None: ...


def checksum(pixels: dict[str, np.ndarray]) -> str:
    """SHA-256 of a patch's pixels, band group by band group."""
    digest = hashlib.sha256()
    for name in sorted(pixels):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(pixels[name]).tobytes())
    return digest.hexdigest()


def store_stack(store: Store) -> dict[str, str]:
    """The store and the filesystems under it, outermost first, and zarr's codec pipeline."""
    layers, inner = [type(store).__name__], getattr(store, "fs", None)
    while inner is not None:
        layers.append(type(inner).__name__)
        inner = getattr(inner, "fs", None) or getattr(inner, "sync_fs", None)
    return {
        "library": f"zarr {zarr.__version__}",
        "store": " > ".join(layers),
        "codec_pipeline": str(zarr.config.get("codec_pipeline.path")),
    }


def close_store(store: Store) -> None:
    """Close a store and the async S3 client under an fsspec store (on zarr's loop, where it
    lives; s3fs hands it out through ``set_session``)."""
    fs = getattr(store, "fs", None) if isinstance(store, FsspecStore) else None
    for candidate in (fs, getattr(fs, "fs", None)):
        if candidate is not None and candidate.async_impl and hasattr(candidate, "set_session"):
            client = zarr_sync(candidate.set_session())
            zarr_sync(client.close())
    store.close()


@contextmanager
def reported(where: str, errors: tuple[type[BaseException], ...]) -> Iterator[None]:
    """A client's own errors (after its own retries) as one RemoteError line naming ``where``."""
    try:
        yield
    except errors as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        first = first.split(" [")[0]  # without tensorstore's [spec=…] [http_response_body=…]
        raise RemoteError(f"{where}: read failed: {first}") from err


def origin(group: BandGroup, x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """The outer corner of a band group's grid from its first pixel-centre coordinates."""
    return float(x[0]) - group.resolution / 2, float(y[0]) + group.resolution / 2


def slices(patch: Patch, corner: tuple[float, float], group: BandGroup) -> tuple[slice, slice]:
    """The rows and columns of a patch in a band group's grid."""
    w = patch.window(*corner, group.resolution)
    return slice(w.row_off, w.row_off + w.height), slice(w.col_off, w.col_off + w.width)


def refuse_incomplete(where: str, path: str, made_by: str, found: bool, complete: bool) -> None:
    """The same two refusals for every reader of a Zarr tile-year."""
    if not found:
        raise InputDataError(f"{where}: no group {path}: run {made_by}")
    if not complete:
        raise InputDataError(f"{where}: group {path} is not complete: rerun {made_by}")


class ZarrLoader:
    """A tile-year's band groups from a Zarr store; refuses missing or incomplete groups."""

    def __init__(
        self,
        store: Store,
        catalogue: Catalogue,
        where: str,
        made_by: str,
        on_close: Callable[[], None] = lambda: None,
        errors: tuple[type[BaseException], ...] = (),
    ) -> None:
        self.store = store
        self.on_close = on_close
        self.where, self.errors = where, errors
        self.stack = store_stack(store)
        self.arrays, self.origins = {}, {}
        self.layout: str | None = None
        with reported(where, errors):
            root = zarr.open_group(store, mode="r", zarr_format=3)
            for group in BAND_GROUPS:
                path = group_path(catalogue.tile, catalogue.year, group)
                node = root.get(path)
                refuse_incomplete(
                    where, path, made_by, node is not None, node is not None and is_complete(node)
                )
                self.layout = layout_name(node.attrs)
                self.arrays[group.name] = node["data"]
                self.origins[group.name] = origin(group, node["x"][:2], node["y"][:2])

    def close(self) -> None:
        close_store(self.store)
        self.on_close()

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        """Every band group's window, the groups read at once (one group's last chunks decode
        while the next group's are fetched)."""

        async def read(group: BandGroup) -> np.ndarray:
            rows, cols = slices(patch, self.origins[group.name], group)
            return await self.arrays[group.name].async_array.getitem(
                (slice(None), slice(None), rows, cols)
            )

        async def read_all() -> list[np.ndarray]:
            return await asyncio.gather(*(read(group) for group in BAND_GROUPS))

        with reported(self.where, self.errors):
            pixels = zarr_sync(read_all())
        return {group.name: p for group, p in zip(BAND_GROUPS, pixels, strict=True)}


class IdealLoader:
    """The floor of a Zarr patch load: fetch and decompress only the chunks the patch touches,
    all concurrently (decompression on every core), without slicing or assembling pixels.
    Fetches through the store of its own Zarr loader (opened on the fastest client)."""

    def __init__(self, zarr_loader: ZarrLoader) -> None:
        self.zarr = zarr_loader
        self.stack = {**zarr_loader.stack, "decompression": "numcodecs Blosc in threads"}
        self.layout = zarr_loader.layout
        for array in zarr_loader.arrays.values():
            codecs = array.metadata.codecs
            if not isinstance(codecs[-1], BloscCodec):
                raise InputDataError(
                    f"{array.path}: the ideal reference needs a plain Blosc Zarr, got {codecs}"
                )

    def close(self) -> None:
        self.zarr.close()

    def chunk_keys(self, patch: Patch) -> list[str]:
        keys = []
        for group in BAND_GROUPS:
            array = self.zarr.arrays[group.name]
            window = patch.window(*self.zarr.origins[group.name], group.resolution)
            for index in touched_chunks(array.shape, array.chunks, window):
                keys.append(f"{array.path}/{array.metadata.encode_chunk_key(index)}")
        return keys

    def load(self, patch: Patch) -> dict[str, int]:
        """Fetch and decompress; returns counts (chunks, compressed and decompressed bytes)."""
        with reported(self.zarr.where, self.zarr.errors):
            return zarr_sync(self._fetch_and_decode(self.chunk_keys(patch)))

    async def _fetch_and_decode(self, keys: list[str]) -> dict[str, int]:
        store, prototype = self.zarr.store, default_buffer_prototype()

        async def one(key: str) -> tuple[int, int]:
            buffer = await store.get(key, prototype=prototype)
            if buffer is None:  # never written: fill value, nothing to read
                return 0, 0
            raw = buffer.to_bytes()
            return len(raw), len(await asyncio.to_thread(blosc.decompress, raw))

        sizes = await asyncio.gather(*(one(key) for key in keys))
        return {
            "chunks": len(keys),
            "compressed_bytes": sum(s[0] for s in sizes),
            "decompressed_bytes": sum(s[1] for s in sizes),
        }


#: The files of a product that hold a band group, relative to the place (bands in order).
FilesOf = Callable[[SafeProduct, BandGroup], list[str]]

#: What GDAL opens to read a window of a file (by its name on the place): a path, valid
#: while the context is open.
GdalSource = Callable[[str, Window], AbstractContextManager[str]]


class FileLoader:
    """Windowed GDAL reads of per-product files, products in parallel threads (no more than
    the place's quota of requests in flight); ``gdal_source`` gives what GDAL opens for a
    window of a file (default: the place's path of the file)."""

    def __init__(
        self,
        catalogue: Catalogue,
        files_of: FilesOf,
        place: Place,
        gdal_source: GdalSource | None = None,
        on_close: Callable[[], None] = lambda: None,
    ) -> None:
        self.products = catalogue.products
        self.files_of = files_of
        self.place = place
        self.gdal_source = gdal_source or (lambda name, _: nullcontext(place.gdal_path(name)))
        self.on_close = on_close
        self.options = place.gdal_options()
        threads = min(catalogue.workers, place.quota or catalogue.workers)
        self.pool = ThreadPoolExecutor(threads)
        self.stack = {
            "library": f"GDAL {rasterio.__gdal_version__} (rasterio {rasterio.__version__})",
            "files": place.gdal_path("…"),
            "threads": str(threads),
        }
        self.layout = None

    def close(self) -> None:
        self.pool.shutdown()
        self.on_close()

    def _read(self, product: SafeProduct, group: BandGroup, window: Window) -> np.ndarray:
        return np.concatenate(
            [self._read_file(name, window) for name in self.files_of(product, group)]
        )

    def _read_file(self, name: str, window: Window) -> np.ndarray:
        """One file's window. On a remote place a failed read (GDAL retries 5xx answers but
        not a body cut short) is read again under the place's retry policy, bypassing what
        GDAL cached of the failed attempt (``CPL_VSIL_CURL_NON_CACHED``, set on the remote
        file even when GDAL opens it through another path, e.g. ``/vsisparse/``)."""
        path = self.place.gdal_path(name)
        calls = itertools.count()

        def read() -> np.ndarray:
            options = self.options
            if next(calls):  # a retry: nothing GDAL cached of the failed attempt is used
                options = {**options, "CPL_VSIL_CURL_NON_CACHED": path}
            with (
                self.gdal_source(name, window) as source,
                rasterio.Env(**options),
                rasterio.open(source) as dataset,
            ):
                return dataset.read(window=window)

        retry = self.place.retry
        if retry is not None:
            transient = lambda error: isinstance(error, RasterioError) or is_transient(error)  # noqa: E731
            return call_with_retries(f"read {path}", read, retry, transient)
        try:
            return read()
        except RasterioError as err:
            raise InputDataError(f"{path}: cannot read ({err})") from err

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        pixels = {}
        for group in BAND_GROUPS:
            grid = self.products[0].grid(group.resolution)
            window = patch.window(grid.ulx, grid.uly, group.resolution)
            parts = self.pool.map(
                self._read,
                self.products,
                [group] * len(self.products),
                [window] * len(self.products),
            )
            pixels[group.name] = np.stack(list(parts))
        return pixels
