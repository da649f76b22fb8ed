"""Where a Sentinel-2 tile lies: its UTM zone and upper-left corner, computed from the MGRS id.

A Sentinel-2 tile is the MGRS 100 km square's upper-left corner snapped outwards to the 60 m
grid, extended to 109.8 km (ESA's 35VLH: EPSG:32635, ULX 300000, ULY 6800040). The lab
uses this to place synthetic tiles; real products are always read from their own XML.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sentinel2_l1c.s2.bands import parse_tile_id

_COLUMN_LETTERS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")  # by (zone - 1) % 3
_ROW_LETTERS = "ABCDEFGHJKLMNPQRSTUV"  # even zones start at F
# Smallest northing (m) of each latitude band (north: N..X, south: C..M, false northing 10^7).
_BAND_MIN_NORTHING = {
    "C": 1_100_000, "D": 2_000_000, "E": 2_800_000, "F": 3_700_000, "G": 4_600_000,
    "H": 5_500_000, "J": 6_400_000, "K": 7_300_000, "L": 8_200_000, "M": 9_100_000,
    "N": 0, "P": 800_000, "Q": 1_700_000, "R": 2_600_000, "S": 3_500_000,
    "T": 4_400_000, "U": 5_300_000, "V": 6_200_000, "W": 7_000_000, "X": 7_900_000,
}  # fmt: skip
SQUARE_SIZE = 100_000
FULL_TILE_SIZE = 109_800  # metres; used only to create synthetic tiles
SNAP = 60


@dataclass(frozen=True)
class TileOrigin:
    tile: str
    epsg: int
    ulx: int
    uly: int


def tile_origin(tile_id: str) -> TileOrigin:
    """UTM EPSG code and upper-left corner of the Sentinel-2 tile ``tile_id``."""
    tile = parse_tile_id(tile_id)
    zone, band, column, row = int(tile[:2]), tile[2], tile[3], tile[4]
    north = band >= "N"
    column_set = _COLUMN_LETTERS[(zone - 1) % 3]
    easting = (column_set.index(column) + 1) * SQUARE_SIZE
    row_index = (_ROW_LETTERS.index(row) - (5 if zone % 2 == 0 else 0)) % len(_ROW_LETTERS)
    northing = row_index * SQUARE_SIZE
    while northing < _BAND_MIN_NORTHING[band]:
        northing += 2_000_000
    ulx = math.floor(easting / SNAP) * SNAP
    uly = math.ceil((northing + SQUARE_SIZE) / SNAP) * SNAP
    return TileOrigin(tile=tile, epsg=(32600 if north else 32700) + zone, ulx=ulx, uly=uly)
