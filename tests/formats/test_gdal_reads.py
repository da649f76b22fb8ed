"""What GDAL (and so QGIS) makes of the Zarr formats, with the GDAL that rasterio bundles:
plain and zipped Zarr open with the SAFE's CRS and geotransform and its pixels; the sharded
Zarr, icechunk, checksums (``NAME_crc32c`` layouts) and the virtual Zarr's JP2 tile codec
fail with GDAL's own message before GDAL 3.13, and the sharded Zarr and checksums open from
3.13 on."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import icechunk
import numpy as np
import pytest
import rasterio
import zarr
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from sentinel2_l1c import convert_safe_to_zarr
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions
from sentinel2_l1c.cube.layouts import WITH_CHECKSUM
from sentinel2_l1c.cube.protocol import new_group
from sentinel2_l1c.cube.schema import group_path
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.s2.product import SafeProduct, read_band
from sentinel2_l1c.storage.places import BucketPlace
from tests.helpers import SMALL, Archive, Converted, index_root, read_manifest

GDAL = tuple(int(part) for part in rasterio.__gdal_version__.split(".")[:2])
WINDOW = Window(col_off=7, row_off=3, width=40, height=25)  # in 60 m pixels, scaled per group


def zarr_path(store: str, band_group: BandGroup) -> str:
    """GDAL's name of a band group's ``data`` array in a Zarr store."""
    return f'ZARR:"{store}":/{group_path("35VLH", 2024, band_group)}/data'


def assert_reads_like_the_safe(path: str, products: list[SafeProduct], group: BandGroup) -> None:
    """One GDAL band per date and band (dates outer), the SAFE's CRS and grid, its pixels."""
    scale = 60 // group.resolution
    window = Window(WINDOW.col_off * scale, WINDOW.row_off * scale, 40 * scale, 25 * scale)
    first = products[0]
    with rasterio.open(first.band_path(group.bands[0])) as band_file:
        expected_transform = band_file.transform
    with rasterio.open(path) as dataset:
        assert dataset.count == len(products) * len(group.bands)
        assert dataset.crs.to_epsg() == int(first.crs.split(":")[1])
        assert dataset.transform.almost_equals(expected_transform)
        for t in (0, len(products) - 1):
            for b, band in enumerate(group.bands):
                number = t * len(group.bands) + b + 1
                tags = dataset.tags(number)
                assert (tags["DIM_time_INDEX"], tags["DIM_band_INDEX"]) == (str(t), str(b))
                got = dataset.read(number, window=window)
                expected = read_band(products[t].band_path(band), window)
                np.testing.assert_array_equal(got, expected, err_msg=f"{path} {t} {band}")


@pytest.mark.parametrize("group", BAND_GROUPS, ids=lambda g: g.name)
def test_plain_zarr_opens_with_the_safe_grid_and_pixels(
    converted: Converted, group: BandGroup
) -> None:
    assert_reads_like_the_safe(zarr_path(str(converted.zarr), group), converted.products, group)


def test_zipped_zarr_opens_through_vsizip(converted: Converted) -> None:
    path = zarr_path(f"/vsizip/{converted.zipped}", BAND_GROUPS[0])
    assert_reads_like_the_safe(path, converted.products, BAND_GROUPS[0])


def test_checksums_need_gdal_3_13(archive: Archive, converted: Converted, tmp_path: Path) -> None:
    layout = replace(SMALL, name=f"{SMALL.name}{WITH_CHECKSUM}", checksum=True)
    options = ZarrOptions(archive.root, tmp_path / "zarr", layout=layout)
    convert_safe_to_zarr.convert(options, show_progress=False)
    path = zarr_path(str(tmp_path / "zarr"), BAND_GROUPS[2])
    if GDAL >= (3, 13):
        assert_reads_like_the_safe(path, converted.products, BAND_GROUPS[2])
        return
    with pytest.raises(RasterioIOError, match=r"^Unsupported codec: crc32c$"):
        rasterio.open(path)


def test_sharded_zarr_needs_gdal_3_13(converted: Converted) -> None:
    path = zarr_path(str(converted.sharded), BAND_GROUPS[1])
    if GDAL >= (3, 13):
        assert_reads_like_the_safe(path, converted.products, BAND_GROUPS[1])
        return
    with pytest.raises(RasterioIOError, match=r"^Unsupported codec: sharding_indexed$"):
        rasterio.open(path)


def test_gdal_reads_neither_icechunk_nor_the_jp2_tile_codec(
    converted: Converted, tiled: dict[bool, Path], tmp_path: Path
) -> None:
    """icechunk keeps its metadata in snapshots and its chunks under ids, not Zarr keys; the
    virtual Zarr's chunks are JP2 tiles that only this package's codec decodes: written out as
    a Zarr hierarchy, its metadata names the codec GDAL lacks."""
    product = converted.products[0]
    repository = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "ic")))
    session = repository.writable_session("main")
    root = zarr.open_group(session.store, mode="a", zarr_format=3)
    group = BAND_GROUPS[2]
    layout = SMALL.of(group, False)
    new_group(root, group_path("35VLH", 2024, group), group, product.grid(60), product.crs, layout)
    session.commit("a group")
    with pytest.raises(
        RasterioIOError, match=r"not recognized as being in a supported file format"
    ):
        rasterio.open(str(tmp_path / "ic"))

    index_root(tiled[False], tmp_path / "virtual")
    manifest = read_manifest(tmp_path / "virtual")
    for key, raw in manifest.raw.items():
        (tmp_path / "hierarchy" / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "hierarchy" / key).write_bytes(raw)
    with pytest.raises(RasterioIOError, match=r"^Unsupported codec: sentinel2_l1c\.jp2_tile$"):
        rasterio.open(zarr_path(str(tmp_path / "hierarchy"), BAND_GROUPS[0]))


@pytest.fixture()
def zarr_on_s3(converted: Converted, local_cdse: LocalCdse, tmp_path: Path) -> BucketPlace:
    """The plain Zarr's objects in a bucket of the lab's S3 storage."""
    client = local_cdse.store.client(local_cdse.storage_user)
    bucket = f"gdal-{tmp_path.name[-20:].lower().replace('_', '-')}"
    client.create_bucket(Bucket=bucket)
    for path in converted.zarr.rglob("*"):
        if path.is_file():
            client.upload_file(str(path), bucket, path.relative_to(converted.zarr).as_posix())
    locations = local_cdse.locations(lab_locations(tmp_path / "lab"))
    return BucketPlace(locations.s3_account, bucket)


def test_plain_zarr_opens_on_s3_through_vsis3(
    zarr_on_s3: BucketPlace, converted: Converted
) -> None:
    """With the S3 account's GDAL settings (a Zarr store's keys have no file extensions)."""
    options = zarr_on_s3.gdal_options()
    del options["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"]
    with rasterio.Env(**options):
        for group in BAND_GROUPS:
            path = zarr_path(f"/vsis3/{zarr_on_s3.bucket}", group)
            assert_reads_like_the_safe(path, converted.products, group)
