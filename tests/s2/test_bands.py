"""Bands, band groups and tile ids."""

from __future__ import annotations

import pytest

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.s2 import bands


class TestBandGroups:
    def test_every_band_in_exactly_one_group(self) -> None:
        grouped = [band for group in bands.BAND_GROUPS for band in group.bands]
        assert sorted(grouped) == sorted(bands.BANDS)
        assert len(grouped) == 13

    def test_names_and_resolutions(self) -> None:
        assert bands.BAND_GROUP_NAMES == (
            "B02_B03_B04_B08",
            "B05_B06_B07_B8A_B11_B12",
            "B01_B09_B10",
        )
        resolutions = [group.resolution for group in bands.BAND_GROUPS]
        assert resolutions == [10, 20, 60]

    def test_lookups(self) -> None:
        assert bands.band_group("B01_B09_B10").resolution == 60
        assert bands.band_resolution("B8A") == 20
        with pytest.raises(ConfigError, match="unknown band group 'B99'"):
            bands.band_group("B99")
        with pytest.raises(ConfigError, match="unknown band 'B13'"):
            bands.band_resolution("B13")

    def test_unknown_resolution(self) -> None:
        with pytest.raises(ValueError, match="unknown resolution"):
            bands.BandGroup(("B02", "B03"), 30)


class TestTileId:
    @pytest.mark.parametrize("text", ["35VLH", "t35vlh", " T35VLH ", "01CAA", "60XVV"])
    def test_valid(self, text: str) -> None:
        assert bands.parse_tile_id(text) == text.strip().upper().removeprefix("T")

    @pytest.mark.parametrize("text", ["35VL", "61VLH", "00VLH", "35ILH", "35VLW", "35V LH", ""])
    def test_invalid(self, text: str) -> None:
        with pytest.raises(
            ConfigError, match=r"invalid tile id .*expected an MGRS tile such as 35VLH"
        ):
            bands.parse_tile_id(text)
