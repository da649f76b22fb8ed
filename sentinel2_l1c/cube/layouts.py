"""Named Zarr layouts: how the Zarr formats chunk, shard and compress a band group.

Patch loads from Zarr are decompression-bound, so what is decompressed matters more than
which library does it. A layout gives, per resolution, the time chunk, the side of a chunk
(of an inner chunk, when sharded) and the side of a block: the shard of a sharded Zarr and,
for every Zarr format, the region one conversion task writes (a multiple of the chunk side and
of ESA's JP2 tile side, so every JP2 tile is decoded once and every chunk or shard written
once), and the codec (``codecs``). An image codec's chunks hold one date of one band; its
shards hold what a shard of the same tiling holds with any other codec.

The arithmetic here is pure (no I/O): chunks a patch touches, read amplification (bytes
decompressed / bytes delivered) and objects per full-size tile-year, which
``layout_sweep`` checks against the stores.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from rasterio.windows import Window

from sentinel2_l1c.cube import codecs
from sentinel2_l1c.cube.codecs import Codec
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.s2.bands import BAND_GROUPS, RESOLUTIONS, BandGroup

#: ESA's JP2 tile side per resolution; blocks are multiples of it.
JP2_TILE = {10: 1024, 20: 640, 60: 192}
#: A full-size tile in pixels per resolution (109.8 km).
FULL_TILE = {10: 10980, 20: 5490, 60: 1830}
#: Dates of a busy full-size tile-year (both satellites, overlapping orbits at 60° N).
FULL_YEAR_DATES = 192
#: Zarr metadata and coordinate objects of a band group (group and 7 arrays' zarr.json, one
#: chunk each of time, product_id, band, y, x; its STAC Item: ``formats.zarr_stac``) and of a
#: tile-year (its tile and year groups).
OBJECTS_PER_GROUP = 14
OBJECTS_PER_TILE_YEAR = 2
#: Objects of a whole store besides its tile-years: the root group and the STAC Collection.
OBJECTS_PER_STORE = 2


@dataclass(frozen=True)
class Tiling:
    """Chunking of one resolution: time steps per chunk, chunk side, block (shard) side."""

    time: int
    side: int
    block: int


@dataclass(frozen=True)
class GroupLayout:
    """The layout of one band group, as the converter and the store need it."""

    name: str  # of the named layout
    chunks: tuple[int, int, int, int]  # (time, band, y, x)
    block: int  # pixels; the shard side when sharded
    sharded: bool
    codec: Codec
    #: time steps and bands of a shard (of a chunk when not sharded)
    shard_time: int = 0
    bands: int = 0
    checksum: bool = False  # a crc32c of every stored chunk

    @property
    def shards(self) -> tuple[int, int, int, int] | None:
        if not self.sharded:
            return None
        time = self.shard_time or self.chunks[0]
        return (time, self.bands or self.chunks[1], self.block, self.block)

    @property
    def object_shape(self) -> tuple[int, int, int, int]:
        """The shape one stored object covers: a shard, or a chunk."""
        return self.shards or self.chunks

    @property
    def time_step(self) -> int:
        """Time steps one conversion block writes: a stored object's."""
        return self.object_shape[0]


@dataclass(frozen=True)
class ZarrLayout:
    name: str
    description: str
    tilings: tuple[Tiling, Tiling, Tiling]  # 10, 20, 60 m
    codec: Codec = codecs.CODECS["zstd5"]
    #: a crc32c after the codec of every chunk (the shard index has its own): a changed
    #: stored byte fails the read instead of giving other pixels. Asked for (``NAME_crc32c``):
    #: it costs 6 % of a cold patch load from temp through tensorstore (docs/conversions.md)
    checksum: bool = False

    def __post_init__(self) -> None:
        for resolution, tiling in zip(RESOLUTIONS, self.tilings, strict=True):
            if min(tiling.time, tiling.side, tiling.block) < 1 or tiling.block % tiling.side:
                raise ConfigError(
                    f"layout {self.name}: at {resolution} m the block ({tiling.block} px) must "
                    f"be a positive multiple of the chunk side ({tiling.side} px)"
                )

    @property
    def codec_names(self) -> tuple[str, ...]:
        """The codec names its arrays' metadata holds (what a reader must decode)."""
        return (*self.codec.metadata_names, *(("crc32c",) if self.checksum else ()))

    def tiling(self, resolution: int) -> Tiling:
        return self.tilings[RESOLUTIONS.index(resolution)]

    def of(self, band_group: BandGroup, sharded: bool) -> GroupLayout:
        """The group's layout; ConfigError for an image codec without shards (a Zarr of one
        object per date, band and chunk)."""
        tiling, bands = self.tiling(band_group.resolution), len(band_group.bands)
        if self.codec.images and not sharded:
            raise ConfigError(
                f"layout {self.name}: its codec {self.codec} codes single images, one object "
                "per date and band; use it with a sharded Zarr format"
            )
        chunk_time, chunk_bands = (1, 1) if self.codec.images else (tiling.time, bands)
        chunks = (chunk_time, chunk_bands, tiling.side, tiling.side)
        return GroupLayout(
            self.name, chunks, tiling.block, sharded, self.codec, tiling.time, bands, self.checksum
        )

    def summary(self) -> str:
        """One line: chunks per resolution and the codec."""
        parts = [f"{t.time}×{t.side}²/{t.block}²" for t in self.tilings]
        checksum = ", crc32c" if self.checksum else ""
        return f"{' '.join(parts)} (time×chunk²/block² at 10/20/60 m), {self.codec}{checksum}"


