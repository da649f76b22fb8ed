"""Reading per-product files (SAFE band files, COGs) with GDAL windowed reads."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputDataError
from ..loaders import Catalogue, FileLoader, FilesOf
from ..storages import Place
from ..utils import BAND_GROUPS
from .base import Reader


@dataclass(frozen=True)
class GdalReader(Reader):
    """Windowed reads through GDAL (``/vsis3/`` on S3), products in parallel threads."""

    files_of: FilesOf
    name: str = "gdal"
    label: str = "GDAL"

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> FileLoader:
        names = [
            name for p in catalogue.products for g in BAND_GROUPS for name in self.files_of(p, g)
        ]
        missing = place.missing(names)
        if missing is not None:
            raise InputDataError(f"{place.gdal_path(missing)} does not exist: run {made_by} first")
        return FileLoader(catalogue, self.files_of, place)
