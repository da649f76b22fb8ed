"""lab.synthetic: real JP2 files, true metadata, realistic pixels, determinism, resumability."""

from __future__ import annotations

import hashlib
import re
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio

from sentinel2_l1c.lab import synthetic
from sentinel2_l1c.lab.scene import Scene
from sentinel2_l1c.lab.schedule import plan_acquisitions
from sentinel2_l1c.lab.synthetic import ProductWriter, SyntheticOptions, TileGeometry
from sentinel2_l1c.lab.tile_grid import tile_origin
from sentinel2_l1c.s2.bands import BANDS, band_resolution
from sentinel2_l1c.s2.product import SafeProduct
from tests.helpers import Archive

SOC, SIZ, SOT, SOD, COD, TLM, PLT = 0xFF4F, 0xFF51, 0xFF90, 0xFF93, 0xFF52, 0xFF55, 0xFF58


def _marker_segments(data: bytes, position: int, stop: int) -> tuple[dict[int, bytes], int]:
    """Marker segments from ``position`` up to marker ``stop``; returns them and its position."""
    segments = {}
    while (marker := int.from_bytes(data[position : position + 2], "big")) != stop:
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        segments[marker] = data[position + 4 : position + 2 + length]
        position += 2 + length
    return segments, position


def codestream(path: Path) -> tuple[dict[int, bytes], dict[int, bytes]]:
    """Marker segments of the main header and of the first tile-part header."""
    data = path.read_bytes()
    start = data.index(b"\xff\x4f\xff\x51")  # SOC then SIZ opens the codestream
    main, position = _marker_segments(data, start + 2, SOT)
    sot_length = int.from_bytes(data[position + 2 : position + 4], "big")
    tile_part, _ = _marker_segments(data, position + 2 + sot_length, SOD)
    return main, tile_part


@pytest.fixture(scope="module")
def large_product(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SyntheticOptions]:
    """One product at scale 5 (2196 px at 10 m) so ESA's JP2 tiling applies, with TLM."""
    options = SyntheticOptions(start=date(2024, 6, 1), end=date(2024, 6, 2), scale=5, tlm=True)
    root = tmp_path_factory.mktemp("large")
    (path,) = synthetic.generate(options, root, show_progress=False)
    return path, options


class TestBandFiles:
    def test_georeferencing_and_type(self, archive: Archive) -> None:
        geometry = TileGeometry.for_tile("35VLH", archive.options.scale)
        product = SafeProduct.from_path(archive.path_of(archive.acquisitions[0]))
        for band, path in product.band_paths.items():
            with rasterio.open(path) as dataset:
                grid = geometry.grids[band_resolution(band)]
                assert dataset.driver == "JP2OpenJPEG"
                assert dataset.crs.to_epsg() == 32635
                assert dataset.transform == grid.transform
                assert (dataset.height, dataset.width) == grid.shape
                assert dataset.dtypes == ("uint16",)
                assert dataset.count == 1

    def test_lossless_against_regenerated_pixels(self, archive: Archive) -> None:
        scene = Scene("35VLH", archive.options.seed, archive.writer.geometry.extent)
        cloudy = next(a for a in archive.acquisitions if a.cloud_fraction > 0)
        partial = next(a for a in archive.acquisitions if a.partial)
        for acquisition in (cloudy, partial):
            product = SafeProduct.from_path(archive.path_of(acquisition))
            for band in BANDS:
                with rasterio.open(product.band_path(band)) as dataset:
                    decoded = dataset.read(1)
                expected = scene.band(acquisition, band, product.grid(band_resolution(band)))
                np.testing.assert_array_equal(
                    decoded, expected, err_msg=f"{acquisition.safe_name.name} {band}"
                )

    def test_esa_jp2_structure(self, large_product: tuple[Path, SyntheticOptions]) -> None:
        product = SafeProduct.from_path(large_product[0])
        expected_blocks = {10: 1024, 20: 640, 60: 192}
        for band in ("B02", "B05", "B01"):
            path = product.band_path(band)
            resolution = band_resolution(band)
            with rasterio.open(path) as dataset:
                assert dataset.block_shapes[0] == (expected_blocks[resolution],) * 2
                assert dataset.width == 10980 // 5 * 10 // resolution
            main, tile_part = codestream(path)
            assert main[SIZ][36] + 1 == 15, "15-bit samples"
            cod = main[COD]
            assert cod[1] == 0, "LRCP progression"
            assert int.from_bytes(cod[2:4], "big") == 1, "one quality layer"
            assert cod[5] + 1 == 5, "5 resolution levels"
            assert (cod[6], cod[7]) == (4, 4), "64×64 code-blocks"
            assert cod[9] == 1, "reversible 5/3 wavelet"
            assert cod[0] & 1 and list(cod[10:]) == [0x88] * 5, "256×256 precincts"
            assert TLM in main, "--tlm writes TLM markers"
            assert PLT in tile_part, "PLT markers in tile-part headers"

    def test_no_tlm_by_default(self, archive: Archive) -> None:
        product = SafeProduct.from_path(archive.path_of(archive.acquisitions[0]))
        main, tile_part = codestream(product.band_path("B02"))
        assert TLM not in main and PLT in tile_part


