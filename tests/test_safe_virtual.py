"""The SAFE archive as a virtual Zarr: JP2 indexer, tile codec, manifests, both readers.

On products whose band files have several JP2 tiles (scale 6: 2×2 tiles at every
resolution, edge tiles smaller), with and without TLM markers.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow
import pyarrow.parquet
import pytest
import rasterio
import zarr
from obstore.store import LocalStore
from rasterio.windows import Window
from zarr.abc.store import ByteRequest
from zarr.core.buffer import default_buffer_prototype

from sentinel2_l1c import formats, index_safe, openjpeg, publish_s3, storages
from sentinel2_l1c.benchmark import open_loader
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions, convert
from sentinel2_l1c.formats.safe import band_files
from sentinel2_l1c.formats.safe_virtual import (
    TAIL,
    TileGrid,
    fetch_ranges,
    sparse_description,
)
from sentinel2_l1c.jp2_codec import NAME, Jp2TileCodec
from sentinel2_l1c.jp2_index import (
    EOC,
    CodestreamError,
    Tile,
    TilePartHeader,
    codestream_start,
    index_file,
    parse_main_header,
    tile_codestream,
    tiles_in_order,
    with_tlm,
)
from sentinel2_l1c.jp2_packets import MARGIN, CodingStyle, completed, prefixes
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.lab.synthetic import SyntheticOptions, generate
from sentinel2_l1c.loaders import Catalogue, Patch, ZarrLoader, checksum
from sentinel2_l1c.safe import list_products
from sentinel2_l1c.utils import BAND_GROUPS
from sentinel2_l1c.virtual_zarr import Manifest, Reference, VirtualStore, manifest_name

from .conftest import one_error_line

#: 1830/915/305 px at 10/20/60 m: 2×2 JP2 tiles at each resolution, the last ones smaller.
TILED = SyntheticOptions(
    tile="35VLH", start=date(2024, 5, 1), end=date(2024, 6, 1), count=3, scale=6, seed=3,
    cloudy_share=0.0,
)  # fmt: skip
#: The year of the products without TLM markers (False) and with (True): one SAFE root can
#: hold both.
YEAR = {False: 2024, True: 2025}


@pytest.fixture(scope="module")
def tiled(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """SAFE roots of products without TLM markers (False: three) and with (True: two)."""
    roots = {}
    for tlm in (False, True):
        roots[tlm] = tmp_path_factory.mktemp(f"tiled-tlm-{tlm}")
        start, end = date(YEAR[tlm], 5, 1), date(YEAR[tlm], 6, 1)
        options = replace(TILED, tlm=tlm, count=2 if tlm else 3, start=start, end=end)
        list(generate(options, roots[tlm], show_progress=False))
    return roots


def band_paths(root: Path) -> list[Path]:
    """The band files of every product (not the masks and previews, also JP2)."""
    products = list_products(root, None, None)
    return [root / name for p in products for g in BAND_GROUPS for name in band_files(p, g)]


def index(root: Path, target: Path, **options: object) -> index_safe.IndexSummary:
    return index_safe.index(index_safe.IndexOptions(root, target, **options), False)


def read_manifest(manifests: Path, year: int = YEAR[False]) -> Manifest:
    return Manifest.from_bytes((manifests / manifest_name("35VLH", year)).read_bytes())


def open_virtual(manifests: Path, root: Path, year: int = YEAR[False]) -> zarr.Group:
    manifest = read_manifest(manifests, year)
    return zarr.open_group(VirtualStore(manifest, LocalStore(root)), mode="r", zarr_format=3)


def reader_of(data: bytes) -> Callable[[int, int], bytes]:
    return lambda offset, length: data[offset : offset + length]


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


def test_each_tile_decodes_as_gdal_decodes_the_file(tiled: dict[bool, Path], tmp_path: Path):
    """A date's whole arrays through the codec (every tile, edge tiles too) against GDAL."""
    assert zarr.registry.get_codec_class(NAME) is Jp2TileCodec  # the entry point
    for tlm, root in tiled.items():
        index(root, tmp_path / f"virtual-{tlm}")
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

    index(root, tmp_path / "v")
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


