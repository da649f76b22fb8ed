"""The SAFE archive as a virtual Zarr: JP2 tiles as chunks, read where the SAFE files are.

Made by ``index_safe`` (no pixel copied): one manifest per tile-year (``jp2.virtual_store``)
with the Zarr format's groups, coordinates and attributes, whose ``data`` chunks are the tiles
of the band files, decoded by the ``jp2.codec`` codec. Its place on a storage holds only the
manifests; the chunks are read from the SAFE format's place on the same storage, so staging
copies the SAFE files and the manifests, and one manifest serves every storage.

Two readers: zarr-python over the manifest (the default), and GDAL on the band files with a
TLM marker spliced into each main header through ``/vsisparse/`` (``safe_virtual@gdal_tlm``):
the index tells GDAL where every tile starts, so a window reads only the tiles it touches
(``loaders.gdal_tlm``).
"""

from __future__ import annotations

from dataclasses import dataclass

from obstore.exceptions import BaseError

from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.formats.base import Format, Packaging, Reader
from sentinel2_l1c.formats.safe import band_files
from sentinel2_l1c.jp2.index import CodestreamError
from sentinel2_l1c.jp2.virtual_store import Manifest, VirtualStore, manifest_name
from sentinel2_l1c.loaders.base import Catalogue
from sentinel2_l1c.loaders.gdal_files import FileLoader
from sentinel2_l1c.loaders.gdal_tlm import tile_grids, tlm_loader
from sentinel2_l1c.loaders.zarr_arrays import ZarrLoader
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.storage.places import Place


def read_manifest(place: Place, catalogue: Catalogue, made_by: str) -> Manifest:
    """The tile-year's manifest on ``place``; InputDataError naming what makes it."""
    name = manifest_name(catalogue.tile, catalogue.year)
    try:
        return Manifest.from_bytes(place.read(name))
    except FileNotFoundError:
        raise InputDataError(f"{place}: no manifest {name}: run {made_by}") from None


def source_of(referenced: Place | None) -> Place:
    if referenced is None:
        raise ConfigError("a virtual format is read with the place of the files it references")
    return referenced


@dataclass(frozen=True)
class VirtualReader(Reader):
    """zarr-python over the manifest; chunks fetched by obstore from the SAFE place."""

    name: str = "zarr-python"
    label: str = "zarr-python, obstore"

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> ZarrLoader:
        source = source_of(referenced)
        manifest = read_manifest(place, catalogue, made_by)
        store = VirtualStore(manifest, source.obstore(), source.quota, str(source))
        errors = (BaseError, CodestreamError)  # CodestreamError: a tile OpenJPEG refuses
        return ZarrLoader(store, catalogue, str(place), made_by, errors=errors)


@dataclass(frozen=True)
class GdalTlmReader(Reader):
    """GDAL windowed reads of the band files, each opened through ``/vsisparse/`` with a TLM
    marker made from the manifest's tile offsets (the head of each file is read at open) and
    the tiles a window touches fetched before GDAL reads them."""

    name: str = "gdal_tlm"
    label: str = "GDAL, TLM spliced in by /vsisparse/"
    threads: int = 16  # heads fetched at once when opening

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> FileLoader:
        source = source_of(referenced)
        manifest = read_manifest(place, catalogue, made_by)
        grids = tile_grids(manifest)
        names = [n for p in catalogue.products for g in BAND_GROUPS for n in band_files(p, g)]
        missing = next((name for name in names if name not in grids), None)
        if missing is not None:
            raise InputDataError(f"{place}: the manifest does not index {missing}: run {made_by}")
        return tlm_loader(catalogue, band_files, source, grids, self.threads, manifest.versions)


SAFE_VIRTUAL = Format(
    name="safe_virtual",
    label="SAFE as virtual Zarr",
    packaging=Packaging.TREE,
    maker="index_safe",
    made_from="safe",
    references="safe",
    readers=(VirtualReader(), GdalTlmReader()),
)