class TestPixels:
    def test_realistic_digital_numbers(self, archive: Archive) -> None:
        clear = next(a for a in archive.acquisitions if not a.cloud_fraction and not a.partial)
        product = SafeProduct.from_path(archive.path_of(clear))
        with (
            rasterio.open(product.band_path("B04")) as red,
            rasterio.open(product.band_path("B08")) as nir,
        ):
            red_dn, nir_dn = red.read(1), nir.read(1)
        assert red_dn.min() > 1000, "no no-data in a full product; offset 1000 applies"
        assert 1100 < np.median(red_dn) < 3000
        assert np.median(nir_dn) > np.median(red_dn), "summer vegetation is bright in NIR"
        assert red_dn.std() > 50, "not a flat field"

    def test_nodata_only_in_partial_products(self, archive: Archive) -> None:
        for acquisition in archive.acquisitions[:8]:
            product = SafeProduct.from_path(archive.path_of(acquisition))
            with rasterio.open(product.band_path("B03")) as dataset:
                share = float((dataset.read(1) == 0).mean())
            if acquisition.partial:
                assert 0.05 < share < 0.6
            else:
                assert share == 0

    def test_clouds_are_bright(self, archive: Archive) -> None:
        cloudy = max(archive.acquisitions, key=lambda a: a.cloud_fraction)
        product = SafeProduct.from_path(archive.path_of(cloudy))
        with rasterio.open(product.band_path("B02")) as dataset:
            blue = dataset.read(1)
        assert (blue > 5000).mean() > 0.1
        assert product.cloud_cover is not None and product.cloud_cover > 10

    def test_deterministic_for_a_seed(self, archive: Archive) -> None:
        acquisition = archive.acquisitions[2]
        grid = archive.writer.geometry.grids[20]
        first = Scene("35VLH", 7, archive.writer.geometry.extent).band(acquisition, "B11", grid)
        again = Scene("35VLH", 7, archive.writer.geometry.extent).band(acquisition, "B11", grid)
        other = Scene("35VLH", 8, archive.writer.geometry.extent).band(acquisition, "B11", grid)
        np.testing.assert_array_equal(first, again)
        assert not np.array_equal(first, other)
        assert archive.options.acquisitions() == archive.acquisitions

    def test_resolutions_see_the_same_landscape(self, archive: Archive) -> None:
        acquisition = archive.acquisitions[0]
        grids = archive.writer.geometry.grids
        scene = archive.writer.scene
        ten = scene.reflectance(acquisition, "B8A", grids[10])
        sixty = scene.reflectance(acquisition, "B8A", grids[60])
        block_means = ten.reshape(61, 6, 61, 6).mean(axis=(1, 3))
        assert np.corrcoef(block_means.ravel(), sixty.ravel())[0, 1] > 0.9


class TestProductTree:
    def test_esa_folder_tree(self, archive: Archive) -> None:
        acquisition = archive.acquisitions[0]
        path = archive.path_of(acquisition)
        files = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file()}
        granule = f"GRANULE/{acquisition.granule_name}"
        assert 60 <= len(files) <= 75
        assert {"manifest.safe", "MTD_MSIL1C.xml", "INSPIRE.xml", f"{granule}/MTD_TL.xml"} <= files
        for band in [*BANDS, "TCI"]:
            assert f"{granule}/IMG_DATA/{acquisition.band_file_stem}_{band}.jp2" in files
        for band in BANDS:
            assert f"{granule}/QI_DATA/MSK_DETFOO_{band}.jp2" in files
            assert f"{granule}/QI_DATA/MSK_QUALIT_{band}.jp2" in files
        assert f"{granule}/QI_DATA/MSK_CLASSI_B00.jp2" in files
        assert f"DATASTRIP/{acquisition.datastrip_name}/MTD_DS.xml" in files
        assert any(name.startswith("HTML/") for name in files)
        assert any(name.startswith("rep_info/") for name in files)
        assert not any(name.endswith(".aux.xml") for name in files)

    def test_manifest_lists_every_file_with_md5(self, archive: Archive) -> None:
        path = archive.path_of(archive.acquisitions[1])
        manifest = (path / "manifest.safe").read_text()
        entries = re.findall(
            r'size="(\d+)">\s*<fileLocation locatorType="URL" href="\./([^"]+)"/>\s*<checksum checksumName="MD5">(\w+)<',
            manifest,
        )
        files = {
            p.relative_to(path).as_posix(): p
            for p in path.rglob("*")
            if p.is_file() and p.name != "manifest.safe"
        }
        assert {relative for _, relative, _ in entries} == set(files)
        for size, relative, md5 in entries:
            assert int(size) == files[relative].stat().st_size
            assert md5 == hashlib.md5(files[relative].read_bytes()).hexdigest()

    def test_names_are_consistent(self, archive: Archive) -> None:
        for acquisition in archive.acquisitions:
            name = acquisition.safe_name
            assert name.datatake_start == acquisition.datatake_start.replace(microsecond=0)
            assert acquisition.granule_name.startswith("L1C_T35VLH_A")
            assert (
                acquisition.absolute_orbit - 141
            ) % 143 + 1 == acquisition.relative_orbit or acquisition.mission != "S2A"


