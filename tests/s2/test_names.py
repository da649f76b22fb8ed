"""SAFE product names and the choice among a datatake's products."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.s2.names import SafeName, resolve_duplicates
from tests.helpers import EXAMPLE


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


def _name(
    mission: str, datatake: str, baseline: str, generation: str, tile: str = "35VLH"
) -> SafeName:
    return SafeName.parse(f"{mission}_MSIL1C_{datatake}_N{baseline}_R079_T{tile}_{generation}.SAFE")
