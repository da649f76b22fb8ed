"""The synthetic landscape: what each band of each acquisition sees, as L1C digital numbers.

Pure numpy, deterministic for (tile, seed) and the acquisition, and defined in metres from
the tile's corner, so the 10, 20 and 60 m bands of a product see the same landscape and a
test can regenerate any band to compare it with what a file holds.

The model, in TOA reflectance: parcels of forest, fields and bare land with lakes; a
smooth brightness field; the ground's texture; vegetation greening in summer; patchy snow in
winter; clouds on some dates; a no-data wedge where the swath edge crosses the tile (some
orbits); sensor noise. DN = reflectance × 10000 + 1000 (baseline ≥ 04.00 offset), 0 = no data.

The texture is what makes the pixels cost as many bytes as Sentinel-2's: a brightness factor
exp(σ·T) with T a sum of value-noise octaves (random values on 10, 20, 40 … 1280 m lattices,
amplitude growing as spacing^H), part shared by all bands and part each band's own. σ and H
per resolution are calibrated (``calibration.py``) so that 128 px chunks compress within
±10 % of real samples with zstd, lz4, pcodec and JPEG 2000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from sentinel2_l1c.lab.schedule import Acquisition, tile_seed
from sentinel2_l1c.s2.bands import BANDS
from sentinel2_l1c.s2.product import Grid

RADIOMETRIC_OFFSET = 1000
QUANTIFICATION_VALUE = 10000
PARCEL_SIZE = 360  # metres; a multiple of 60 so parcels align across resolutions
NOISE_DN = 12.0
BAND_BITS = 15  # ESA's band files hold 15-bit samples: digital numbers saturate at 32767
EAST_EDGE_ORBIT = 36  # its partial products miss the tile's east side; other orbits the west
LAKE_LEVEL = 0.33  # share of the smooth lake field below this is water
TEXTURE_OCTAVES = 8  # lattices of 10 m … 1280 m
#: Per band resolution: σ of the log brightness factor and H (see the module's docstring).
TEXTURE = {10: (0.32, 0.4), 20: (0.3, 0.5), 60: (0.3, 0.5)}
OWN_TEXTURE = 0.3  # share of a band's texture variance that is its own, not shared

WATER, FOREST, FIELD, BARE = range(4)
_LAND_SHARES = {FOREST: 0.6, FIELD: 0.3, BARE: 0.1}
# TOA reflectance per band (BANDS order) of the surfaces.
_SPECTRA = {
    "water": (0.090, 0.070, 0.050, 0.030, 0.025, 0.020, 0.020, 0.015, 0.015, 0.010, 0.002, 0.010, 0.008),
    "forest_dormant": (0.085, 0.060, 0.050, 0.035, 0.060, 0.110, 0.130, 0.140, 0.150, 0.060, 0.003, 0.100, 0.050),
    "forest_green": (0.090, 0.065, 0.060, 0.040, 0.070, 0.160, 0.200, 0.220, 0.230, 0.080, 0.004, 0.120, 0.060),
    "field_bare": (0.110, 0.100, 0.110, 0.120, 0.140, 0.160, 0.170, 0.180, 0.190, 0.070, 0.005, 0.250, 0.200),
    "field_green": (0.095, 0.070, 0.090, 0.050, 0.120, 0.300, 0.360, 0.380, 0.390, 0.110, 0.005, 0.220, 0.120),
    "bare": (0.120, 0.110, 0.120, 0.130, 0.150, 0.180, 0.200, 0.220, 0.230, 0.080, 0.005, 0.250, 0.200),
    "snow": (0.900, 0.880, 0.860, 0.840, 0.820, 0.800, 0.780, 0.760, 0.740, 0.300, 0.020, 0.100, 0.080),
    "cloud": (0.550, 0.550, 0.550, 0.550, 0.560, 0.570, 0.570, 0.570, 0.570, 0.300, 0.050, 0.350, 0.250),
}  # fmt: skip
# How fully snow covers each surface (trees hide it).
_SNOW_COVER = np.array([1.0, 0.45, 1.0, 0.9], dtype=np.float32)


def greenness(day_of_year: int) -> float:
    """0 in winter, 1 at the height of the boreal summer."""
    return float(np.interp(day_of_year, [0, 130, 175, 230, 285, 366], [0, 0, 1, 1, 0, 0]))


def snow_cover(day_of_year: int) -> float:
    """Share of the land under snow: full in winter, melting in April, back in November."""
    return float(np.interp(day_of_year, [0, 85, 125, 300, 335, 366], [1, 1, 0, 0, 1, 1]))


@dataclass(frozen=True)
class _Waves:
    """A sum of separable sinusoids: a smooth field evaluated at any resolution."""

    wavelengths: np.ndarray  # (terms, 2) metres in y and x
    phases: np.ndarray  # (terms, 2)
    amplitudes: np.ndarray  # (terms,)

    @classmethod
    def draw(cls, rng: np.random.Generator, terms: int, shortest: float, longest: float) -> _Waves:
        return cls(
            wavelengths=rng.uniform(shortest, longest, size=(terms, 2)),
            phases=rng.uniform(0, 2 * math.pi, size=(terms, 2)),
            amplitudes=rng.uniform(0.5, 1.0, size=terms),
        )

    def evaluate(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Values in [0, 1] at the outer product of ``y`` and ``x`` (metres)."""
        field = np.zeros((len(y), len(x)), dtype=np.float32)
        for (wave_y, wave_x), (phase_y, phase_x), amplitude in zip(
            self.wavelengths, self.phases, self.amplitudes, strict=False
        ):
            column = (amplitude * np.sin(2 * math.pi * y / wave_y + phase_y)).astype(np.float32)
            row = np.sin(2 * math.pi * x / wave_x + phase_x).astype(np.float32)
            field += np.multiply.outer(column, row)
        field *= 0.5 / self.amplitudes.sum()
        field += 0.5
        return field