def test_virtual_zarr_and_tlm_reads_equal_the_zarr_format_on_every_storage(
    tiled: dict[bool, Path], local_cdse: LocalCdse, tmp_path: Path
) -> None:
    """Metadata, coordinates and patches crossing tile edges, with and without TLM markers
    in the files, on the network drive and S3."""
    lab = tmp_path / "lab"
    locations = local_cdse.locations(lab_locations(lab))
    suffix = tmp_path.name[-12:].lower().replace("_", "-")
    locations = locations.with_settings(
        {storages.S3.variables(formats.get(name))[0]: f"v-{suffix}-{name.replace('_', '-')}"
         for name in ("safe", "safe_virtual")}
    )  # fmt: skip
    network = storages.NETWORK
    safe_root = network.path(locations, formats.SAFE)
    for root in tiled.values():
        shutil.copytree(root, safe_root, dirs_exist_ok=True)
    convert(ZarrOptions(safe_root, network.path(locations, formats.ZARR)), show_progress=False)
    formats.SAFE_VIRTUAL.convert(safe_root, network.path(locations, formats.SAFE_VIRTUAL), False)
    publish_s3.publish(
        publish_s3.PublishOptions(("safe", "safe_virtual")), locations, lab / "logs", False
    )
    for year in YEAR.values():
        products = tuple(list_products(safe_root, "35VLH", year))
        catalogue = Catalogue("35VLH", year, products)
        reference = open_loader("network", "zarr@zarr-python", locations, catalogue)
        assert isinstance(reference, ZarrLoader)
        left, top = (float(products[0].grid(10).bounds[i]) for i in (0, 3))
        patches = [Patch(left + x, top - y, 2400) for x, y in ((0, 0), (9000, 9000), (15900, 4200))]
        expected = [checksum(reference.load(patch)) for patch in patches]
        virtual = open_loader("network", "safe_virtual", locations, catalogue)
        assert isinstance(virtual, ZarrLoader) and virtual.layout == index_safe.LAYOUT
        for group in BAND_GROUPS:
            got, want = virtual.arrays[group.name], reference.arrays[group.name]
            assert got.shape == want.shape and got.dtype == want.dtype
            for name in ("time", "product_id", "band", "x", "y"):
                node = f"35VLH/{year}/{group.name}/{name}"
                assert np.array_equal(zarr.open_array(virtual.store, path=node)[:],
                                      zarr.open_array(reference.store, path=node)[:])  # fmt: skip
        virtual.close()
        reference.close()
        for storage in ("network", "s3"):
            for key in ("safe_virtual", "safe_virtual@gdal_tlm"):
                loader = open_loader(storage, key, locations, catalogue)
                try:
                    assert [checksum(loader.load(p)) for p in patches] == expected, (year, key)
                finally:
                    loader.close()


def test_a_window_fetches_one_range_per_run_of_touched_tiles() -> None:
    """3×3 tiles of 100 bytes after a 50-byte head: a window over tiles 1, 2, 4 and 5 is
    two ranges (tiles 1–2 and 4–5), each with the tail, and the last tile has none."""
    grid = TileGrid(tuple(Tile(i, 50 + 100 * i, 100) for i in range(9)), (10, 20), 3)
    touched = grid.touched(Window(col_off=25, row_off=5, width=30, height=10))
    assert [tile.index for tile in touched] == [1, 2, 4, 5]
    assert fetch_ranges(grid.tiles, touched, 8) == [range(150, 358), range(450, 658)]
    assert fetch_ranges(grid.tiles, grid.touched(Window(40, 25, 20, 5)), 8) == [range(850, 950)]
    near = [grid.tiles[0], grid.tiles[1]], [grid.tiles[0], grid.tiles[2]]
    assert fetch_ranges(grid.tiles, near[0], 8) == [range(50, 258)]
    assert fetch_ranges(grid.tiles, near[1], 100) == [range(50, 450)]  # gap within the tail


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
            spans = fetch_ranges(found.tiles, grid.touched(window), TAIL)
            fetched = [(range(first, first + TAIL), str(opening_file))]
            for i, span in enumerate(spans):
                (tmp_path / f"{number}-{i}.bin").write_bytes(data[span.start : span.stop])
                fetched.append((span, str(tmp_path / f"{number}-{i}.bin")))
            description = tmp_path / f"{number}.xml"
            description.write_text(
                sparse_description(missing, head_file, len(head), found.tiles, fetched)
            )
            with rasterio.open(f"/vsisparse/{description}") as dataset:
                got = dataset.read(window=window)
            with rasterio.open(path) as dataset:
                assert np.array_equal(got, dataset.read(window=window)), (path.name, window)


def test_an_append_adds_only_references(tiled: dict[bool, Path], tmp_path: Path) -> None:
    root, manifests = tmp_path / "safe", tmp_path / "virtual"
    products = list_products(tiled[False], None, None)
    for product in products[:2]:
        shutil.copytree(product.path, root / product.path.relative_to(tiled[False]))
    first = index(root, manifests)
    assert (first.manifests_written, first.files_indexed) == (1, 26)
    before = read_manifest(manifests)
    stats = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    shutil.copytree(products[2].path, root / products[2].path.relative_to(tiled[False]))
    second = index(root, manifests)
    assert (second.files_indexed, second.files_kept) == (13, 26)
    after = read_manifest(manifests)
    assert all(after.references[key] == ref for key, ref in before.references.items())
    added = {key: ref for key, ref in after.references.items() if key not in before.references}
    assert {ref.path.split("/")[6] for ref in added.values()} == {products[2].path.name}
    assert len(added) == len(before.references) // 2
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in stats.items())
    assert index(root, manifests).manifests_written == 0  # nothing new: nothing written
    group = open_virtual(manifests, root)
    assert group["35VLH/2024/B02_B03_B04_B08/data"].shape[0] == 3


