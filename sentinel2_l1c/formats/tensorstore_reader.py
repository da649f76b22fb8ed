"""tensorstore (Google's C++ array library): its ``zarr3`` driver over its own key-value stores
(``file``, ``s3``, and ``zip`` on either), decoding chunks on its own threads.

The reader of a zipped Zarr reads the archive's central directory, then byte ranges of the
chunks, all in C++; every band group of a patch is requested at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from sentinel2_l1c.formats.base import Reader
from sentinel2_l1c.loaders.base import Catalogue
from sentinel2_l1c.loaders.tensorstore_arrays import TensorstoreLoader
from sentinel2_l1c.storage.places import Place


@dataclass(frozen=True)
class TensorstoreReader(Reader):
    """tensorstore on a Zarr tree (``archive`` False) or a zipped Zarr (True)."""

    archive: bool = False
    name: str = "tensorstore"
    label: str = "tensorstore"
    #: its zarr3 driver's codecs (C++; no numcodecs or imagecodecs ones)
    codecs: ClassVar[frozenset[str] | None] = frozenset(
        {"blosc", "zstd", "gzip", "bytes", "transpose", "crc32c", "sharding_indexed"}
    )

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> TensorstoreLoader:
        spec, context = place.tensorstore(self.archive)
        if self.archive:
            spec = {"driver": "zip", "base": spec}
        return TensorstoreLoader(spec, context, catalogue, str(place), made_by, self.check_codecs)
