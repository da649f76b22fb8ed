"""GDAL reads through a ``/vsisparse/`` file with a spliced TLM: the ranges a window needs, and
nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from sentinel2_l1c.jp2.index import (
    EOC,
    Tile,
    index_file,
    with_tlm,
)
from sentinel2_l1c.loaders.gdal_tlm import TAIL, TileGrid, sparse_description
from tests.helpers import band_paths, reader_of


def test_a_window_fetches_one_range_per_run_of_touched_tiles() -> None:
    """3×3 tiles of 100 bytes after a 50-byte head: a window over tiles 1, 2, 4 and 5 is
    two ranges (tiles 1–2 and 4–5), each with the tail, and the last tile has none."""
    grid = TileGrid(tuple(Tile(i, 50 + 100 * i, 100) for i in range(9)), (10, 20), 3)
    touched = grid.touched(Window(col_off=25, row_off=5, width=30, height=10))
    assert [tile.index for tile in touched] == [1, 2, 4, 5]
    assert grid.fetch_ranges(touched, 8) == [range(150, 358), range(450, 658)]
    assert grid.fetch_ranges(grid.touched(Window(40, 25, 20, 5)), 8) == [range(850, 950)]
    near = [grid.tiles[0], grid.tiles[1]], [grid.tiles[0], grid.tiles[2]]
    assert grid.fetch_ranges(near[0], 8) == [range(50, 258)]
    assert grid.fetch_ranges(near[1], 100) == [range(50, 450)]  # gap within the tail


@pytest.mark.parametrize("tlm", [False, True])
def test_gdal_reads_a_window_from_the_fetched_ranges_only(
    tiled: dict[bool, Path], tmp_path: Path, tlm: bool
) -> None:
    """Through the ``@gdal_tlm`` reader's ``/vsisparse/`` file, with the rest of the tiles in
    a file that does not exist: a window inside one tile, across tiles and at the last tile
    reads what GDAL reads from the band file, so GDAL reads nothing but the fetched ranges
    (one request each)."""
    missing = str(tmp_path / "not-fetched.jp2")
    for number, path in enumerate(band_paths(tiled[tlm])[:13]):
        data = path.read_bytes()
        found = index_file(reader_of(data), len(data))
        siz, first = found.header.siz, found.tiles[0].offset
        grid = TileGrid(found.tiles, (siz.tile_height, siz.tile_width), siz.tiles_across)
        head = data[:first] if tlm else with_tlm(data[:first], found.tiles)
        head_file, opening_file = tmp_path / f"{number}.head", tmp_path / f"{number}.opening"
        head_file.write_bytes(head + EOC)
        opening_file.write_bytes(data[first : first + TAIL])
        height, width = siz.image_shape
        windows = (Window(3, 5, 40, 30), Window(width // 2, height // 3, width // 2, 50),
                   Window(width - 7, height - 9, 7, 9))  # fmt: skip
        for window in windows:
            spans = grid.fetch_ranges(grid.touched(window), TAIL)
            fetched = [(range(first, first + TAIL), str(opening_file))]
            for i, span in enumerate(spans):
                (tmp_path / f"{number}-{i}.bin").write_bytes(data[span.start : span.stop])
                fetched.append((span, str(tmp_path / f"{number}-{i}.bin")))
            description = tmp_path / f"{number}.xml"
            description.write_text(sparse_description(missing, head_file, len(head), grid, fetched))
            with rasterio.open(f"/vsisparse/{description}") as dataset:
                got = dataset.read(window=window)
            with rasterio.open(path) as dataset:
                assert np.array_equal(got, dataset.read(window=window)), (path.name, window)
