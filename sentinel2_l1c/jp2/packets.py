"""Which leading bytes of a JPEG 2000 tile a window needs, and how such a prefix decodes.

Sentinel-2 tiles hold one quality layer in LRCP order: every packet of the lower resolutions,
then the full resolution's packets, one per 256×256 precinct, row by row. A window therefore
needs the tile's bytes only up to the packet of the last full-resolution precinct it touches
(plus a margin for the wavelet's reach): a window in the upper half of a 10 m tile skips the
lower half's packets. The PLT markers of a tile-part header give every packet's length, so
the index records, per tile, where each full-resolution precinct's packet ends
(``Prefixes``); a reader fetches ``Prefixes.needed(rows, cols)`` bytes in one range request,
and ``completed`` turns that prefix back into a whole tile-part whose missing packets are
empty (one zero byte each), which OpenJPEG decodes like the original inside the window.

Pure functions (bytes in, numbers out); tiles coded otherwise (more layers, another
progression, SOP/EPH markers, coding style in the tile-part header, no PLT) get no
``Prefixes`` and are read whole.
"""

from __future__ import annotations

import bisect
import itertools
import struct
from dataclasses import dataclass

from sentinel2_l1c.jp2.index import PLT, SOD, CodestreamError, Siz, TilePartHeader

COD = 0xFF52
LRCP = 0
#: pixels beyond a window whose full-resolution coefficients its inverse 5/3 wavelet reads
#: (a window ending on a precinct edge needs the next precinct: tested; 2 would do, 8 is safe)
MARGIN = 8


@dataclass(frozen=True)
class CodingStyle:
    """What of a COD marker decides the packet order (from the main header)."""

    levels: int  # decomposition levels: resolutions are 0 … levels
    precincts: tuple[tuple[int, int], ...]  # (width, height) per resolution, 0 first
    simple: bool  # one layer, LRCP, no SOP/EPH markers: the order ``Prefixes`` assumes

    @classmethod
    def find(cls, template: bytes) -> CodingStyle:
        """From a main header's segments (as ``MainHeader.template``)."""
        position = 0
        while position + 4 <= len(template):
            marker, length = struct.unpack(">HH", template[position : position + 4])
            if marker == COD:
                return cls.parse(template[position + 4 : position + 2 + length])
            position += 2 + length
        raise CodestreamError("the main header has no COD marker")

    @classmethod
    def parse(cls, body: bytes) -> CodingStyle:
        """From a COD segment's body (after its length)."""
        if len(body) < 10:
            raise CodestreamError("COD marker segment is cut short")
        scod, progression, levels = body[0], body[1], body[5]
        layers = struct.unpack(">H", body[2:4])[0]
        if scod & 1:
            sizes = body[10 : 10 + levels + 1]
            if len(sizes) < levels + 1:
                raise CodestreamError("COD marker segment is cut short")
            precincts = tuple((1 << (s & 15), 1 << (s >> 4)) for s in sizes)
        else:
            precincts = ((1 << 15, 1 << 15),) * (levels + 1)
        simple = layers == 1 and progression == LRCP and not scod & 0b110
        return cls(levels, precincts, simple)


@dataclass(frozen=True)
class Prefixes:
    """Where the packet of each full-resolution precinct of a tile ends, counted from the
    tile's SOT marker: ``ends`` row by row, precinct rows split at ``row_edges`` and columns
    at ``col_edges`` (tile pixels)."""

    row_edges: tuple[int, ...]
    col_edges: tuple[int, ...]
    ends: tuple[int, ...]

    def needed(self, rows: tuple[int, int], cols: tuple[int, int]) -> int:
        """Bytes from the tile's start that decode the window ``[rows) × [cols)``."""
        last_row = bisect.bisect_right(self.row_edges, rows[1] - 1 + MARGIN)
        last_col = bisect.bisect_right(self.col_edges, cols[1] - 1 + MARGIN)
        return self.ends[last_row * (len(self.col_edges) + 1) + last_col]

    def flat(self) -> list[int]:
        """As one list of integers (a manifest column)."""
        return [
            len(self.row_edges),
            len(self.col_edges),
            *self.row_edges,
            *self.col_edges,
            *self.ends,
        ]

    @classmethod
    def from_flat(cls, values: list[int]) -> Prefixes:
        down, across = values[0], values[1]
        rows, cols = values[2 : 2 + down], values[2 + down : 2 + down + across]
        return cls(tuple(rows), tuple(cols), tuple(values[2 + down + across :]))


def _precinct_span(start: int, stop: int, size: int) -> range:
    """Indices of the precincts of ``size`` that ``[start, stop)`` overlaps (none if empty)."""
    return range(start // size, -(-stop // size)) if stop > start else range(0)


def prefixes(
    siz: Siz, style: CodingStyle, tile: int, header: TilePartHeader, length: int
) -> Prefixes | None:
    """The ``Prefixes`` of tile ``tile`` (``length`` bytes from its SOT), or None when its
    packets are not in the order they assume or the PLT markers do not add up."""
    if not style.simple or header.packets is None or header.others or header.psot != length:
        return None
    if siz.components != 1 or header.length + sum(header.packets) != length:
        return None
    x0, y0, x1, y1 = siz.tile_box(tile)
    counts = []  # packets of each resolution: one per precinct of the tile
    for resolution in range(style.levels + 1):
        scale = 1 << (style.levels - resolution)
        width, height = style.precincts[resolution]
        down = _precinct_span(-(-y0 // scale), -(-y1 // scale), height)
        across = _precinct_span(-(-x0 // scale), -(-x1 // scale), width)
        counts.append(len(down) * len(across))
    if sum(counts) != len(header.packets):
        return None
    first = sum(counts[:-1])  # the full resolution's packets come last
    start = header.length + sum(header.packets[:first])
    ends = tuple(itertools.accumulate(header.packets[first:], initial=start))[1:]
    width, height = style.precincts[-1]
    row_edges = tuple(b - y0 for b in range((y0 // height + 1) * height, y1, height))
    col_edges = tuple(b - x0 for b in range((x0 // width + 1) * width, x1, width))
    return Prefixes(row_edges, col_edges, ends)


def completed(tile_part: bytes) -> bytes:
    """A whole tile-part from a prefix of one that ends at a packet boundary: the missing
    packets empty (a zero byte: no code-block included), PLT markers dropped, Psot set."""
    header = TilePartHeader.parse(tile_part)
    if header is None or len(tile_part) >= header.psot:
        return tile_part
    if header.packets is None:
        raise CodestreamError("a tile-part is cut short and has no PLT marker")
    body, kept, position = len(tile_part) - header.length, [tile_part[:12]], 12
    while position < header.length - 2:
        length = struct.unpack(">H", tile_part[position + 2 : position + 4])[0]
        if struct.unpack(">H", tile_part[position : position + 2])[0] != PLT:
            kept.append(tile_part[position : position + 2 + length])
        position += 2 + length
    count, total = 0, 0
    while count < len(header.packets) and total + header.packets[count] <= body:
        total += header.packets[count]
        count += 1
    if total != body:
        raise CodestreamError(f"a tile-part is cut {body - total} bytes into a packet")
    head = b"".join(kept) + struct.pack(">H", SOD)
    missing = len(header.packets) - count
    psot = len(head) + body + missing
    head = head[:6] + struct.pack(">I", psot) + head[10:]
    return head + tile_part[header.length :] + b"\x00" * missing
