"""Where each tile of a JPEG 2000 band file lies, and how one tile decodes on its own.

Sentinel-2 band files are tiled JPEG 2000 (1024/640/192 px tiles at 10/20/60 m), so a tile's
bytes can be one chunk of a virtual Zarr or one entry of a TLM marker. The parsing here is
pure (bytes in, offsets out); ``index_file`` does the reading through a function it is given
(a local ``pread`` or an S3 range request) and counts the reads:

- with a TLM marker in the main header (products since 2026): one read of the file's head;
- without (the archive): a walk over the tile-part headers (SOT marker, length ``Psot``),
  each hop one bounded read that is skipped when an earlier read already holds it.

``tile_codestream`` makes the codestream of a single tile: the main header's SIZ rewritten so
that the image is exactly that tile at its own place on the reference grid (so code-block and
precinct partitions stay as encoded), the tile renumbered 0. OpenJPEG decodes that alone.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SOC, SOT, EOC = b"\xff\x4f", b"\xff\x90", b"\xff\xd9"
SIZ, TLM, PLM, PLT, PPM, COM, SOD = 0xFF51, 0xFF55, 0xFF57, 0xFF58, 0xFF60, 0xFF64, 0xFF93
#: main-header segments a lone tile does not need (their content describes the whole file)
DROPPED = {TLM, PLM, COM}
HEAD_READ = 64 * 1024  # first read: the JP2 boxes and main header fit easily
WALK_READ = 16 * 1024  # each hop of the SOT walk (small tiles' headers share one read)
SOT_LENGTH = 12  # marker, Lsot, Isot, Psot, TPsot, TNsot
TILE_HEADER_PEEK = 4096  # a tile-part header (SOT to SOD, PLT included) this long is parsed


class CodestreamError(ValueError):
    """The bytes are not a JPEG 2000 codestream this tool can index (message without name)."""


@dataclass(frozen=True)
class Siz:
    """The image and tile geometry on the reference grid (SIZ marker)."""

    width: int  # Xsiz: right edge of the image area
    height: int
    x_offset: int  # XOsiz
    y_offset: int
    tile_width: int
    tile_height: int
    tile_x_offset: int
    tile_y_offset: int
    components: int

    @classmethod
    def parse(cls, segment: bytes) -> Siz:
        """From a SIZ segment (marker included)."""
        if len(segment) < 41:
            raise CodestreamError("SIZ marker segment is cut short")
        values = struct.unpack(">8IH", segment[6:40])
        return cls(*values)

    @property
    def tiles_across(self) -> int:
        return -(-(self.width - self.tile_x_offset) // self.tile_width)

    @property
    def tiles_down(self) -> int:
        return -(-(self.height - self.tile_y_offset) // self.tile_height)

    @property
    def tile_count(self) -> int:
        return self.tiles_across * self.tiles_down

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.height - self.y_offset, self.width - self.x_offset

    def tile_box(self, index: int) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of tile ``index`` on the reference grid."""
        across, down = index % self.tiles_across, index // self.tiles_across
        x0 = self.tile_x_offset + across * self.tile_width
        y0 = self.tile_y_offset + down * self.tile_height
        return (
            max(x0, self.x_offset),
            max(y0, self.y_offset),
            min(x0 + self.tile_width, self.width),
            min(y0 + self.tile_height, self.height),
        )

    def single_tile(self, segment: bytes, index: int) -> bytes:
        """The SIZ segment of an image that is only tile ``index``, on the same grid."""
        x0, y0, x1, y1 = self.tile_box(index)
        fields = (x1, y1, x0, y0, self.tile_width, self.tile_height, x0, y0)
        return segment[:6] + struct.pack(">8I", *fields) + segment[38:]


@dataclass(frozen=True)
class Tile:
    """One tile's bytes in the file: its tile-part from the SOT marker on."""

    index: int
    offset: int
    length: int
    header: TilePartHeader | None = None  # when the SOT walk read it


