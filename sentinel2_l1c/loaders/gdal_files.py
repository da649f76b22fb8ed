"""Windowed GDAL reads of per-product files (SAFE band files, COGs), products in parallel
threads, retried under the place's policy on a remote place."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext

import numpy as np
import rasterio
from rasterio.errors import RasterioError
from rasterio.windows import Window

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.loaders.base import Catalogue, Patch
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.s2.product import SafeProduct
from sentinel2_l1c.storage.places import Place
from sentinel2_l1c.storage.retry import call_with_retries, is_transient

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
        """Every file's window read in the pool at once, all band groups together (a thread
        never waits for another product's or group's files), then stacked in order."""
        reads: dict[str, list[list[Future[np.ndarray]]]] = {}
        for group in BAND_GROUPS:
            grid = self.products[0].grid(group.resolution)
            window = patch.window(grid.ulx, grid.uly, group.resolution)
            reads[group.name] = [
                [self.pool.submit(self._read_file, name, window) for name in names]
                for product in self.products
                for names in [self.files_of(product, group)]
            ]
        return {
            name: np.stack([np.concatenate([f.result() for f in files]) for files in products])
            for name, products in reads.items()
        }
