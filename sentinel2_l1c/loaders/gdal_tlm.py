"""GDAL windowed reads of JPEG 2000 band files whose tiles a virtual Zarr manifest indexes.

Each band file is opened through ``/vsisparse/`` with a TLM marker spliced into its main
header (made from the manifest's tile offsets, unless the file has its own), so GDAL reads
only the tiles a window touches; those tiles are fetched before GDAL asks, one range request
per run of adjacent tiles, instead of GDAL's three or so requests a tile.
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
from obstore.exceptions import BaseError
from obstore.store import LocalStore
from rasterio.io import MemoryFile
from rasterio.windows import Window

from sentinel2_l1c.jp2.index import EOC, CodestreamError, Tile, has_tlm, with_tlm
from sentinel2_l1c.jp2.virtual_store import FileVersion, Manifest, changed_file
from sentinel2_l1c.loaders.base import Catalogue, reported
from sentinel2_l1c.loaders.gdal_files import FileLoader, FilesOf
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.storage.places import Place

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

    @property
    def end(self) -> int:
        """Where the last tile ends in the file."""
        return self.tiles[-1].offset + self.tiles[-1].length

    def fetch_ranges(self, touched: Sequence[Tile], tail: int) -> list[range]:
        """The byte ranges to fetch for the ``touched`` tiles (in file order): adjacent tiles
        in one range, each range ``tail`` bytes longer, but never past the last tile."""
        merged: list[list[int]] = []
        for tile in touched:
            if merged and tile.offset <= merged[-1][1] + tail:
                merged[-1][1] = tile.offset + tile.length
            else:
                merged.append([tile.offset, tile.offset + tile.length])
        return [range(start, min(end + tail, self.end)) for start, end in merged]

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


def sparse_description(
    source: str,
    head: Path,
    head_length: int,
    grid: TileGrid,
    fetched: Sequence[tuple[range, str]] = (),
) -> str:
    """A ``/vsisparse/`` file: the patched head from the local file ``head`` (its first
    ``head_length`` bytes), the tiles of ``grid`` from ``source`` except the ``fetched``
    ranges, read from the files named with them (which may overlap), then the EOC marker that
    ``head`` ends with (so whatever follows the last tile in the original file is never
    read)."""
    start, end = grid.tiles[0].offset, grid.end
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
        self.store = place.obstore()
        self.files = files

    @contextmanager
    def __call__(self, name: str, window: Window) -> Iterator[str]:
        file = self.files[name]
        fetched = [file.opening]
        with ExitStack() as stack, reported(str(self.place), (BaseError,)):
            for span in file.grid.fetch_ranges(file.grid.touched(window), TAIL):
                data = obstore.get_range(self.store, name, start=span.start, end=span.stop)
                fetched.append((span, stack.enter_context(MemoryFile(bytes(data))).name))
            source = self.place.gdal_path(name)
            text = sparse_description(source, file.head, file.head_length, file.grid, fetched)
            description = stack.enter_context(MemoryFile(text.encode(), ext=".xml"))
            yield f"/vsisparse/{description.name}"


def tlm_loader(
    catalogue: Catalogue,
    files_of: FilesOf,
    source: Place,
    grids: dict[str, TileGrid],
    threads: int,
    versions: dict[str, FileVersion],
) -> FileLoader:
    """A ``FileLoader`` of the band files on ``source`` that opens each through a
    ``TlmSource``: every file's head is read now (``threads`` at once, within the place's
    quota) and checked against its indexed version, patched and kept in a temporary folder
    until the loader is closed."""
    names = [n for p in catalogue.products for g in BAND_GROUPS for n in files_of(p, g)]
    folder = Path(tempfile.mkdtemp(prefix="dslab-tlm-"))
    files = source.obstore()
    local = isinstance(files, LocalStore)

    def prepare(item: tuple[int, str]) -> PatchedFile:
        """A band file's head with a TLM marker (its own, or one made from the index), and
        the first bytes of its first tile."""
        number, name = item
        grid = grids[name]
        first = grid.tiles[0].offset  # the main header ends where the first tile starts
        opening = range(first, min(first + TAIL, grid.end))
        found = obstore.get(files, name, options={"range": (0, opening.stop)})
        version = versions.get(name)
        why = None if version is None else version.changed(found.meta, local)
        if why is not None:
            raise changed_file(str(source), name, why)
        head = bytes(found.bytes())
        patched = head[:first] if has_tlm(head) else with_tlm(head[:first], grid.tiles)
        head_file, opening_file = folder / f"{number}.head", folder / f"{number}.opening"
        head_file.write_bytes(patched + EOC)
        opening_file.write_bytes(head[first:])
        return PatchedFile(head_file, len(patched), (opening, str(opening_file)), grid)

    try:
        threads = min(threads, source.quota or threads)
        errors = (BaseError, CodestreamError)
        with reported(str(source), errors), ThreadPoolExecutor(threads) as pool:
            patched = dict(zip(names, pool.map(prepare, enumerate(names)), strict=True))
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return FileLoader(
        catalogue,
        files_of,
        source,
        gdal_source=TlmSource(source, patched),
        on_close=lambda: shutil.rmtree(folder, ignore_errors=True),
    )