@dataclass(frozen=True)
class TilePartHeader:
    """A tile-part header (SOT to SOD) and the packet lengths its PLT markers list."""

    length: int  # bytes from SOT through SOD
    psot: int
    packets: tuple[int, ...] | None  # None: no PLT marker
    others: bool  # marker segments besides PLT and COM (e.g. a tile's own coding style)

    @classmethod
    def parse(cls, data: bytes) -> TilePartHeader | None:
        """From the start of a tile-part; None when ``data`` ends before its SOD marker."""
        if len(data) < SOT_LENGTH:
            return None
        walked = _marker_segments(data, SOT_LENGTH, SOD, "a tile-part header")
        if walked is None:
            return None
        segments, sod = walked
        plts = [segment for marker, segment in segments if marker == PLT]
        packets = tuple(n for plt in plts for n in _packet_lengths(plt[5:])) if plts else None
        others = any(marker not in (PLT, COM) for marker, _ in segments)
        return cls(sod + 2, struct.unpack(">I", data[6:10])[0], packets, others)


def _marker_segments(
    data: bytes, position: int, stop: int, where: str
) -> tuple[list[tuple[int, bytes]], int] | None:
    """The marker segments from ``position`` to the marker ``stop`` and the offset of that
    marker; None when ``data`` ends first."""
    segments = []
    while True:
        if position + 2 > len(data):
            return None
        marker = int.from_bytes(data[position : position + 2])
        if marker == stop:
            return segments, position
        if position + 4 > len(data):
            return None
        length = int.from_bytes(data[position + 2 : position + 4])
        if marker >> 8 != 0xFF or length < 2:
            raise CodestreamError(f"bad marker {marker:#06x} in {where} at byte {position}")
        if position + 2 + length > len(data):
            return None
        segments.append((marker, data[position : position + 2 + length]))
        position += 2 + length


def _packet_lengths(body: bytes) -> list[int]:
    """The lengths in a PLT segment's body after Zplt: 7 bits a byte, high bit = more."""
    lengths, value = [], 0
    for byte in body:
        value = (value << 7) | (byte & 0x7F)
        if not byte & 0x80:
            lengths.append(value)
            value = 0
    return lengths


@dataclass(frozen=True)
class MainHeader:
    """The codestream's main header: where it is in the file and what a lone tile needs."""

    start: int  # file offset of SOC
    end: int  # file offset of the first SOT
    siz: Siz
    #: SIZ, then the other segments a tile needs (coding style, quantisation…), as in the file
    template: bytes
    #: tile-part lengths from TLM markers (None: the file has none)
    tlm: tuple[tuple[int, int], ...] | None


@dataclass(frozen=True)
class Jp2Index:
    header: MainHeader
    tiles: tuple[Tile, ...]  # in tile order
    reads: int  # range reads it took


def _jp2c_box(head: bytes) -> tuple[int, int] | None:
    """(offset, header size) of the ``jp2c`` box of a JP2 file; None when ``head`` ends first."""
    position = 0
    while position + 8 <= len(head):
        length, kind = struct.unpack(">I4s", head[position : position + 8])
        header = 8
        if length == 1:
            if position + 16 > len(head):
                return None
            length, header = struct.unpack(">Q", head[position + 8 : position + 16])[0], 16
        if kind == b"jp2c":
            return position, header
        if length == 0 or length < header:
            raise CodestreamError(f"JP2 box {kind!r} at byte {position} has a bad length")
        position += length
    if position == 0 and len(head) >= 8:
        raise CodestreamError("neither a JP2 file nor a JPEG 2000 codestream")
    return None


def codestream_start(head: bytes) -> int | None:
    """Offset of the codestream (SOC) in a JP2 file or raw codestream; None when ``head``
    ends before the ``jp2c`` box."""
    if head[:2] == SOC:
        return 0
    box = _jp2c_box(head)
    return None if box is None else box[0] + box[1]


