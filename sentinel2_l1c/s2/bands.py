"""Sentinel-2's bands, their resolutions, the band groups stored together, and tile ids.

Band groups are the unit of every format (one Zarr array, one COG, one results entry); how a
group is chunked is a named layout's business (``cube.layouts``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sentinel2_l1c.errors import ConfigError

#: All 13 bands in ESA's order; ``bandId`` in the product metadata is the index here.
BANDS: tuple[str, ...] = (
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
)  # fmt: skip


RESOLUTIONS: tuple[int, ...] = (10, 20, 60)


@dataclass(frozen=True)
class BandGroup:
    """Bands stored together: one Zarr array, one COG, one entry in the benchmark results."""

    bands: tuple[str, ...]
    resolution: int

    @property
    def name(self) -> str:
        return "_".join(self.bands)

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"{self.name}: unknown resolution {self.resolution}")


#: How they are chunked is a named layout's business (``cube.layouts``).
BAND_GROUPS: tuple[BandGroup, ...] = (
    BandGroup(("B02", "B03", "B04", "B08"), 10),
    BandGroup(("B05", "B06", "B07", "B8A", "B11", "B12"), 20),
    BandGroup(("B01", "B09", "B10"), 60),
)


BAND_GROUP_NAMES: tuple[str, ...] = tuple(group.name for group in BAND_GROUPS)


def band_group(name: str) -> BandGroup:
    """The band group called ``name`` (e.g. ``B02_B03_B04_B08``)."""
    for group in BAND_GROUPS:
        if group.name == name:
            return group
    raise ConfigError(f"unknown band group {name!r}; choose from {', '.join(BAND_GROUP_NAMES)}")


def band_resolution(band: str) -> int:
    """Native resolution in metres of ``band``."""
    for group in BAND_GROUPS:
        if band in group.bands:
            return group.resolution
    raise ConfigError(f"unknown band {band!r}; choose from {', '.join(BANDS)}")


# MGRS: 2-digit UTM zone, latitude band (C..X without I, O), 100 km square (no I, O).
_TILE_RE = re.compile(r"^(0[1-9]|[1-5][0-9]|60)[C-HJ-NP-X][A-HJ-NP-Z][A-HJ-NP-V]$")


def parse_tile_id(text: str) -> str:
    """Validate an MGRS tile id such as ``35VLH`` (a leading ``T`` is accepted and dropped)."""
    tile = text.strip().upper().removeprefix("T")
    if not _TILE_RE.match(tile):
        raise ConfigError(
            f"invalid tile id {text!r}: expected an MGRS tile such as 35VLH "
            "(UTM zone 01-60, latitude band C-X, 100 km square letters)"
        )
    return tile
