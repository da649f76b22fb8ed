"""Reading per-product files (SAFE band files, COGs) with GDAL windowed reads."""

from __future__ import annotations

from dataclasses import dataclass

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.formats.base import Reader
from sentinel2_l1c.loaders.base import Catalogue
from sentinel2_l1c.loaders.gdal_files import FileLoader, FilesOf
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.storage.places import Place


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
