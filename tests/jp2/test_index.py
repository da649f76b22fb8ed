"""The JPEG 2000 indexer: tiles found as GDAL's TLM markers list them, headers cut short, bad
markers."""

from __future__ import annotations

from pathlib import Path

import pytest

from sentinel2_l1c.jp2.index import (
    CodestreamError,
    Tile,
    TilePartHeader,
    codestream_start,
    index_file,
    parse_main_header,
    tiles_in_order,
)
from tests.helpers import band_paths, reader_of


def test_the_indexer_finds_the_tiles_the_tlm_markers_of_gdal_list(tiled: dict[bool, Path]):
    for path in band_paths(tiled[True]):
        data = path.read_bytes()
        read = reader_of(data)
        listed, walked = index_file(read, len(data)), index_file(read, len(data), use_tlm=False)
        assert listed.header.tlm is not None and listed.reads == 1
        spans = [[(t.index, t.offset, t.length) for t in i.tiles] for i in (walked, listed)]
        assert spans[0] == spans[1] and len(listed.tiles) == 4
        assert all(t.header is None for t in listed.tiles), "TLM: the tiles are not read"
        assert all(t.header and t.header.packets for t in walked.tiles), "the walk reads PLT"
        assert walked.reads <= len(walked.tiles) + 1
        assert listed.tiles[-1].offset + listed.tiles[-1].length == len(data) - 2  # then EOC
    for path in band_paths(tiled[False])[:13]:
        data = path.read_bytes()
        found = index_file(reader_of(data), len(data))
        assert found.header.tlm is None and [t.index for t in found.tiles] == [0, 1, 2, 3]


def test_headers_cut_short_ask_for_more_and_bad_markers_are_refused(
    tiled: dict[bool, Path],
) -> None:
    data = band_paths(tiled[False])[0].read_bytes()
    start = codestream_start(data)
    assert start is not None
    header = parse_main_header(data, start)
    assert header is not None and header.tlm is None
    assert parse_main_header(data[: header.end - 1], start) is None  # read on, then parse
    after_siz = start + 4 + int.from_bytes(data[start + 4 : start + 6])
    bad = data[:after_siz] + b"\x12\x34" + data[after_siz + 2 :]
    with pytest.raises(CodestreamError, match="bad marker 0x1234 in the main header"):
        parse_main_header(bad, start)
    part = TilePartHeader.parse(data[header.end :])
    assert part is not None and part.packets and not part.others
    assert TilePartHeader.parse(data[header.end : header.end + part.length - 1]) is None
    bad = data[header.end : header.end + 12] + b"\x12\x34" + data[header.end + 14 :]
    with pytest.raises(CodestreamError, match="bad marker 0x1234 in a tile-part header"):
        TilePartHeader.parse(bad)


def test_more_than_one_tile_part_per_tile_is_refused_by_name() -> None:
    with pytest.raises(CodestreamError, match="tile 0 has more than one tile-part"):
        tiles_in_order([Tile(0, 100, 50), Tile(0, 150, 50)], 1)
    with pytest.raises(CodestreamError, match="1 of 2 tiles are missing"):
        tiles_in_order([Tile(1, 100, 50)], 2)
