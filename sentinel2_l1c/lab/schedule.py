"""When synthetic acquisitions happen and what their products are called.

Deterministic for a seed: the same arguments give the same acquisitions, names and times.
Relative orbits cycle as ESA's do over 35VLH (079, 036, 122); the absolute orbit follows from
the date (14.3 orbits a day from a per-satellite reference) and agrees with the relative orbit
modulo 143.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta

import numpy as np

from sentinel2_l1c.s2.names import SafeName

RELATIVE_ORBITS = (79, 36, 122)
# Minutes after midnight UTC when each relative orbit passes over southern Finland.
_PASS_MINUTES = {79: 9 * 60 + 50, 36: 9 * 60 + 40, 122: 10 * 60 + 0}
_ORBITS_PER_DAY = 143 / 10
# Per satellite: a day, its absolute orbit that day, and k in relative = (absolute - k) % 143 + 1.
# S2A's is ESA's (45264 over 35VLH on 2024-02-21, R079); the others are plausible.
_ORBIT_REFERENCE = {
    "S2A": (date(2024, 2, 21), 45264, 141),
    "S2B": (date(2024, 2, 21), 36330, 27),
    "S2C": (date(2024, 9, 5), 1, 60),
}
CURRENT_BASELINE = "05.10"
OLDER_BASELINE = "05.00"
# Orbits whose swath edge crosses the tile: their products have a no-data wedge.
PARTIAL_ORBITS = frozenset({36, 122})


@dataclass(frozen=True)
class Acquisition:
    """One synthetic product: a datatake over the tile, processed once."""

    tile: str
    mission: str
    datatake_start: datetime  # millisecond precision, UTC
    relative_orbit: int
    absolute_orbit: int
    baseline: str
    generation_time: datetime
    cloud_fraction: float  # 0 = clear
    partial: bool  # no-data wedge at the swath edge

    @property
    def sensing_time(self) -> datetime:
        """Tile sensing time: the satellite reaches the tile a few minutes into the datatake."""
        return self.datatake_start + timedelta(minutes=5, seconds=22, milliseconds=439)

    @property
    def safe_name(self) -> SafeName:
        return SafeName.parse(
            f"{self.mission}_MSIL1C_{_compact(self.datatake_start)}_N{self.baseline.replace('.', '')}"
            f"_R{self.relative_orbit:03d}_T{self.tile}_{_compact(self.generation_time)}.SAFE"
        )

    @property
    def granule_name(self) -> str:
        return f"L1C_T{self.tile}_A{self.absolute_orbit:06d}_{_compact(self.sensing_time)}"

    @property
    def band_file_stem(self) -> str:
        return f"T{self.tile}_{_compact(self.datatake_start)}"

    @property
    def datastrip_name(self) -> str:
        return f"DS_2APS_{_compact(self.generation_time)}_S{_compact(self.sensing_time)}"

    @property
    def spacecraft(self) -> str:
        return f"Sentinel-{self.mission[1:]}"

    @property
    def scene_key(self) -> int:
        """Identifies the datatake for the pixel model, so duplicates have the same pixels."""
        return int(self.datatake_start.timestamp() * 1000) % (2**62)


def _compact(value: datetime) -> str:
    return value.strftime("%Y%m%dT%H%M%S")


def tile_seed(tile: str, seed: int) -> int:
    """A stable integer from the tile id and the user's seed (``hash()`` is salted per run)."""
    return (zlib.crc32(tile.encode()) << 20) ^ seed


def acquisition_dates(
    start: date, end: date, interval_days: int | None, count: int | None
) -> list[date]:
    """Dates in [start, end): every ``interval_days``, or ``count`` dates spread evenly."""
    days = (end - start).days
    if days <= 0:
        return []
    if count is not None:
        count = min(count, days)
        offsets = np.linspace(0, days, count, endpoint=False).astype(int)
        return [start + timedelta(days=int(offset)) for offset in offsets]
    step = interval_days or 1
    return [start + timedelta(days=offset) for offset in range(0, days, step)]


def _absolute_orbit(mission: str, day: date, relative_orbit: int) -> int:
    """The absolute orbit near ``day`` whose relative orbit is ``relative_orbit``."""
    reference_day, reference_orbit, k = _ORBIT_REFERENCE[mission]
    estimate = reference_orbit + round((day - reference_day).days * _ORBITS_PER_DAY)
    offset = (relative_orbit - ((estimate - k) % 143 + 1)) % 143
    return estimate + (offset if offset <= 71 else offset - 143)


def plan_acquisitions(
    tile: str,
    start: date,
    end: date,
    *,
    interval_days: int | None = 2,
    count: int | None = None,
    cloudy_share: float = 0.3,
    duplicates: int = 0,
    seed: int = 0,
) -> list[Acquisition]:
    """Acquisitions of ``tile`` between ``start`` and ``end`` (exclusive), sorted by time.

    ``duplicates`` extra products re-process some datatakes: alternately with an older
    baseline (generated a day later, so baseline must outrank generation time), and with the
    same baseline generated again a few minutes earlier. Duplicates keep their datatake's
    pixels; duplicate resolution keeps the original.
    """
    rng = np.random.default_rng(tile_seed(tile, seed))
    acquisitions = []
    for index, day in enumerate(acquisition_dates(start, end, interval_days, count)):
        mission = ("S2A", "S2B")[index % 2] if day.year < 2025 else ("S2B", "S2C")[index % 2]
        orbit = RELATIVE_ORBITS[index % len(RELATIVE_ORBITS)]
        start_time = datetime.combine(day, time(), UTC) + timedelta(
            minutes=_PASS_MINUTES[orbit], milliseconds=int(rng.integers(0, 60_000))
        )
        generation = (start_time + timedelta(minutes=int(rng.integers(30, 90)))).replace(
            microsecond=0
        )
        cloudy = rng.random() < cloudy_share
        acquisitions.append(
            Acquisition(
                tile=tile,
                mission=mission,
                datatake_start=start_time,
                relative_orbit=orbit,
                absolute_orbit=_absolute_orbit(mission, day, orbit),
                baseline=CURRENT_BASELINE,
                generation_time=generation,
                cloud_fraction=float(rng.uniform(0.2, 0.9)) if cloudy else 0.0,
                partial=orbit in PARTIAL_ORBITS,
            )
        )
    return sorted(acquisitions + _duplicates(acquisitions, duplicates, rng), key=_sort_key)


def _duplicates(
    acquisitions: list[Acquisition], count: int, rng: np.random.Generator
) -> list[Acquisition]:
    if count <= 0 or not acquisitions:
        return []
    chosen = rng.choice(len(acquisitions), size=min(count, len(acquisitions)), replace=False)
    extra = []
    for number, index in enumerate(sorted(chosen)):
        original = acquisitions[index]
        if number % 2 == 0:
            older = replace(original, baseline=OLDER_BASELINE)
            extra.append(
                replace(older, generation_time=original.generation_time + timedelta(days=1))
            )
        else:
            extra.append(
                replace(original, generation_time=original.generation_time - timedelta(minutes=7))
            )
    return extra


def _sort_key(acquisition: Acquisition) -> tuple[datetime, str]:
    return (acquisition.datatake_start, acquisition.safe_name.name)
