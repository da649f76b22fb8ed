"""What a SAFE product's name says (mission, datatake, baseline, orbit, tile, generation),
where CDSE files it, and which of several products of one datatake is kept."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath

from sentinel2_l1c.errors import InputDataError

CDSE_PREFIX = PurePosixPath("Sentinel-2/MSI/L1C")
_NAME_RE = re.compile(
    r"^(?P<mission>S2[A-D])_MSIL1C_(?P<datatake>\d{8}T\d{6})_N(?P<baseline>\d{4})"
    r"_R(?P<orbit>\d{3})_T(?P<tile>\d{2}[A-Z]{3})_(?P<generation>\d{8}T\d{6})\.SAFE$"
)


def _compact_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y%m%dT%H%M%S").replace(tzinfo=UTC)


def parse_utc(text: str) -> datetime:
    """Parse an ISO 8601 UTC time as ESA writes it (``2024-02-21T09:50:31.024Z``)."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def format_utc(value: datetime, digits: int = 3) -> str:
    """Format a UTC time as ESA does, with ``digits`` fractional digits and a ``Z``."""
    text = value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return (text[: len(text) - 6 + digits] if digits else text[:-7]) + "Z"


@dataclass(frozen=True)
class SafeName:
    """The fields encoded in an L1C product name."""

    name: str
    mission: str
    datatake_start: datetime
    baseline: str  # "05.10"
    relative_orbit: int
    tile: str
    generation_time: datetime

    @classmethod
    def parse(cls, name: str) -> SafeName:
        """Parse ``S2A_MSIL1C_20240221T095031_N0510_R079_T35VLH_20240221T103209.SAFE``."""
        match = _NAME_RE.match(name)
        if not match:
            raise InputDataError(
                f"{name}: not a Sentinel-2 L1C SAFE name (expected "
                "S2?_MSIL1C_<datatake start>_N<baseline>_R<orbit>_T<tile>_<generation time>.SAFE)"
            )
        try:
            datatake = _compact_time(match["datatake"])
            generation = _compact_time(match["generation"])
        except ValueError:
            raise InputDataError(f"{name}: invalid date in SAFE name") from None
        digits = match["baseline"]
        return cls(
            name=name,
            mission=match["mission"],
            datatake_start=datatake,
            baseline=f"{digits[:2]}.{digits[2:]}",
            relative_orbit=int(match["orbit"]),
            tile=match["tile"],
            generation_time=generation,
        )

    @property
    def datatake_key(self) -> tuple[str, datetime, str]:
        """Identifies one acquisition of one tile, whatever its processing."""
        return (self.mission, self.datatake_start, self.tile)

    @property
    def baseline_number(self) -> int:
        """Processing baseline as a comparable number (``05.10`` → 510)."""
        return int(self.baseline.replace(".", ""))

    @property
    def cdse_folder(self) -> PurePosixPath:
        """Relative folder of the product in CDSE layout (``Sentinel-2/MSI/L1C/YYYY/MM/DD``)."""
        return CDSE_PREFIX / self.datatake_start.strftime("%Y/%m/%d")

    @property
    def cdse_path(self) -> PurePosixPath:
        """Relative path of the product folder in CDSE layout."""
        return self.cdse_folder / self.name


def resolve_duplicates(names: Iterable[SafeName]) -> list[SafeName]:
    """One product per datatake and tile: highest baseline, then latest generation, by time."""
    best: dict[tuple[str, datetime, str], SafeName] = {}
    for name in names:
        key = name.datatake_key
        current = best.get(key)
        rank = (name.baseline_number, name.generation_time, name.name)
        if current is None or rank > (
            current.baseline_number,
            current.generation_time,
            current.name,
        ):
            best[key] = name
    return sorted(best.values(), key=lambda name: (name.datatake_start, name.mission, name.tile))
