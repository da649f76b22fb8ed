"""A coverage service asked for patches (``zarr_sharded@edr`` on the ``service`` storage): the
datacube-as-a-service route (Sentinel Hub, openEO, WCS), where the server decodes and only the
patch's pixels travel.

One OGC API - EDR cube query per band group (``coverage_service``), all three in flight at
once: the patch's box in the tile's own CRS, answered as NetCDF-4 with the pixels whose
centres fall in it. The answer's grid, band order and dates are checked against the tile-year
(not assumed), so a service that cut another box or served other dates is refused in one line.
Each load records what it cost the server (CPU seconds, from the answers' header) and the link
(bytes delivered).
"""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import requests
import xarray

from sentinel2_l1c.coverage_service import CPU_HEADER, dataset_id
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.formats.base import Reader
from sentinel2_l1c.loaders.base import Catalogue, Patch
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.storage.places import Place, ServicePlace
from sentinel2_l1c.storage.retry import call_with_retries, http_status

CONNECTIONS = 32  # kept open to the service: a band group's query per patch in flight


class EdrLoader:
    """A tile-year's band groups through a coverage service's cube queries."""

    layout = None

    def __init__(self, place: ServicePlace, catalogue: Catalogue, made_by: str) -> None:
        self.place, self.made_by = place, made_by
        self.tile, self.year = catalogue.tile, catalogue.year
        self.crs = catalogue.products[0].crs
        self.product_ids = [product.product_id for product in catalogue.products]
        self.session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_maxsize=CONNECTIONS, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.pool = ThreadPoolExecutor(len(BAND_GROUPS))
        self.lock = threading.Lock()
        self.server_cpu = 0.0  # the service's CPU seconds as its latest answer said
        self.last: dict[str, float] = {}
        self.stack = {
            "library": f"requests {requests.__version__}, xarray {xarray.__version__} (h5netcdf)",
            "store": f"OGC API - EDR cube queries ({place})",
        }

    def _query(self, patch: Patch, group: BandGroup) -> tuple[np.ndarray, int, float | None]:
        identifier = dataset_id(self.tile, self.year, group.name)
        left, top = patch.x, patch.y
        params = {
            "bbox": f"{left},{top - patch.size},{left + patch.size},{top}",
            "crs": self.crs, "parameter-name": "data", "f": "netcdf4",
        }  # fmt: skip
        url = f"{self.place.url}/datasets/{identifier}/edr/cube"
        policy = self.place.retry_policy

        def ask() -> requests.Response:
            answer = self.session.get(
                url, params=params, timeout=(policy.connect_timeout, policy.read_timeout)
            )
            answer.raise_for_status()
            return answer

        try:
            answer = call_with_retries(f"{self.place}: {identifier}", ask, policy)
        except requests.HTTPError as err:
            raise InputDataError(
                f"{self.place}: {identifier} not served (HTTP {http_status(err)}): "
                f"run {self.made_by}"
            ) from err
        cpu = answer.headers.get(CPU_HEADER)
        pixels = self._checked(answer.content, patch, group, identifier)
        return pixels, len(answer.content), float(cpu) if cpu else None

    def _checked(self, body: bytes, patch: Patch, group: BandGroup, identifier: str) -> np.ndarray:
        """The answer's pixels once its dates, bands and grid are the patch's."""
        with xarray.open_dataset(io.BytesIO(body), engine="h5netcdf", mask_and_scale=False) as ds:
            data = ds["data"]
            res = group.resolution
            side = patch.size // res
            wrong = []
            if list(ds["product_id"].values) != self.product_ids:
                wrong.append(f"{ds.sizes.get('time', 0)} dates, not the tile-year's products")
            if data.dims != ("time", "band", "y", "x") or list(ds["band"].values) != list(
                group.bands
            ):
                wrong.append(f"bands {list(ds['band'].values)} as {data.dims}")
            expected = (patch.x + res / 2, patch.y - res / 2)
            corner = (float(ds["x"][0]), float(ds["y"][0])) if ds.sizes["x"] else None
            if data.shape[2:] != (side, side) or corner != expected:
                wrong.append(
                    f"a {data.shape[2:]} box at {corner}, not {(side, side)} at {expected}"
                )
            if wrong:
                raise InputDataError(f"{self.place}: {identifier} answered {'; '.join(wrong)}")
            return np.asarray(data.values)

    def load(self, patch: Patch) -> dict[str, np.ndarray]:
        answers = list(self.pool.map(lambda group: self._query(patch, group), BAND_GROUPS))
        cpu_seen = [cpu for _, _, cpu in answers if cpu is not None]
        with self.lock:
            before = self.server_cpu
            self.server_cpu = max([before, *cpu_seen])
            self.last = {"link_bytes": float(sum(size for _, size, _ in answers))}
            if before:
                self.last["server_cpu_seconds"] = self.server_cpu - before
        return {
            group.name: pixels for group, (pixels, _, _) in zip(BAND_GROUPS, answers, strict=True)
        }

    def served(self) -> dict[str, float]:
        """What the last load cost the service (CPU seconds, since the answers before it: not
        for the first load) and the link (bytes delivered)."""
        return dict(self.last)

    def close(self) -> None:
        self.pool.shutdown()
        self.session.close()


@dataclass(frozen=True)
class EdrReader(Reader):
    name: str = "edr"
    label: str = "OGC API - EDR service (xpublish)"
    asks_service: ClassVar[bool] = True

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> EdrLoader:
        if not isinstance(place, ServicePlace):
            raise ConfigError(
                f"{self.name} asks a coverage service for patches ({self.label}); {place} is "
                "none: benchmark it on the service storage"
            )
        return EdrLoader(place, catalogue, made_by)