def test_a_failed_manifest_write_leaves_the_previous_one(
    tiled: dict[bool, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = tmp_path / "virtual"
    index(tiled[True], manifests)
    target = manifests / manifest_name("35VLH", YEAR[True])
    before = target.read_bytes()

    def killed(table: object, where: object, **options: object) -> None:
        Path(where).write_bytes(b"PAR1 half a manifest")
        raise KeyboardInterrupt

    monkeypatch.setattr(pyarrow.parquet, "write_table", killed)
    with pytest.raises(KeyboardInterrupt):
        index(tiled[True], manifests, overwrite=True)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_a_truncated_or_corrupt_band_file_is_one_error_naming_it(
    tiled: dict[bool, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for damage in ("truncated", "corrupt"):
        root = tmp_path / damage
        shutil.copytree(tiled[False], root)
        victim = band_paths(root)[5]
        data = victim.read_bytes()
        if damage == "truncated":
            victim.write_bytes(data[: len(data) // 2])
        else:
            start = data.index(b"\xff\x90")  # the first tile-part header
            victim.write_bytes(data[:start] + b"\x00" * 12 + data[start + 12 :])
        line = one_error_line(
            index_safe.main, ["--source", str(root), "--target", str(tmp_path / "v")], capsys
        )
        assert str(victim) in line and "JPEG 2000" in line, line
        assert not (tmp_path / "v" / manifest_name("35VLH", YEAR[False])).exists()


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


def test_the_codec_configuration_round_trips(tiled: dict[bool, Path], tmp_path: Path) -> None:
    index(tiled[False], tmp_path / "v")
    manifest = read_manifest(tmp_path / "v")
    metadata = json.loads(manifest.raw[f"35VLH/{YEAR[False]}/B02_B03_B04_B08/data/zarr.json"])
    codec = Jp2TileCodec.from_dict(metadata["codecs"][0])
    assert codec.to_dict() == metadata["codecs"][0] and codec.header[:2] == b"\xff\x51"


def test_the_manifest_keeps_where_packets_end_and_the_store_fetches_only_those(
    tiled: dict[bool, Path], tmp_path: Path
) -> None:
    """Walked tiles carry ``Prefixes`` through the Parquet manifest; TLM-indexed ones do not
    (their tile-part headers are never read); a manifest from before the column still reads;
    ``get_area`` fetches the prefix an area needs, all of a tile without a table."""
    for tlm, root in tiled.items():
        index(root, tmp_path / f"v{tlm}")
        manifest = read_manifest(tmp_path / f"v{tlm}", YEAR[tlm])
        assert all((r.prefixes is None) == tlm for r in manifest.references.values())
    root, manifest = tiled[False], read_manifest(tmp_path / "vFalse")
    older = manifest.table().drop_columns(["prefixes"])
    sink = pyarrow.BufferOutputStream()
    pyarrow.parquet.write_table(older, sink)
    assert Manifest.from_bytes(sink.getvalue().to_pybytes()).references == {
        key: replace(reference, prefixes=None) for key, reference in manifest.references.items()
    }
    store, prototype = VirtualStore(manifest, LocalStore(root)), default_buffer_prototype()
    key = "35VLH/2024/B02_B03_B04_B08/data/c/0/0/0/0"  # the first date's B02, top left tile
    reference = manifest.references[key]
    assert reference.prefixes is not None and reference.prefixes.row_edges == (256, 512, 768)
    top = asyncio.run(store.get_area(key, prototype, (0, 10), (0, 10)))
    assert len(top) == reference.prefixes.ends[0] < reference.size
    whole = asyncio.run(store.get(key, prototype))
    assert top.to_bytes() == whole.to_bytes()[: len(top)] and len(whole) == reference.size
    bare = VirtualStore(
        Manifest(manifest.raw, {key: replace(reference, prefixes=None)}), store.files
    )
    assert len(asyncio.run(bare.get_area(key, prototype, (0, 10), (0, 10)))) == reference.size

    lengths = []

    class Counting(VirtualStore):
        async def _read(self, reference: Reference, byte_range: ByteRequest | None) -> bytes:
            data = await super()._read(reference, byte_range)
            lengths.append(len(data))
            return data

    group = zarr.open_group(Counting(manifest, LocalStore(root)), mode="r", zarr_format=3)
    corner = group["35VLH/2024/B02_B03_B04_B08/data"][0, 0, :10, :10]  # through zarr's codec
    with rasterio.open(root / reference.path) as dataset:
        assert np.array_equal(corner, dataset.read(1, window=((0, 10), (0, 10))))
    assert lengths == [reference.prefixes.ends[0]], "one read, of the top left precinct's prefix"