def parse_main_header(data: bytes, start: int) -> MainHeader | None:
    """The main header beginning at ``start`` in ``data``; None when ``data`` ends first."""
    if data[start : start + 2] != SOC:
        raise CodestreamError(f"no SOC marker at byte {start}")
    walked = _marker_segments(data, start + 2, int.from_bytes(SOT), "the main header")
    if walked is None:
        return None
    segments, position = walked
    if any(marker == PPM for marker, _ in segments):
        raise CodestreamError("packed packet headers (PPM) are not supported")
    kept = [segment for marker, segment in segments if marker not in DROPPED]
    if not kept or int.from_bytes(kept[0][:2]) != SIZ:
        raise CodestreamError("the main header does not start with a SIZ marker")
    siz = Siz.parse(kept[0])
    tlm = [segment for marker, segment in segments if marker == TLM]
    return MainHeader(
        start, position, siz, b"".join(kept), parse_tlm(tlm, siz.tile_count) if tlm else None
    )


def parse_tlm(segments: list[bytes], tiles: int) -> tuple[tuple[int, int], ...]:
    """(tile index, tile-part length) of every tile-part, from TLM segments in Ztlm order."""
    entries = []
    for segment in sorted(segments, key=lambda s: s[4]):
        stlm = segment[5]
        index_size, length_size = (stlm >> 4) & 3, 4 if stlm & 0x40 else 2
        if index_size == 3:
            raise CodestreamError("TLM marker with a bad Stlm")
        body, step = segment[6:], index_size + length_size
        for at in range(0, len(body) - step + 1, step):
            index = int.from_bytes(body[at : at + index_size]) if index_size else len(entries)
            entries.append((index, int.from_bytes(body[at + index_size : at + step])))
    return tuple(entries)


def parse_sot(data: bytes) -> tuple[int, int, int, int]:
    """(Isot, Psot, TPsot, TNsot) of the SOT segment at the start of ``data``."""
    if len(data) < SOT_LENGTH or data[:2] != SOT:
        raise CodestreamError("no SOT marker where a tile-part should start")
    return struct.unpack(">HIBB", data[4:12])


def tiles_in_order(parts: list[Tile], count: int) -> tuple[Tile, ...]:
    """Tiles from every tile-part: one part per tile, each tile present (more tile-parts per
    tile are refused by name)."""
    tiles: dict[int, Tile] = {}
    for part in parts:
        index = part.index
        if index in tiles:
            raise CodestreamError(
                f"tile {index} has more than one tile-part (not supported: one chunk per tile)"
            )
        if index >= count:
            raise CodestreamError(f"tile-part of tile {index}, but the image has {count} tiles")
        tiles[index] = part
    if len(tiles) != count:
        raise CodestreamError(f"{count - len(tiles)} of {count} tiles are missing")
    return tuple(tiles[i] for i in range(count))