@dataclass(frozen=True)
class _ValueNoise:
    """Octaves of random values on square lattices, interpolated bilinearly: defined in
    metres, so a 20 m pixel centre, halfway between 10 m lattice points, sees their mean."""

    seed: tuple[int, ...]
    extent: float

    def evaluate(self, y: np.ndarray, x: np.ndarray, hurst: float) -> np.ndarray:
        """Zero-mean field of unit variance at 10 m at the outer product of ``y`` and ``x``."""
        field = np.zeros((len(y), len(x)), dtype=np.float32)
        weights = [2.0 ** (octave * hurst) for octave in range(TEXTURE_OCTAVES)]
        for octave, weight in enumerate(weights):
            spacing = 10.0 * 2**octave
            size = math.ceil(self.extent / spacing) + 2
            rng = np.random.default_rng([*self.seed, octave])
            lattice = rng.standard_normal((size, size), dtype=np.float32)
            rows, row_weights = _lattice_position(y, spacing)
            cols, col_weights = _lattice_position(x, spacing)
            along_y = lattice[rows] * (1 - row_weights)[:, None]
            along_y += lattice[rows + 1] * row_weights[:, None]
            layer = along_y[:, cols] * (1 - col_weights)[None, :]
            layer += along_y[:, cols + 1] * col_weights[None, :]
            layer *= weight
            field += layer
        field *= 1 / math.sqrt(sum(w * w for w in weights))
        return field


def _lattice_position(metres: np.ndarray, spacing: float) -> tuple[np.ndarray, np.ndarray]:
    """Index of the lattice point before each coordinate and the weight of the next one
    (point j lies at (j - 0.5) · spacing)."""
    position = metres / spacing + 0.5
    index = np.floor(position).astype(np.intp)
    return index, (position - index).astype(np.float32)


