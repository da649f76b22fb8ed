"""Named Zarr layouts (issue 17): every layout converts to the SAFE source's pixels, and what
the layout arithmetic predicts (objects, chunks touched, bytes decompressed) is what the
stores hold and what reading them does."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import zarr
from rasterio.windows import Window
from zarr.abc.store import ByteRequest, RangeByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import LocalStore, WrapperStore

from sentinel2_l1c import (
    convert_safe_to_zarr,
    formats,
)
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions
from sentinel2_l1c.cube import codecs
from sentinel2_l1c.cube import layouts as zarr_layouts
from sentinel2_l1c.cube.layouts import FULL_TILE, JP2_TILE, LAYOUTS, Tiling, ZarrLayout
from sentinel2_l1c.cube.schema import LAYOUT, group_path
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.loaders.base import Catalogue, Patch
from sentinel2_l1c.loaders.zarr_arrays import IdealLoader, ZarrLoader
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.s2.product import read_band
from sentinel2_l1c.storage.places import FolderPlace
from tests.helpers import SMALL, Archive, Converted, one_error_line

EMPTY = 2**64 - 1  # a shard index's offset of an inner chunk never written
SIDES = {10: 366, 20: 183, 60: 61}  # the test archive's tiles


def test_registered_layouts_align_with_esa_jp2_tiles() -> None:
    assert formats.ZARR.layout in LAYOUTS and formats.ZARR_SHARDED.layout in LAYOUTS
    for layout in LAYOUTS.values():
        for resolution in (10, 20, 60):
            tiling = layout.tiling(resolution)
            assert tiling.block % JP2_TILE[resolution] == 0, layout.name
            assert tiling.block % tiling.side == 0, layout.name


def test_bad_layouts_are_refused() -> None:
    with pytest.raises(ConfigError, match="multiple of the chunk side"):
        ZarrLayout("odd", "", (Tiling(20, 512, 1000), Tiling(40, 256, 1280), Tiling(80, 128, 768)))
    with pytest.raises(ConfigError, match="unknown layout 'nope'; choose from first_version"):
        zarr_layouts.get("nope")


def test_objects_of_a_full_size_tile_year() -> None:
    first = LAYOUTS["first_version"]
    metadata = 3 * zarr_layouts.OBJECTS_PER_GROUP + zarr_layouts.OBJECTS_PER_TILE_YEAR
    # 192 dates: 10·22² + 5·22² + 3·15² chunks, or 10·6² + 5·5² + 3·3² shards
    assert zarr_layouts.objects_per_tile_year(first, sharded=False) == 4840 + 2420 + 675 + metadata
    assert zarr_layouts.objects_per_tile_year(first, sharded=True) == 512 + metadata
    small = LAYOUTS["chunks_128"]
    assert zarr_layouts.objects_per_tile_year(small, sharded=True) == 512 + metadata
    assert zarr_layouts.objects_per_tile_year(small, sharded=False) > 90_000
    assert FULL_TILE[10] == 2 * FULL_TILE[20] == 6 * FULL_TILE[60]


@pytest.fixture(scope="module")
def source_pixels(archive: Archive) -> dict[str, np.ndarray]:
    """Every band group's (time, band, y, x) pixels as the SAFE band files hold them."""
    products = list_products(archive.root)
    return {
        group.name: np.stack(
            [np.stack([read_band(p.band_path(b)) for b in group.bands]) for p in products]
        )
        for group in BAND_GROUPS
    }


@pytest.mark.parametrize("name", sorted(LAYOUTS))
def test_every_layout_equals_the_safe_source(
    archive: Archive, source_pixels: dict[str, np.ndarray], tmp_path: Path, name: str
) -> None:
    layout = LAYOUTS[name]
    products = list_products(archive.root)
    fmts = [formats.ZARR, formats.ZARR_SHARDED]
    if layout.codec.images:  # one object per date, band and chunk: shards only
        with pytest.raises(ConfigError, match=f"{layout.codec} codes single images"):
            layout.of(BAND_GROUPS[0], sharded=False)
        fmts = [formats.ZARR_SHARDED]
    for fmt in fmts:
        sharded = fmt.sharded
        target = tmp_path / f"sharded-{sharded}"
        options = ZarrOptions(archive.root, target, fmt, layout=layout)
        convert_safe_to_zarr.convert(options, show_progress=False)
        root = zarr.open_group(str(target), mode="r", zarr_format=3)
        for group in BAND_GROUPS:
            node = root[group_path("35VLH", 2024, group)]
            assert node.attrs[LAYOUT] == name
            data = node["data"]
            assert data.chunks == layout.of(group, sharded).chunks
            assert data.shards == layout.of(group, sharded).shards
            codecs = data.metadata.codecs[0].codecs if sharded else data.metadata.codecs
            written = [c.to_dict() for c in codecs if c.to_dict()["name"] != "bytes"]
            assert [c["name"] for c in written] == list(layout.codec_names)
            coded = written[len(layout.codec.metadata_names) - 1]
            for key, value in layout.codec.params:
                assert coded["configuration"][key] == value, (name, key)
            np.testing.assert_array_equal(data[:], source_pixels[group.name], err_msg=name)
        on_disk = sum(1 for p in target.rglob("*") if p.is_file())
        computed = zarr_layouts.objects_per_tile_year(layout, sharded, len(products), SIDES)
        assert on_disk == computed + zarr_layouts.OBJECTS_PER_STORE