class _Reader:
    """Bounded range reads of one file, served from the last read when it holds the range."""

    def __init__(self, read: Callable[[int, int], bytes], size: int) -> None:
        self.read, self.size, self.reads = read, size, 0
        self.start, self.buffer = 0, b""

    def get(self, offset: int, length: int, read_ahead: int) -> bytes:
        end = min(offset + length, self.size)
        if not (self.start <= offset and end <= self.start + len(self.buffer)):
            want = min(max(length, read_ahead), self.size - offset)
            self.buffer, self.start = self.read(offset, want), offset
            self.reads += 1
            if len(self.buffer) < end - offset:
                raise CodestreamError(f"file ends at byte {offset + len(self.buffer)}")
        return self.buffer[offset - self.start : end - self.start]

    def buffered(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes at ``offset`` that the last read holds, without reading."""
        if not self.start <= offset <= self.start + len(self.buffer):
            return b""
        return self.buffer[offset - self.start : offset - self.start + length]


def index_file(read: Callable[[int, int], bytes], size: int, use_tlm: bool = True) -> Jp2Index:
    """Index one JP2 file of ``size`` bytes; ``read(offset, length)`` reads a byte range.
    Without ``use_tlm`` the tile-parts are walked even when a TLM marker lists them."""
    reader = _Reader(read, size)
    head_size, header = min(HEAD_READ, size), None
    while header is None:
        head = reader.get(0, head_size, head_size)
        start = codestream_start(head)
        header = None if start is None else parse_main_header(head, start)
        if header is None:
            if head_size >= size:
                raise CodestreamError(f"file ends at byte {size} inside its headers")
            head_size = min(2 * head_size, size)
    count = header.siz.tile_count
    if header.tlm is not None and use_tlm:
        parts, offset = [], header.end
        for index, length in header.tlm:
            parts.append(Tile(index, offset, length))
            offset += length
        if offset > size:
            raise CodestreamError(f"TLM marker says {offset} bytes, the file has {size}")
        return Jp2Index(header, tiles_in_order(parts, count), reader.reads)
    parts, offset = [], header.end
    while len(parts) < count:
        index, length, _, _ = parse_sot(reader.get(offset, SOT_LENGTH, WALK_READ))
        if length == 0:  # the last tile-part runs to the end of the codestream
            length = size - 2 - offset
        if length < SOT_LENGTH or offset + length > size:
            raise CodestreamError(f"tile-part at byte {offset} runs past the end of the file")
        head = reader.buffered(offset, min(length, TILE_HEADER_PEEK))  # no read of its own
        parts.append(Tile(index, offset, length, TilePartHeader.parse(head)))
        offset += length
    return Jp2Index(header, tiles_in_order(parts, count), reader.reads)


def tile_codestream(template: bytes, tile_part: bytes) -> bytes:
    """A codestream of the one tile in ``tile_part`` (from its SOT marker on), from the main
    header ``template`` (SIZ first): decodable on its own, pixels as in the whole image."""
    index = parse_sot(tile_part)[0]
    siz_length = struct.unpack(">H", template[2:4])[0] + 2
    siz = Siz.parse(template[:siz_length])
    if index >= siz.tile_count:
        raise CodestreamError(f"tile {index} is not in a {siz.tile_count}-tile image")
    renumbered = tile_part[:4] + b"\x00\x00" + tile_part[6:]
    return b"".join(
        (
            SOC,
            siz.single_tile(template[:siz_length], index),
            template[siz_length:],
            renumbered,
            EOC,
        )
    )


def has_tlm(head: bytes) -> bool:
    """Whether a file's ``head`` (through the first SOT marker) has TLM markers."""
    start = codestream_start(head)
    header = None if start is None else parse_main_header(head, start)
    if header is None:
        raise CodestreamError("the file's head ends inside its main header")
    return header.tlm is not None


def tlm_segment(tiles: Sequence[Tile]) -> bytes:
    """A TLM marker segment listing ``tiles`` (2-byte tile indices, 4-byte lengths)."""
    body = b"".join(struct.pack(">HI", tile.index, tile.length) for tile in tiles)
    if len(body) + 4 > 0xFFFF:
        raise CodestreamError(f"{len(tiles)} tiles do not fit one TLM marker segment")
    return struct.pack(">HHBB", TLM, 4 + len(body), 0, 0x60) + body


def with_tlm(head: bytes, tiles: Sequence[Tile]) -> bytes:
    """A file's ``head`` (its bytes up to the first tile-part) with a TLM marker at the end of
    the main header, and the ``jp2c`` box length grown to match: what GDAL needs to read only
    the tiles a window touches."""
    tlm = tlm_segment(tiles)
    if head[:2] == SOC:
        return head + tlm
    box = _jp2c_box(head)
    if box is None:
        raise CodestreamError("no jp2c box in the file's head")
    position, header = box
    if header == 16:
        length = struct.unpack(">Q", head[position + 8 : position + 16])[0]
        patched = (
            struct.pack(">Q", length + len(tlm)) if length else head[position + 8 : position + 16]
        )
        return head[: position + 8] + patched + head[position + 16 :] + tlm
    length = struct.unpack(">I", head[position : position + 4])[0]
    if length and length + len(tlm) > 0xFFFFFFFF:
        raise CodestreamError("the jp2c box would outgrow a 4-byte length")
    patched = struct.pack(">I", length + len(tlm)) if length else head[position : position + 4]
    return head[:position] + patched + head[position + 4 :] + tlm