class TestResumable:
    def test_rerun_skips_complete_products(self, archive: Archive) -> None:
        path = archive.path_of(archive.acquisitions[0])
        before = path.joinpath("manifest.safe").stat().st_mtime_ns
        assert archive.writer.write(archive.acquisitions[0], archive.root) == path
        assert path.joinpath("manifest.safe").stat().st_mtime_ns == before

    def test_crash_leaves_no_product_and_rerun_completes(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        options = SyntheticOptions(start=date(2024, 6, 1), end=date(2024, 6, 2), scale=61)
        writer = ProductWriter(options)
        (acquisition,) = options.acquisitions()
        target = tmp_path / acquisition.safe_name.cdse_path

        def crash(self: ProductWriter, product: Path) -> None:
            raise OSError("disk full")

        monkeypatch.setattr(ProductWriter, "_write_html", crash)
        with pytest.raises(OSError, match="disk full"):
            writer.write(acquisition, tmp_path)
        assert list(target.parent.iterdir()) == []
        monkeypatch.undo()
        stale = target.parent / f".{target.name}.tmp-feedbeef"
        stale.mkdir()
        writer.write(acquisition, tmp_path)
        assert SafeProduct.from_path(target).name == acquisition.safe_name
        assert list(target.parent.iterdir()) == [target]


class TestOptionsAndCli:
    @pytest.mark.parametrize(
        "argv,message",
        [
            (["--scale", "7"], "scale 7 must divide 1830"),
            (["--tile", "35VLX"], "invalid tile id '35VLX'"),
            (
                ["--start", "2024-02-01", "--end", "2024-01-01"],
                "end date 2024-01-01 must be after start date 2024-02-01",
            ),
            (["--cloudy_share", "1.5"], "cloudy_share must be between 0 and 1"),
            (["--interval_days", "0"], "interval_days must be at least 1"),
        ],
    )
    def test_bad_options(
        self, argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
    ) -> None:
        assert synthetic.main([*argv, "--target", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
        assert list(tmp_path.iterdir()) == []

    def test_bad_date_is_an_argparse_error(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as caught:
            synthetic.main(["--start", "2024-13-01"])
        assert caught.value.code == 2
        assert "expected a date YYYY-MM-DD, got '2024-13-01'" in capsys.readouterr().err

    def test_cli_writes_products(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        argv = ["--tile", "34WFA", "--start", "2023-07-01", "--end", "2023-08-01", "--count", "2",
                "--scale", "61", "--quiet", "--target", str(tmp_path)]  # fmt: skip
        assert synthetic.main(argv) == 0
        assert "2 products of tile 34WFA" in capsys.readouterr().out
        products = sorted(tmp_path.glob("Sentinel-2/MSI/L1C/2023/07/*/*.SAFE"))
        assert len(products) == 2
        product = SafeProduct.from_path(products[0])
        origin = tile_origin("34WFA")
        assert product.epsg == origin.epsg == 32634
        assert (product.grid(60).ulx, product.grid(60).uly) == (origin.ulx, origin.uly)
        assert product.grid(10).nrows == 180

    def test_duplicates_reprocess_existing_datatakes(self) -> None:
        acquisitions = plan_acquisitions(
            "35VLH", date(2024, 1, 1), date(2024, 2, 1), duplicates=4, seed=3
        )
        keys = [a.safe_name.datatake_key for a in acquisitions]
        assert len(keys) - len(set(keys)) == 4
        assert {a.baseline for a in acquisitions} == {"05.00", "05.10"}
        assert len({a.safe_name.name for a in acquisitions}) == len(acquisitions)

    def test_count_spreads_dates(self) -> None:
        acquisitions = plan_acquisitions(
            "35VLH", date(2024, 1, 1), date(2025, 1, 1), interval_days=None, count=4
        )
        assert [a.datatake_start.month for a in acquisitions] == [1, 4, 7, 10]


def test_tile_origin_of_35vlh() -> None:
    origin = tile_origin("35VLH")
    assert (origin.epsg, origin.ulx, origin.uly) == (32635, 300000, 6800040)
    assert replace(origin, tile="x").ulx % 60 == 0