def _coordinates(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in metres down from the top and right from the left edge."""
    size = abs(grid.xdim)
    return (np.arange(grid.nrows) + 0.5) * size, (np.arange(grid.ncols) + 0.5) * size


class Scene:
    """The landscape of one tile; renders bands of acquisitions on any of its grids."""

    def __init__(self, tile: str, seed: int, extent: float) -> None:
        self.tile = tile
        self.seed = seed
        self.extent = extent
        rng = np.random.default_rng(tile_seed(tile, seed))
        self._lakes = _Waves.draw(rng, terms=6, shortest=3000, longest=16000)
        self._brightness = _Waves.draw(rng, terms=4, shortest=2000, longest=30000)
        self._snow_patches = _Waves.draw(rng, terms=5, shortest=1500, longest=9000)
        parcels = math.ceil(extent / PARCEL_SIZE)
        classes = np.array(list(_LAND_SHARES), dtype=np.uint8)
        shares = np.array(list(_LAND_SHARES.values()))
        self._parcel_classes = rng.choice(classes, size=(parcels, parcels), p=shares / shares.sum())
        self._static: dict[Grid, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._textures: dict[tuple[Grid, int], np.ndarray] = {}
        self._dated: dict[
            tuple[int, Grid], tuple[np.ndarray, np.ndarray | None, np.ndarray | None]
        ] = {}

    # -- static layers --------------------------------------------------------------

    def _static_layers(self, grid: Grid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Land-cover class, brightness factor and snow patchiness on ``grid`` (cached)."""
        if grid not in self._static:
            y, x = _coordinates(grid)
            rows = (y // PARCEL_SIZE).astype(np.intp)
            cols = (x // PARCEL_SIZE).astype(np.intp)
            classes = self._parcel_classes[np.ix_(rows, cols)]
            classes[self._lakes.evaluate(y, x) < LAKE_LEVEL] = WATER
            brightness = self._brightness.evaluate(y, x)
            brightness *= 0.3
            brightness += 0.85
            self._static[grid] = (classes, brightness, self._snow_patches.evaluate(y, x))
        return self._static[grid]

    def _texture(self, grid: Grid, component: int) -> np.ndarray:
        """Texture field ``component`` (0 shared, 1 + band index a band's own) on ``grid``."""
        key = (grid, component)
        if key not in self._textures:
            y, x = _coordinates(grid)
            noise = _ValueNoise((tile_seed(self.tile, self.seed), 7, component), self.extent)
            self._textures[key] = noise.evaluate(y, x, TEXTURE[grid.resolution][1])
        return self._textures[key]

    def texture_factor(self, band: str, grid: Grid) -> np.ndarray:
        """The ground's brightness factor exp(σ·T) of ``band`` on ``grid``."""
        sigma = TEXTURE[grid.resolution][0]
        texture = self._texture(grid, 0) * (sigma * math.sqrt(1 - OWN_TEXTURE))
        texture += self._texture(grid, 1 + BANDS.index(band)) * (sigma * math.sqrt(OWN_TEXTURE))
        return np.exp(texture, out=texture)

    # -- layers of one date -----------------------------------------------------------

    def _dated_layers(
        self, acquisition: Acquisition, grid: Grid
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Snow share per pixel, cloud opacity and no-data mask of ``acquisition`` (cached)."""
        key = (acquisition.scene_key, grid)
        if key not in self._dated:
            classes, _, patches = self._static_layers(grid)
            y, x = _coordinates(grid)
            rng = np.random.default_rng([tile_seed(self.tile, self.seed), acquisition.scene_key])
            clouds = _Waves.draw(rng, terms=5, shortest=2000, longest=14000)
            edge_slope = math.tan(math.radians(12))
            east = acquisition.relative_orbit == EAST_EDGE_ORBIT
            edge_share = rng.uniform(0.6, 0.9) if east else rng.uniform(0.1, 0.4)
            day = acquisition.datatake_start.timetuple().tm_yday
            snow = (patches < snow_cover(day)).astype(np.float32) * _SNOW_COVER[classes]
            cloud = None
            if acquisition.cloud_fraction > 0:
                cloud = self._cloud_opacity(clouds, acquisition.cloud_fraction, y, x)
            nodata = None
            if acquisition.partial:
                edge_x = edge_share * self.extent + edge_slope * (y - self.extent / 2)
                nodata = (x[None, :] > edge_x[:, None]) if east else (x[None, :] < edge_x[:, None])
            # Keep only this acquisition's layers (one per grid): bands come product by product.
            self._dated = {k: v for k, v in self._dated.items() if k[0] == key[0]}
            self._dated[key] = (snow, cloud, nodata)
        return self._dated[key]

    def _cloud_opacity(
        self, waves: _Waves, fraction: float, y: np.ndarray, x: np.ndarray
    ) -> np.ndarray:
        # The threshold comes from a coarse sample, so every resolution gets the same clouds.
        coarse = np.arange(0.5, self.extent / 600) * 600
        threshold = np.quantile(waves.evaluate(coarse, coarse), 1 - fraction)
        opacity = waves.evaluate(y, x)
        opacity -= threshold
        opacity *= 1 / 0.04
        return np.clip(opacity, 0, 1, out=opacity)

    # -- bands ------------------------------------------------------------------------

    def reflectance(self, acquisition: Acquisition, band: str, grid: Grid) -> np.ndarray:
        """TOA reflectance of ``band`` on ``grid`` before noise and no-data."""
        index = BANDS.index(band)
        day = acquisition.datatake_start.timetuple().tm_yday
        green = greenness(day)
        spectrum = {name: values[index] for name, values in _SPECTRA.items()}
        by_class = np.zeros(4, dtype=np.float32)
        by_class[WATER] = spectrum["water"]
        by_class[FOREST] = spectrum["forest_dormant"] + green * (
            spectrum["forest_green"] - spectrum["forest_dormant"]
        )
        by_class[FIELD] = spectrum["field_bare"] + green * (
            spectrum["field_green"] - spectrum["field_bare"]
        )
        by_class[BARE] = spectrum["bare"]
        classes, brightness, _ = self._static_layers(grid)
        snow, cloud, _ = self._dated_layers(acquisition, grid)
        value = by_class[classes]
        value *= brightness
        value *= self.texture_factor(band, grid)
        value += snow * (spectrum["snow"] - value)
        if cloud is not None:
            value += cloud * (spectrum["cloud"] - value)
        return value

    def band(self, acquisition: Acquisition, band: str, grid: Grid) -> np.ndarray:
        """Digital numbers (uint16) of ``band`` of ``acquisition`` on ``grid``."""
        value = self.reflectance(acquisition, band, grid)
        value *= QUANTIFICATION_VALUE
        value += RADIOMETRIC_OFFSET
        rng = np.random.default_rng(
            [tile_seed(self.tile, self.seed), acquisition.scene_key, BANDS.index(band)]
        )
        value += rng.standard_normal(value.shape, dtype=np.float32) * NOISE_DN
        np.rint(value, out=value)
        np.clip(value, 1, (1 << BAND_BITS) - 1, out=value)
        digital = value.astype(np.uint16)
        _, _, nodata = self._dated_layers(acquisition, grid)
        if nodata is not None:
            digital[nodata] = 0
        return digital

    def classification(self, acquisition: Acquisition, grid: Grid) -> np.ndarray:
        """MSK_CLASSI layers (opaque clouds, cirrus, snow) as uint8, shape (3, rows, cols)."""
        snow, cloud, nodata = self._dated_layers(acquisition, grid)
        layers = np.zeros((3, grid.nrows, grid.ncols), dtype=np.uint8)
        if cloud is not None:
            layers[0] = cloud > 0.5
            layers[1] = (cloud > 0.05) & (cloud <= 0.5)
        layers[2] = snow > 0.5
        if nodata is not None:
            layers[:, nodata] = 0
        return layers

    def nodata_mask(self, acquisition: Acquisition, grid: Grid) -> np.ndarray | None:
        """True where the product has no data, or None when it covers the whole tile."""
        return self._dated_layers(acquisition, grid)[2]
