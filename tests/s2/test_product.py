"""One SAFE product: metadata parsed from synthetic products, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.lab.synthetic import TileGeometry
from sentinel2_l1c.s2.bands import BANDS
from sentinel2_l1c.s2.product import SafeProduct
from tests.helpers import EXAMPLE, Archive


class TestProductFromSynthetic:
    """Parsing gives back exactly what the generator put in."""

    def test_metadata_matches_generator(self, archive: Archive) -> None:
        geometry = TileGeometry.for_tile("35VLH", archive.options.scale)
        for acquisition in archive.acquisitions:
            product = SafeProduct.from_path(archive.path_of(acquisition))
            assert product.tile == "35VLH"
            assert product.start_time == acquisition.datatake_start
            assert product.start_time.microsecond % 1000 == 0
            assert product.sensing_time == acquisition.sensing_time
            assert product.processing_baseline == acquisition.baseline
            assert product.generation_time == acquisition.generation_time
            assert product.spacecraft == acquisition.spacecraft
            assert product.orbit_number == acquisition.relative_orbit
            assert product.orbit_direction == "DESCENDING"
            assert product.crs == "EPSG:32635" and product.epsg == 32635
            assert product.grids == geometry.grids
            assert product.quantification_value == 10000
            assert product.radiometric_offsets == dict.fromkeys(BANDS, -1000)
            assert list(product.band_paths) == list(BANDS)
            assert all(path.is_file() for path in product.band_paths.values())

    def test_grids_read_from_xml(self, archive: Archive) -> None:
        product = SafeProduct.from_path(archive.path_of(archive.acquisitions[0]))
        ten, twenty, sixty = (product.grid(resolution) for resolution in (10, 20, 60))
        assert (ten.nrows, twenty.nrows, sixty.nrows) == (366, 183, 61)
        assert (ten.ulx, ten.uly) == (300000, 6800040)
        assert ten.transform.a == 10 and sixty.transform.e == -60
        assert ten.bounds == sixty.bounds == (300000, 6800040 - 3660, 303660, 6800040)
        np.testing.assert_array_equal(ten.x_centres()[:2], [300005, 300015])
        np.testing.assert_array_equal(sixty.y_centres()[:2], [6800010, 6799950])

    def test_wavelengths_and_time64(self, archive: Archive) -> None:
        acquisition = archive.acquisitions[0]
        product = SafeProduct.from_path(archive.path_of(acquisition))
        assert product.wavelengths["B04"].central == pytest.approx(664.6)
        assert product.wavelengths["B8A"].minimum == 848
        expected = np.datetime64(acquisition.datatake_start.replace(tzinfo=None), "ms")
        assert product.start_time64 == expected
        assert product.product_id == acquisition.safe_name.name.removesuffix(".SAFE")


class TestBadInput:
    """Every broken product gives one clear error naming the file."""

    @pytest.fixture()
    def product(self, archive: Archive, tmp_path: Path) -> Path:
        source = archive.path_of(archive.acquisitions[0])
        return Path(shutil.copytree(source, tmp_path / source.name))

    def test_missing_product_metadata(self, product: Path) -> None:
        (product / "MTD_MSIL1C.xml").unlink()
        with pytest.raises(
            InputDataError, match=rf"^{product}/MTD_MSIL1C.xml: metadata file missing$"
        ):
            SafeProduct.from_path(product)

    def test_corrupt_product_metadata(self, product: Path) -> None:
        path = product / "MTD_MSIL1C.xml"
        path.write_text(path.read_text()[:500])
        with pytest.raises(InputDataError, match=rf"^{path}: corrupt XML \(.*line"):
            SafeProduct.from_path(product)

    def test_missing_element(self, product: Path) -> None:
        path = product / "MTD_MSIL1C.xml"
        text = path.read_text()
        start = text.index("<PRODUCT_START_TIME>")
        end = text.index("</PRODUCT_START_TIME>") + len("</PRODUCT_START_TIME>")
        path.write_text(text[:start] + text[end:])
        with pytest.raises(
            InputDataError, match=rf"^{path}: missing element .*PRODUCT_START_TIME$"
        ):
            SafeProduct.from_path(product)

    def test_bad_time(self, product: Path) -> None:
        path = product / "MTD_MSIL1C.xml"
        text = path.read_text()
        start = text.index("<PRODUCT_START_TIME>") + len("<PRODUCT_START_TIME>")
        path.write_text(text[:start] + "yesterday" + text[text.index("</PRODUCT_START_TIME>") :])
        with pytest.raises(
            InputDataError, match=rf"^{path}: .*PRODUCT_START_TIME is not a UTC time: 'yesterday'$"
        ):
            SafeProduct.from_path(product)

    def test_missing_tile_metadata(self, product: Path) -> None:
        tile_xml = next(product.glob("GRANULE/*/MTD_TL.xml"))
        tile_xml.unlink()
        with pytest.raises(InputDataError, match=rf"^{tile_xml}: metadata file missing$"):
            SafeProduct.from_path(product)

    def test_corrupt_tile_metadata(self, product: Path) -> None:
        tile_xml = next(product.glob("GRANULE/*/MTD_TL.xml"))
        tile_xml.write_bytes(b"\x00\x01 not xml")
        with pytest.raises(InputDataError, match=rf"^{tile_xml}: corrupt XML"):
            SafeProduct.from_path(product)

    def test_tile_metadata_without_a_resolution(self, product: Path) -> None:
        tile_xml = next(product.glob("GRANULE/*/MTD_TL.xml"))
        tile_xml.write_text(
            tile_xml.read_text().replace('<Size resolution="20">', '<Size resolution="25">')
        )
        with pytest.raises(
            InputDataError, match=rf"^{tile_xml}: missing Size or Geoposition for resolution 20$"
        ):
            SafeProduct.from_path(product)

    def test_missing_band_file(self, product: Path) -> None:
        band = next(product.glob("GRANULE/*/IMG_DATA/*_B8A.jp2"))
        band.unlink()
        with pytest.raises(InputDataError, match=rf"^{band}: band file missing$"):
            SafeProduct.from_path(product)

    def test_not_an_l1c_folder(self, product: Path) -> None:
        renamed = product.rename(product.with_name("my_copy.SAFE"))
        with pytest.raises(InputDataError, match=r"^my_copy.SAFE: not a Sentinel-2 L1C SAFE name"):
            SafeProduct.from_path(renamed)

    def test_missing_folder(self, tmp_path: Path) -> None:
        with pytest.raises(InputDataError, match="SAFE product folder not found"):
            SafeProduct.from_path(tmp_path / EXAMPLE)
