"""safe: product names, metadata parsed from synthetic products, listing, bad input."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.lab.synthetic import TileGeometry
from sentinel2_l1c.safe import (
    SafeName,
    SafeProduct,
    list_products,
    product_paths,
    resolve_duplicates,
)
from sentinel2_l1c.utils import BANDS

from .conftest import Archive

EXAMPLE = "S2A_MSIL1C_20240221T095031_N0510_R079_T35VLH_20240221T103209.SAFE"
UTC = UTC


class TestSafeName:
    def test_fields(self) -> None:
        name = SafeName.parse(EXAMPLE)
        assert name.mission == "S2A"
        assert name.datatake_start == datetime(2024, 2, 21, 9, 50, 31, tzinfo=UTC)
        assert name.baseline == "05.10" and name.baseline_number == 510
        assert name.relative_orbit == 79
        assert name.tile == "35VLH"
        assert name.generation_time == datetime(2024, 2, 21, 10, 32, 9, tzinfo=UTC)
        assert str(name.cdse_path) == f"Sentinel-2/MSI/L1C/2024/02/21/{EXAMPLE}"

    @pytest.mark.parametrize(
        "bad",
        [
            "S2A_MSIL2A_20240221T095031_N0510_R079_T35VLH_20240221T103209.SAFE",  # L2A
            "S2A_MSIL1C_20240221T095031_N0510_R079_T35VLH_20240221T103209",  # no .SAFE
            "LC08_L1TP_188017_20240221_20240221_02_T1",
            "S2A_MSIL1C_20241321T095031_N0510_R079_T35VLH_20240221T103209.SAFE",  # month 13
        ],
    )
    def test_not_an_l1c_name(self, bad: str) -> None:
        with pytest.raises(InputDataError, match=rf"^{bad}: "):
            SafeName.parse(bad)


def _name(
    mission: str, datatake: str, baseline: str, generation: str, tile: str = "35VLH"
) -> SafeName:
    return SafeName.parse(f"{mission}_MSIL1C_{datatake}_N{baseline}_R079_T{tile}_{generation}.SAFE")


class TestResolveDuplicates:
    def test_highest_baseline_wins_over_later_generation(self) -> None:
        new = _name("S2A", "20240221T095031", "0510", "20240221T103209")
        old_but_later = _name("S2A", "20240221T095031", "0500", "20240301T000000")
        assert resolve_duplicates([old_but_later, new]) == [new]

    def test_then_latest_generation(self) -> None:
        first = _name("S2A", "20240221T095031", "0510", "20240221T103209")
        again = _name("S2A", "20240221T095031", "0510", "20240221T110000")
        assert resolve_duplicates([again, first]) == [again]

    def test_distinct_datatakes_tiles_and_missions_kept_in_time_order(self) -> None:
        later = _name("S2A", "20240223T095031", "0510", "20240223T103209")
        other_tile = _name("S2A", "20240221T095031", "0510", "20240221T103209", tile="35VLG")
        other_mission = _name("S2B", "20240221T095031", "0510", "20240221T103209")
        earlier = _name("S2A", "20240221T095031", "0510", "20240221T103209")
        result = resolve_duplicates([later, other_tile, other_mission, earlier])
        assert result[-1] == later and len(result) == 4


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


class TestListing:
    def test_one_per_datatake_sorted_by_time(self, archive: Archive) -> None:
        products = list_products(archive.root, "35VLH", 2024)
        originals = [a for a in archive.acquisitions if a.baseline == "05.10"]
        kept = {}
        for acquisition in originals:  # among equal baselines the latest generation is kept
            key = acquisition.safe_name.datatake_key
            if key not in kept or acquisition.generation_time > kept[key].generation_time:
                kept[key] = acquisition
        expected = sorted(kept.values(), key=lambda a: a.datatake_start)
        assert [p.name.name for p in products] == [a.safe_name.name for a in expected]
        assert len(products) == len(archive.acquisitions) - archive.options.duplicates
        times = [p.start_time for p in products]
        assert times == sorted(times)

    def test_filters_tile_and_year(self, archive: Archive) -> None:
        assert list_products(archive.root, "35VLG") == []
        assert list_products(archive.root, "35VLH", 2023) == []
        assert len(product_paths(archive.root)) == len(list_products(archive.root, "35VLH", 2024))

    def test_skips_temporary_and_foreign_folders(self, archive: Archive, tmp_path: Path) -> None:
        root = tmp_path / "root"
        source = archive.path_of(archive.acquisitions[0])
        target = root / source.relative_to(archive.root)
        shutil.copytree(source, target)
        (target.parent / f".{target.name}.tmp-0123").mkdir()
        (
            target.parent / "S2A_MSIL2A_20240501T095031_N0510_R079_T35VLH_20240501T103209.SAFE"
        ).mkdir()
        assert [p.path for p in list_products(root)] == [target]

    def test_missing_root(self, tmp_path: Path) -> None:
        with pytest.raises(
            InputDataError,
            match=r"SAFE root .*nowhere does not exist: set DSLAB_S2L1C_NETWORK_SAFE_PATH or run intake",
        ):
            list_products(tmp_path / "nowhere")


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
