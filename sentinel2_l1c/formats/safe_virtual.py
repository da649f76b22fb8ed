"""The SAFE archive as a virtual Zarr: JP2 tiles as chunks, read where the SAFE files are.

Made by ``index_safe`` (no pixel copied): one manifest per tile-year (``virtual_zarr``) with
the Zarr format's groups, coordinates and attributes, whose ``data`` chunks are the tiles of
the band files, decoded by the ``jp2_codec`` codec. Its place on a storage holds only the
manifests; the chunks are read from the SAFE format's place on the same storage, so staging
copies the SAFE files and the manifests, and one manifest serves every storage.

Two readers: zarr-python over the manifest (the default), and GDAL on the band files with a
TLM marker spliced into each main header through ``/vsisparse/`` (``safe_virtual@gdal_tlm``):
the index tells GDAL where every tile starts, so a window reads only the tiles it touches,
and tells the reader which tiles those are, so it fetches them before GDAL asks, one range
request per run of adjacent tiles.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import obstore
from obstore.exceptions import BaseError, NotFoundError
from rasterio.io import MemoryFile
from rasterio.windows import Window

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


#: Bytes fetched past each run of touched tiles: after decoding a tile GDAL's OpenJPEG reads
#: the start of the next one through its stream buffer (1 KB), which would otherwise be one
#: more request to the storage.
TAIL = 1024


@dataclass(frozen=True)
class TileGrid:
    """A band file's tiles, in file order, and how they lie on its image."""

    tiles: tuple[Tile, ...]
    tile_shape: tuple[int, int]  # rows, columns
    across: int  # tiles in a row

    def touched(self, window: Window) -> list[Tile]:
        """The tiles a window needs, in file order."""
        (height, width), w = self.tile_shape, window
        rows = range(w.row_off // height, (w.row_off + w.height - 1) // height + 1)
        cols = range(w.col_off // width, (w.col_off + w.width - 1) // width + 1)
        numbers = {row * self.across + col for row in rows for col in cols}
        return [tile for tile in self.tiles if tile.index in numbers]


def tile_grids(manifest: Manifest) -> dict[str, TileGrid]:
    """Every referenced file's tile grid, its tiles numbered as in the file (row by row)."""
    shapes: dict[str, tuple[tuple[int, int], int]] = {}  # array → tile shape, tiles across
    found: dict[str, tuple[tuple[tuple[int, int], int], list[Tile]]] = {}
    for key, reference in manifest.references.items():
        array, _, position = key.partition("/c/")
        if array not in shapes:
            metadata = json.loads(manifest.raw[f"{array}/zarr.json"])
            height, width = metadata["chunk_grid"]["configuration"]["chunk_shape"][-2:]
            shapes[array] = (height, width), -(-metadata["shape"][-1] // width)
        row, col = map(int, position.split("/")[-2:])
        tile = Tile(row * shapes[array][1] + col, reference.offset, reference.size)
        found.setdefault(reference.path, (shapes[array], []))[1].append(tile)
    return {
        path: TileGrid(tuple(sorted(tiles, key=lambda t: t.offset)), *shape)
        for path, (shape, tiles) in found.items()
    }


def fetch_ranges(tiles: Sequence[Tile], touched: Sequence[Tile], tail: int) -> list[range]:
    """The byte ranges to fetch for the ``touched`` tiles (file order) of a file whose tiles
    are ``tiles``: adjacent tiles in one range, each range ``tail`` bytes longer, but never
    past the last tile."""
    end_of_tiles = tiles[-1].offset + tiles[-1].length
    merged: list[list[int]] = []
    for tile in touched:
        if merged and tile.offset <= merged[-1][1] + tail:
            merged[-1][1] = tile.offset + tile.length
        else:
            merged.append([tile.offset, tile.offset + tile.length])
    return [range(start, min(end + tail, end_of_tiles)) for start, end in merged]


def sparse_description(
    source: str,
    head: Path,
    head_length: int,
    tiles: Sequence[Tile],
    fetched: Sequence[tuple[range, str]] = (),
) -> str:
    """A ``/vsisparse/`` file: the patched head from the local file ``head`` (its first
    ``head_length`` bytes), the tiles from ``source`` except the ``fetched`` ranges, read
    from the files named with them (which may overlap), then the EOC marker that ``head``
    ends with (so whatever follows the last tile in the original file is never read)."""
    start = tiles[0].offset
    end = tiles[-1].offset + tiles[-1].length
    regions = [(str(head), 0, 0, head_length)]
    position = start
    for span, name in [*sorted(fetched, key=lambda f: f[0].start), (range(end, end), "")]:
        if span.start > position:
            regions.append(
                (source, head_length + position - start, position, span.start - position)
            )
            position = span.start
        if span.stop > position:
            regions.append(
                (name, head_length + position - start, position - span.start, span.stop - position)
            )
            position = span.stop
    regions.append((str(head), head_length + end - start, head_length, len(EOC)))
    parts = "".join(
        f'<SubfileRegion><Filename relative="0">{escape(name)}</Filename>'
        f"<DestinationOffset>{destination}</DestinationOffset><SourceOffset>{offset}</SourceOffset>"
        f"<RegionLength>{length}</RegionLength></SubfileRegion>"
        for name, destination, offset, length in regions
    )
    length = head_length + end - start + len(EOC)
    return f"<VSISparseFile><Length>{length}</Length>{parts}</VSISparseFile>"


@dataclass(frozen=True)
class PatchedFile:
    """A band file as GDAL reads it: its head, a TLM marker in it, and the first bytes of its
    first tile (OpenJPEG reads them at open) in local files."""

    head: Path
    head_length: int
    opening: tuple[range, str]  # the first tile's first bytes and the file holding them
    grid: TileGrid


class TlmSource:
    """What GDAL opens for a window of a band file: a ``/vsisparse/`` file (in memory) of the
    patched head and the file's tiles, those the window touches fetched first, one range
    request per run of adjacent tiles. GDAL's own reads would take about three requests a
    tile (a 16 KB block at its start, then the rest), and the next tile's first bytes."""

    def __init__(self, place: Place, files: dict[str, PatchedFile]) -> None:
        self.place = place
        self.store = object_store(place)
        self.files = files

    @contextmanager
    def __call__(self, name: str, window: Window) -> Iterator[str]:
        file = self.files[name]
        tiles = file.grid.tiles
        fetched = [file.opening]
        with ExitStack() as stack, reported(str(self.place), (BaseError,)):
            for span in fetch_ranges(tiles, file.grid.touched(window), TAIL):
                data = obstore.get_range(self.store, name, start=span.start, end=span.stop)
                fetched.append((span, stack.enter_context(MemoryFile(bytes(data))).name))
            source = self.place.gdal_path(name)
            text = sparse_description(source, file.head, file.head_length, tiles, fetched)
            description = stack.enter_context(MemoryFile(text.encode(), ext=".xml"))
            yield f"/vsisparse/{description.name}"


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
        grids = tile_grids(read_manifest(place, catalogue, made_by))
        names = [n for p in catalogue.products for g in BAND_GROUPS for n in band_files(p, g)]
        missing = next((name for name in names if name not in grids), None)
        if missing is not None:
            raise InputDataError(f"{place}: the manifest does not index {missing}: run {made_by}")
        folder = Path(tempfile.mkdtemp(prefix="dslab-tlm-"))
        files = object_store(source)

        def prepare(item: tuple[int, str]) -> PatchedFile:
            """A band file's head with a TLM marker (its own, or one made from the index),
            and the first bytes of its first tile."""
            number, name = item
            grid = grids[name]
            first = grid.tiles[0].offset  # the main header ends where the first tile starts
            opening = range(first, min(first + TAIL, grid.tiles[-1].offset + grid.tiles[-1].length))
            head = bytes(obstore.get_range(files, name, start=0, end=opening.stop))
            patched = head[:first] if has_tlm(head) else with_tlm(head[:first], grid.tiles)
            head_file, opening_file = folder / f"{number}.head", folder / f"{number}.opening"
            head_file.write_bytes(patched + EOC)
            opening_file.write_bytes(head[first:])
            return PatchedFile(head_file, len(patched), (opening, str(opening_file)), grid)

        try:
            threads = min(self.threads, source.quota or self.threads)
            errors = (BaseError, CodestreamError)
            with reported(str(source), errors), ThreadPoolExecutor(threads) as pool:
                patched = dict(zip(names, pool.map(prepare, enumerate(names)), strict=True))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return FileLoader(
            catalogue,
            band_files,
            source,
            gdal_source=TlmSource(source, patched),
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