def _layout(
    name: str, description: str, times: Iterable[int], sides: Iterable[int], codec: str = "zstd5"
) -> ZarrLayout:
    tilings = tuple(
        Tiling(time, side, block)
        for time, side, block in zip(times, sides, (2048, 1280, 768), strict=True)
    )
    return ZarrLayout(name, description, tilings, codecs.get(codec))  # type: ignore[arg-type]


FIRST_TIMES = (20, 40, 80)
#: Every named layout. Blocks are 2048/1280/768 px in all (two, two and four JP2 tiles a
#: side; a 10 m block of 20 dates is 670 MB in memory), so a sharded Zarr has the first
#: version's 512 shards per full-size tile-year whatever its inner chunks.
LAYOUTS: dict[str, ZarrLayout] = {
    layout.name: layout
    for layout in (
        _layout(
            "first_version", "the first version's chunks: 512/256/128 px, zstd-5",
            FIRST_TIMES, (512, 256, 128),
        ),
        _layout("chunks_256", "half the chunk side", FIRST_TIMES, (256, 128, 64)),
        _layout("chunks_128", "a quarter of the chunk side", FIRST_TIMES, (128, 64, 32)),
        _layout(
            "chunks_128_time_40", "chunks_128 with 40 dates a chunk at 10 m too",
            (40, 40, 80), (128, 64, 32),
        ),
        # the codec candidates in chunks_128's tiling: chunks_128_lz4, chunks_128_pcodec, …
        *(
            _layout(f"chunks_128_{codec.name}", f"chunks_128 with {codec.description}",
                    FIRST_TIMES, (128, 64, 32), codec.name)
            for codec in codecs.CODECS.values() if codec.name != "zstd5"
        ),
    )
}  # fmt: skip
LEGACY = "first_version"  # the layout of groups written before layouts were recorded


#: A layout's name with this suffix: the layout with a crc32c checksum of every chunk
WITH_CHECKSUM = "_crc32c"
#: A layout's name with this suffix: one date per chunk and shard, so appending a date writes
#: only that date's objects (a time chunk of 20 rewrites its whole chunk or shard each time):
#: what ``ingest`` appends with while a year is open (docs/ingest.md)
APPEND = "_append"


def get(name: str) -> ZarrLayout:
    """The layout called ``name`` (``NAME_append``: one date per chunk; ``NAME_crc32c``: with
    checksums; both: ``NAME_append_crc32c``); ConfigError naming the choices otherwise."""
    base = name.removesuffix(WITH_CHECKSUM)
    checksum = base != name
    append = base.endswith(APPEND)
    base = base.removesuffix(APPEND)
    if base not in LAYOUTS:
        raise ConfigError(
            f"unknown layout {name!r}; choose from {', '.join(LAYOUTS)} (each also with "
            f"{APPEND}: one date per chunk, and {WITH_CHECKSUM}: with checksums)"
        )
    layout = LAYOUTS[base]
    if append:
        tilings = tuple(replace(tiling, time=1) for tiling in layout.tilings)
        description = f"{layout.description}, one date per chunk"
        layout = replace(layout, tilings=tilings, description=description)  # type: ignore[arg-type]
    if checksum:
        layout = replace(layout, description=f"{layout.description}, crc32c checksums",
                         checksum=True)  # fmt: skip
    return replace(layout, name=name)


# --------------------------------------------------------------------------------------
# Arithmetic of a layout
# --------------------------------------------------------------------------------------


def touched_chunks(
    shape: tuple[int, ...], chunks: tuple[int, ...], window: Window
) -> list[tuple[int, int, int, int]]:
    """Indices of the (time, band, y, x) chunks a window over every time and band touches."""
    times, bands = (-(-shape[i] // chunks[i]) for i in (0, 1))
    rows = range(window.row_off // chunks[2], (window.row_off + window.height - 1) // chunks[2] + 1)
    cols = range(window.col_off // chunks[3], (window.col_off + window.width - 1) // chunks[3] + 1)
    return list(itertools.product(range(times), range(bands), rows, cols))


def chunk_region(
    shape: tuple[int, ...], chunks: tuple[int, ...], index: tuple[int, ...]
) -> tuple[slice, ...]:
    """The array region of the chunk at ``index`` (cut at the array's edge)."""
    return tuple(
        slice(i * side, min((i + 1) * side, size))
        for i, side, size in zip(index, chunks, shape, strict=True)
    )


def data_objects(shape: tuple[int, ...], layout: GroupLayout) -> int:
    """Stored objects of a band group's ``data`` of ``shape``: chunks, or shards."""
    return math.prod(
        -(-size // side) for size, side in zip(shape, layout.object_shape, strict=True)
    )


def objects_per_tile_year(
    layout: ZarrLayout,
    sharded: bool,
    dates: int = FULL_YEAR_DATES,
    sides: dict[int, int] | None = None,
    band_groups: tuple[BandGroup, ...] = BAND_GROUPS,
) -> int:
    """Objects of one tile-year (data, metadata and coordinates); full-size by default."""
    sides = sides or FULL_TILE
    total = OBJECTS_PER_TILE_YEAR
    for group in band_groups:
        side = sides[group.resolution]
        shape = (dates, len(group.bands), side, side)
        total += data_objects(shape, layout.of(group, sharded)) + OBJECTS_PER_GROUP
    return total


def patch_bytes(layout: GroupLayout, shape: tuple[int, ...], window: Window) -> tuple[int, int]:
    """Bytes decompressed (whole chunks touched) and delivered (the window's pixels) when a
    patch window of every date and band is read from a uint16 array of ``shape``."""
    decompressed = len(touched_chunks(shape, layout.chunks, window)) * math.prod(layout.chunks)
    delivered = shape[0] * shape[1] * window.height * window.width
    return 2 * decompressed, 2 * delivered
