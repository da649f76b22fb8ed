"""The SAFE archive as a virtual Zarr: JP2 tiles as chunks, read where the SAFE files are.

Made by ``index_safe`` (no pixel copied): one manifest per tile-year (``virtual_zarr``) with
the Zarr format's groups, coordinates and attributes, whose ``data`` chunks are the tiles of
the band files, decoded by the ``jp2_codec`` codec. Its place on a storage holds only the
manifests; the chunks are read from the SAFE format's place on the same storage, so staging
copies the SAFE files and the manifests, and one manifest serves every storage.

Two readers: zarr-python over the manifest (the default), and GDAL on the band files with a
TLM marker spliced into each main header through ``/vsisparse/`` (``safe_virtual@gdal_tlm``):
the index tells GDAL where every tile starts, so a window reads only the tiles it touches.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import obstore
from obstore.exceptions import BaseError, NotFoundError

from ..errors import ConfigError, InputDataError
from ..jp2_index import EOC, CodestreamError, Tile, has_tlm, with_tlm
from ..loaders import Catalogue, FileLoader, ZarrLoader, reported
from ..storages import Place
from ..utils import BAND_GROUPS
from ..virtual_zarr import Manifest, VirtualStore, manifest_name
from .base import Format, Packaging, Reader
from .obstore_reader import object_store
from .safe import band_files


def read_manifest(place: Place, catalogue: Catalogue, made_by: str) -> Manifest:
    """The tile-year's manifest on ``place``; InputDataError naming what makes it."""
    name = manifest_name(catalogue.tile, catalogue.year)
    with reported(str(place), (BaseError,)):
        try:
            data = obstore.get(object_store(place), name).bytes()
        except (FileNotFoundError, NotFoundError):
            raise InputDataError(f"{place}: no manifest {name}: run {made_by}") from None
    return Manifest.from_bytes(bytes(data))


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
        store = VirtualStore(manifest, object_store(source), source.quota)
        errors = (BaseError, CodestreamError)  # CodestreamError: a tile OpenJPEG refuses
        return ZarrLoader(store, catalogue, str(place), made_by, errors=errors)


def tiles_by_file(manifest: Manifest) -> dict[str, list[Tile]]:
    """Every referenced file's tiles in file order, numbered as in the file (row by row)."""
    across: dict[str, int] = {}
    found: dict[str, list[Tile]] = {}
    for key, reference in manifest.references.items():
        array, _, position = key.partition("/c/")
        if array not in across:
            metadata = json.loads(manifest.raw[f"{array}/zarr.json"])
            chunk = metadata["chunk_grid"]["configuration"]["chunk_shape"][-1]
            across[array] = -(-metadata["shape"][-1] // chunk)
        row, col = map(int, position.split("/")[-2:])
        tile = Tile(row * across[array] + col, reference.offset, reference.size)
        found.setdefault(reference.path, []).append(tile)
    return {path: sorted(tiles, key=lambda t: t.offset) for path, tiles in found.items()}


def sparse_description(source: str, head: Path, head_length: int, tiles: list[Tile]) -> str:
    """A ``/vsisparse/`` file: the patched head from the local file ``head`` (its first
    ``head_length`` bytes), the tiles from ``source``, then the EOC marker that ``head`` ends
    with (so whatever follows the last tile in the original file is never read)."""
    start = tiles[0].offset
    tiles_length = tiles[-1].offset + tiles[-1].length - start
    regions = (
        (str(head), 0, 0, head_length),
        (source, head_length, start, tiles_length),
        (str(head), head_length + tiles_length, head_length, len(EOC)),
    )
    parts = "".join(
        f'<SubfileRegion><Filename relative="0">{escape(name)}</Filename>'
        f"<DestinationOffset>{destination}</DestinationOffset><SourceOffset>{offset}</SourceOffset>"
        f"<RegionLength>{length}</RegionLength></SubfileRegion>"
        for name, destination, offset, length in regions
    )
    length = head_length + tiles_length + len(EOC)
    return f"<VSISparseFile><Length>{length}</Length>{parts}</VSISparseFile>"


@dataclass(frozen=True)
class GdalTlmReader(Reader):
    """GDAL windowed reads of the band files, each opened through ``/vsisparse/`` with a TLM
    marker made from the manifest's tile offsets (the head of each file is read at open)."""

    name: str = "gdal_tlm"
    label: str = "GDAL, TLM spliced in by /vsisparse/"
    threads: int = 16  # heads fetched at once when opening

    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> FileLoader:
        source = source_of(referenced)
        tiles = tiles_by_file(read_manifest(place, catalogue, made_by))
        names = [n for p in catalogue.products for g in BAND_GROUPS for n in band_files(p, g)]
        missing = next((name for name in names if name not in tiles), None)
        if missing is not None:
            raise InputDataError(f"{place}: the manifest does not index {missing}: run {made_by}")
        folder = Path(tempfile.mkdtemp(prefix="dslab-tlm-"))
        files = object_store(source)

        def prepare(item: tuple[int, str]) -> str:
            """What GDAL opens for one band file: the file itself if it has TLM markers."""
            number, name = item
            first = tiles[name][0].offset  # the main header ends where the first tile starts
            head = bytes(obstore.get_range(files, name, start=0, length=first + 4))
            if has_tlm(head):
                return source.gdal_path(name)
            patched = with_tlm(head[:first], tiles[name])
            head_file, description = folder / f"{number}.head", folder / f"{number}.xml"
            head_file.write_bytes(patched + EOC)
            description.write_text(
                sparse_description(source.gdal_path(name), head_file, len(patched), tiles[name])
            )
            return f"/vsisparse/{description}"

        try:
            threads = min(self.threads, source.quota or self.threads)
            errors = (BaseError, CodestreamError)
            with reported(str(source), errors), ThreadPoolExecutor(threads) as pool:
                paths = dict(zip(names, pool.map(prepare, enumerate(names)), strict=True))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileLoader(
            catalogue,
            band_files,
            source,
            gdal_path=paths.__getitem__,
            on_close=lambda: shutil.rmtree(folder, ignore_errors=True),
        )


SAFE_VIRTUAL = Format(
    name="safe_virtual",
    label="SAFE as virtual Zarr",
    packaging=Packaging.TREE,
    maker="index_safe",
    made_from="safe",
    references="safe",
    readers=(VirtualReader(), GdalTlmReader()),
)
