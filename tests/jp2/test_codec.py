"""The JP2 tile codec: each tile decodes as GDAL decodes the file, partial decodes and prefixes
give the same pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import zarr

from sentinel2_l1c.formats.safe import band_files
from sentinel2_l1c.jp2 import openjpeg
from sentinel2_l1c.jp2.codec import NAME, Jp2TileCodec
from sentinel2_l1c.jp2.index import (
    CodestreamError,
    index_file,
    tile_codestream,
)
from sentinel2_l1c.jp2.packets import MARGIN, CodingStyle, completed, prefixes
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.listing import list_products
from tests.helpers import YEAR, band_paths, index_root, open_virtual, read_manifest, reader_of


def test_each_tile_decodes_as_gdal_decodes_the_file(tiled: dict[bool, Path], tmp_path: Path):
    """A date's whole arrays through the codec (every tile, edge tiles too) against GDAL."""
    assert zarr.registry.get_codec_class(NAME) is Jp2TileCodec  # the entry point
    for tlm, root in tiled.items():
        index_root(root, tmp_path / f"virtual-{tlm}")
        group = open_virtual(tmp_path / f"virtual-{tlm}", root, YEAR[tlm])
        first = list_products(root, None, None)[0]
        for band_group in BAND_GROUPS:
            data = group[f"35VLH/{YEAR[tlm]}/{band_group.name}/data"]
            assert (
                data.chunks[2:]
                == {10: (1024, 1024), 20: (640, 640), 60: (192, 192)}[band_group.resolution]
            )
            for band_index, name in enumerate(band_files(first, band_group)):
                with rasterio.open(root / name) as dataset:
                    expected = dataset.read(1)
                assert np.array_equal(data[0, band_index], expected), name


def test_a_partial_decode_gives_the_pixels_of_the_whole(tiled: dict[bool, Path], tmp_path: Path):
    """OpenJPEG decoding only an area of a tile, alone and through the codec's partial decode
    (slices, steps, single indices, index lists, edge tiles, areas beyond the image)."""
    root = tiled[False]
    path = band_paths(root)[0]  # B02, 10 m: tiles of 1024 px, the last ones 806 px
    data = path.read_bytes()
    found = index_file(reader_of(data), len(data))
    with rasterio.open(path) as dataset:
        whole = dataset.read(1)
    for tile in found.tiles:
        top, left = 1024 * (tile.index // 2), 1024 * (tile.index % 2)
        codestream = tile_codestream(
            found.header.template, data[tile.offset : tile.offset + tile.length]
        )
        for rows, cols in (((0, 1024), (0, 1024)), ((3, 510), (700, 1000)), ((800, 2000), (5, 6))):
            pixels = openjpeg.decode(codestream, rows, cols)
            expected = whole[top + rows[0] : top + rows[1], left + cols[0] : left + cols[1]]
            expected = expected[: 1024 - rows[0], : 1024 - cols[0]]  # within this tile
            assert np.array_equal(pixels, expected), (tile.index, rows, cols)
        assert openjpeg.decode(codestream, (1500, 1600), (0, 10)).size == 0
    with pytest.raises(CodestreamError, match="OpenJPEG could not"):
        openjpeg.decode(codestream[: len(codestream) // 3], (0, 10), (0, 10))

    index_root(root, tmp_path / "v")
    array = open_virtual(tmp_path / "v", root)["35VLH/2024/B02_B03_B04_B08/data"]
    assert np.array_equal(array[0, 0, 1000:1100:7, 5], whole[1000:1100:7, 5])
    assert np.array_equal(array[0, 0, -3:, 1700::9], whole[-3:, 1700::9])
    assert np.array_equal(array.oindex[0, 0, [4, 1500, 1029], 1100:], whole[[4, 1500, 1029], 1100:])
    assert np.array_equal(array.vindex[0, 0, [1, 1800], [1700, 2]], whole[[1, 1800], [1700, 2]])


def test_a_prefix_of_a_tile_decodes_its_area_like_the_whole_tile(tiled: dict[bool, Path]):
    """The leading bytes ``Prefixes`` asks for, completed with empty packets, decode a window
    like the whole tile: windows ending on either side of every precinct edge (± the wavelet
    margin) at 10, 20 and 60 m, edge tiles too; windows high in a 10 m tile need less."""
    root = tiled[False]
    first = list_products(root, None, None)[0]
    saved = {}
    for band_group in BAND_GROUPS:
        data = (root / band_files(first, band_group)[0]).read_bytes()
        found = index_file(reader_of(data), len(data))
        style = CodingStyle.find(found.header.template)
        assert style.simple and style.precincts[-1] == (256, 256)
        for tile in found.tiles:
            part = data[tile.offset : tile.offset + tile.length]
            table = prefixes(found.header.siz, style, tile.index, tile.header, tile.length)
            assert table is not None and table.ends[-1] == tile.length
            x0, y0, x1, y1 = found.header.siz.tile_box(tile.index)
            whole = tile_codestream(found.header.template, part)
            stops = [(y1 - y0, x1 - x0)] + [
                (min(max(edge + shift, 1), y1 - y0), min(max(edge - shift, 1), x1 - x0))
                for edge in (*table.row_edges, *table.col_edges)
                for shift in (-MARGIN, 1 - MARGIN, 0, 1)
            ]
            for bottom, right in stops:
                rows, cols = (max(bottom - 40, 0), bottom), (max(right - 40, 0), right)
                needed = table.needed(rows, cols)
                assert needed <= tile.length
                saved[band_group.resolution] = saved.get(band_group.resolution, 0) + (
                    tile.length - needed
                )
                prefix = tile_codestream(found.header.template, completed(part[:needed]))
                assert np.array_equal(
                    openjpeg.decode(prefix, rows, cols), openjpeg.decode(whole, rows, cols)
                ), (band_group.name, tile.index, rows, cols)
    assert saved[10] > 0 and saved[20] > 0
    with pytest.raises(CodestreamError, match="bytes into a packet"):
        completed(part[: table.ends[0] - 1])


def test_the_codec_configuration_round_trips(tiled: dict[bool, Path], tmp_path: Path) -> None:
    index_root(tiled[False], tmp_path / "v")
    manifest = read_manifest(tmp_path / "v")
    metadata = json.loads(manifest.raw[f"35VLH/{YEAR[False]}/B02_B03_B04_B08/data/zarr.json"])
    codec = Jp2TileCodec.from_dict(metadata["codecs"][0])
    assert codec.to_dict() == metadata["codecs"][0] and codec.header[:2] == b"\xff\x51"