class CountingStore(WrapperStore[LocalStore]):
    """Records the data reads (key and byte range) zarr-python makes."""

    def __init__(self, store: LocalStore) -> None:
        super().__init__(store)
        self.reads: list[tuple[str, ByteRequest | None]] = []

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        if "/data/c/" in key:
            self.reads.append((key, byte_range))
        return await super().get(key, prototype, byte_range)

    async def get_partial_values(self, prototype, key_ranges):  # noqa: ANN001, ANN201
        key_ranges = list(key_ranges)
        self.reads += [(key, request) for key, request in key_ranges if "/data/c/" in key]
        return await super().get_partial_values(prototype, key_ranges)

    async def get_ranges(self, key, byte_ranges, **options):  # noqa: ANN001, ANN003, ANN201
        """Inner chunks of a shard (zarr 3.4+): the ranges asked for, before coalescing."""
        byte_ranges = list(byte_ranges)
        if "/data/c/" in key:
            self.reads += [(key, request) for request in byte_ranges]
        async for group in super().get_ranges(key, byte_ranges, **options):
            yield group


def inner_chunks_read(target: Path, reads: list[tuple[str, ByteRequest | None]]) -> int:
    """Inner chunks within the byte ranges read of each shard (zarr-python coalesces nearby
    ones), found through the shard's index: (offset, length) per inner chunk, then a CRC32C."""
    ranges: dict[str, list[tuple[int, int]]] = {}
    for key, request in reads:
        raw_size = (target / key).stat().st_size
        if request is None:
            ranges.setdefault(key, []).append((0, raw_size))
        elif isinstance(request, RangeByteRequest):
            ranges.setdefault(key, []).append((request.start, request.end))
    count = 0
    for key, spans in ranges.items():
        array = zarr.open_array(str(target), path=key.split("/c/")[0], mode="r")
        inner = math.prod(s // c for s, c in zip(array.shards, array.chunks, strict=True))
        raw = (target / key).read_bytes()
        index = np.frombuffer(raw[-(16 * inner + 4) : -4], "<u8").reshape(inner, 2)
        for offset, length in index:
            if offset != EMPTY and any(a <= offset and offset + length <= b for a, b in spans):
                count += 1
    return count


def test_chunks_touched_and_bytes_decompressed_are_as_computed(converted: Converted) -> None:
    grid = converted.products[0].grid(10)
    patch = Patch(grid.transform.c + 60 * 7, grid.transform.f - 60 * 11, 1800)
    catalogue = Catalogue("35VLH", 2024, tuple(converted.products))
    for sharded, target in ((False, converted.zarr), (True, converted.sharded)):  # SMALL layout
        store = CountingStore(LocalStore(target, read_only=True))
        loader = ZarrLoader(store, catalogue, str(target), "test")
        decompressed = touched = 0
        for group in BAND_GROUPS:
            layout = SMALL.of(group, sharded)
            shape = loader.arrays[group.name].shape
            window = patch.window(*loader.origins[group.name], group.resolution)
            touched += len(zarr_layouts.touched_chunks(shape, layout.chunks, window))
            decompressed += zarr_layouts.patch_bytes(layout, shape, window)[0]
        loader.load(patch)
        read = inner_chunks_read(target, store.reads) if sharded else len(store.reads)
        assert touched > len(BAND_GROUPS) and read == touched
        if not sharded:  # the ideal reference decompresses exactly those chunks
            assert IdealLoader(loader).load(patch)["decompressed_bytes"] == decompressed
        loader.close()


def test_appends_keep_the_layout_and_refuse_another(archive: Archive, tmp_path: Path) -> None:
    products = list_products(archive.root)
    root = tmp_path / "safe"
    for product in products[:6]:
        link = root / product.name.cdse_path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(product.path)
    target = tmp_path / "zarr"
    chosen = LAYOUTS["chunks_256"]
    convert_safe_to_zarr.convert(ZarrOptions(root, target, layout=chosen), False)
    for product in products[6:]:
        link = root / product.name.cdse_path
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(product.path)
    with pytest.raises(InputDataError, match="has layout chunks_256, not first_version"):
        convert_safe_to_zarr.convert(
            ZarrOptions(root, target, layout=LAYOUTS["first_version"]), False
        )
    summary = convert_safe_to_zarr.convert(ZarrOptions(root, target), False)  # its own layout
    assert "layout chunks_256" in summary.lines()[0]
    data = zarr.open_array(str(target), path=f"{group_path('35VLH', 2024, BAND_GROUPS[0])}/data")
    assert data.shape[0] == len(products) and data.chunks == chosen.of(BAND_GROUPS[0], False).chunks
    rebuilt = convert_safe_to_zarr.convert(
        ZarrOptions(root, target, layout=LAYOUTS["first_version"], overwrite=True), False
    )
    assert "layout first_version" in rebuilt.lines()[0]


def test_command_line_layout(
    archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main = convert_safe_to_zarr.main
    line = one_error_line(main, ["--layout", "nope", "--source", str(archive.root)], capsys)
    assert "nope" in line and "first_version" in line
    target = tmp_path / "z"
    code = main(["--format", "zarr_sharded", "--layout", "chunks_128_lz4", "--source",
                 str(archive.root), "--target", str(target), "--quiet"])  # fmt: skip
    assert code == 0 and "layout chunks_128_lz4" in capsys.readouterr().out
    data = zarr.open_array(str(target), path=f"{group_path('35VLH', 2024, BAND_GROUPS[1])}/data")
    assert data.shards is not None and data.chunks[2:] == (64, 64)
    help_text = convert_safe_to_zarr.build_parser().format_help()
    assert all(name in help_text for name in LAYOUTS)


def test_touched_chunks() -> None:
    window = Window(500, 600, 30, 30)  # columns 500-529 cross the 512 chunk border
    assert zarr_layouts.touched_chunks((45, 4, 1098, 1098), (20, 4, 512, 512), window) == [
        (t, 0, 1, x) for t in range(3) for x in (0, 1)
    ]
    assert zarr_layouts.touched_chunks((45, 6, 549, 549), (40, 6, 256, 256), Window(0, 0, 256, 1)) == [
        (0, 0, 0, 0), (1, 0, 0, 0),
    ]  # fmt: skip


@pytest.mark.parametrize("codec", ["pcodec", "htj2k", "delta_zstd5"])
def test_a_reader_refuses_a_codec_it_cannot_decode_in_one_line(
    converted: Converted, tmp_path: Path, codec: str
) -> None:
    """tensorstore decodes none of numcodecs' or imagecodecs' codecs: it refuses the layout
    (naming itself, the layout and the codec), while zarr-python reads the source's pixels."""
    layout = replace(SMALL, name=f"small_{codec}", codec=codecs.get(codec))
    target = tmp_path / "sharded"
    options = ZarrOptions(converted.products[0].path.parents[6], target, formats.ZARR_SHARDED)
    convert_safe_to_zarr.convert(replace(options, layout=layout), False)
    catalogue = Catalogue("35VLH", 2024, tuple(converted.products))
    place = FolderPlace(target)
    with pytest.raises(ConfigError) as refused:
        formats.ZARR_SHARDED.reader("tensorstore").open(place, catalogue, "test")
    message = str(refused.value)
    assert "\n" not in message and message.startswith("the tensorstore reader cannot decode")
    assert f"layout small_{codec}" in message and codecs.get(codec).metadata_names[0] in message
    grid = converted.products[0].grid(10)
    patch = Patch(grid.transform.c + 600, grid.transform.f - 900, 1800)
    loader = formats.ZARR_SHARDED.reader("zarr-python").open(place, catalogue, "test")
    reference = ZarrLoader(LocalStore(converted.sharded, read_only=True), catalogue, "", "test")
    for name, pixels in loader.load(patch).items():
        np.testing.assert_array_equal(pixels, reference.load(patch)[name])
    loader.close()
    reference.close()


def test_a_layout_with_checksums(archive: Archive, converted: Converted, tmp_path: Path) -> None:
    """The same chunks, each followed by its crc32c, which the ideal reference checks."""
    checked_small = replace(SMALL, name="test_small_crc32c", checksum=True)
    target = tmp_path / "zarr"
    convert_safe_to_zarr.convert(ZarrOptions(archive.root, target, layout=checked_small), False)
    grid = converted.products[0].grid(10)
    patch = Patch(grid.transform.c + 60 * 7, grid.transform.f - 60 * 11, 1800)
    catalogue = Catalogue("35VLH", 2024, tuple(converted.products))
    counts = []
    for store in (converted.zarr, target):
        loader = ZarrLoader(LocalStore(store, read_only=True), catalogue, str(store), "test")
        counts.append(IdealLoader(loader).load(patch))
        loader.close()
    assert counts[1]["decompressed_bytes"] == counts[0]["decompressed_bytes"]
    assert counts[1]["compressed_bytes"] == counts[0]["compressed_bytes"] + 4 * counts[0]["chunks"]


def test_layouts_with_checksums_by_name() -> None:
    plain, checked = zarr_layouts.get("chunks_128"), zarr_layouts.get("chunks_128_crc32c")
    assert plain.codec_names == ("blosc",) and checked.codec_names == ("blosc", "crc32c")
    assert checked.tilings == plain.tilings and checked.name == "chunks_128_crc32c"
    assert checked.of(BAND_GROUPS[0], True).checksum and not plain.of(BAND_GROUPS[0], True).checksum
    with pytest.raises(ConfigError, match="unknown layout 'bogus_crc32c'.*_crc32c: with"):
        zarr_layouts.get("bogus_crc32c")
