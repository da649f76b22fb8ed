"""How band images compress, 128 px chunk by chunk, with the codecs the lab is calibrated on.

Every byte the tool reports (transfers, staging minutes, object sizes, quotas) scales with how
well the pixels compress, so the lab's pixels must compress like Sentinel-2's. ``ratios``
measures images the way the real samples in ``../shared/calibration/`` are measured: each
full 128 px chunk on its own, uncompressed bytes over compressed bytes summed over chunks.
``python -m sentinel2_l1c.lab.calibration`` prints the samples' ratios beside the lab's.

    python -m sentinel2_l1c.lab.calibration --samples ../shared/calibration
"""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from pathlib import Path

import numcodecs
import numpy as np
from numcodecs.pcodec import PCodec
from rasterio.errors import NotGeoreferencedWarning
from rasterio.io import MemoryFile

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.lab.scene import Scene
from sentinel2_l1c.lab.schedule import Acquisition, plan_acquisitions
from sentinel2_l1c.lab.synthetic import TileGeometry, esa_jp2_options
from sentinel2_l1c.run.cli import new_parser, run_cli

CHUNK = 128
DEFAULT_SAMPLES = Path("../shared/calibration")
#: The real samples: file → bands per resolution (band index in the file). Both are on a
#: 10 m grid; the second one's B11 and B12 are 20 m bands, the only 20 m texture there is.
SAMPLES = {
    "real_s2_10m_4x300x300_uint16.npy": {10: (0, 1, 2, 3)},
    "real_s2_6band_6x200x300_uint16.npy": {10: (0, 1, 2, 3), 20: (4, 5)},
}
#: The lab's bands compared with each resolution's samples.
LAB_BANDS = {10: ("B02", "B03", "B04", "B08"), 20: ("B11", "B12")}
TOLERANCE = 0.10  # the lab's ratios must be within ±10 % of the samples'

_ZSTD = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
_LZ4 = numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
_PCODEC = PCodec()


def _jp2_size(chunk: np.ndarray) -> int:
    """Bytes of ``chunk`` as a lossless JPEG 2000 codestream with ESA's parameters."""
    height, width = chunk.shape
    options = esa_jp2_options(height, width, chunk.dtype, block=1024)
    options.update(GMLJP2="NO", CODEC="J2K")  # the codestream only, no boxes
    with warnings.catch_warnings(), MemoryFile() as memory:
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with memory.open(
            driver="JP2OpenJPEG", width=width, height=height, count=1, dtype=chunk.dtype,
            **options,
        ) as dataset:  # fmt: skip
            dataset.write(chunk, 1)
        return len(memory.read())


#: Codec name → compressed bytes of one chunk.
CODECS: dict[str, Callable[[np.ndarray], int]] = {
    "zstd5+bitshuffle": lambda chunk: len(_ZSTD.encode(chunk)),
    "lz4+bitshuffle": lambda chunk: len(_LZ4.encode(chunk)),
    "pcodec": lambda chunk: len(_PCODEC.encode(chunk)),
    "jpeg2000": _jp2_size,
}


def chunks(image: np.ndarray, size: int = CHUNK) -> Iterator[np.ndarray]:
    """The full ``size``² chunks of a 2-D image (partial edge chunks left out)."""
    rows, cols = image.shape
    for top in range(0, rows - size + 1, size):
        for left in range(0, cols - size + 1, size):
            yield np.ascontiguousarray(image[top : top + size, left : left + size])


def ratios(images: Iterable[np.ndarray], codecs: Iterable[str] = tuple(CODECS)) -> dict[str, float]:
    """Compression ratio per codec over every full chunk of ``images``."""
    pieces = [chunk for image in images for chunk in chunks(image)]
    if not pieces:
        raise ConfigError(f"no full {CHUNK} px chunk in the images")
    raw = sum(piece.nbytes for piece in pieces)
    return {name: raw / sum(CODECS[name](piece) for piece in pieces) for name in codecs}


def sample_bands(folder: Path) -> dict[int, list[np.ndarray]]:
    """The real samples' bands per resolution."""
    bands: dict[int, list[np.ndarray]] = {}
    for name, layout in SAMPLES.items():
        path = Path(folder) / name
        if not path.is_file():
            raise ConfigError(f"calibration sample {path} not found (see --samples)")
        stack = np.load(path)
        for resolution, indexes in layout.items():
            bands.setdefault(resolution, []).extend(stack[i] for i in indexes)
    return bands


def clear_summer_acquisitions(tile: str, seed: int, count: int) -> list[Acquisition]:
    """``count`` cloud-free, full-coverage acquisitions of June–August: like the samples."""
    planned = plan_acquisitions(
        tile, date(2024, 6, 1), date(2024, 9, 1), interval_days=1, cloudy_share=0.3, seed=seed
    )
    clear = [a for a in planned if not a.cloud_fraction and not a.partial]
    return clear[:: max(1, len(clear) // count)][:count]


def lab_bands(
    tile: str = "35VLH", scale: int = 15, seed: int = 0, dates: int = 2
) -> dict[int, list[np.ndarray]]:
    """The lab's bands of ``LAB_BANDS`` per resolution on clear summer dates."""
    geometry = TileGeometry.for_tile(tile, scale)
    scene = Scene(tile, seed, geometry.extent)
    bands: dict[int, list[np.ndarray]] = {}
    for acquisition in clear_summer_acquisitions(tile, seed, dates):
        for resolution, names in LAB_BANDS.items():
            grid = geometry.grids[resolution]
            bands.setdefault(resolution, []).extend(
                scene.band(acquisition, name, grid) for name in names
            )
    return bands


def comparison(
    samples: dict[int, list[np.ndarray]], lab: dict[int, list[np.ndarray]]
) -> dict[int, dict[str, tuple[float, float]]]:
    """Per resolution and codec: (the samples' ratio, the lab's ratio)."""
    table = {}
    for resolution in LAB_BANDS:
        real, ours = ratios(samples[resolution]), ratios(lab[resolution])
        table[resolution] = {codec: (real[codec], ours[codec]) for codec in CODECS}
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Compare how the lab's synthetic bands and real Sentinel-2 samples compress "
        f"({CHUNK} px chunks, one at a time).",
        prog="python -m sentinel2_l1c.lab.calibration",
    )
    parser.add_argument(
        "--samples", type=Path, default=DEFAULT_SAMPLES,
        help=f"Folder of the real samples (default: {DEFAULT_SAMPLES}).",
    )  # fmt: skip
    parser.add_argument("--tile", default="35VLH", help="MGRS tile of the lab's scene.")
    parser.add_argument("--scale", type=int, default=15, help="The lab's --scale.")
    parser.add_argument("--seed", type=int, default=0, help="The lab's --seed.")
    parser.add_argument("--dates", type=int, default=2, help="Clear summer dates to render.")
    return parser


def _run(args: argparse.Namespace) -> int:
    table = comparison(
        sample_bands(args.samples), lab_bands(args.tile, args.scale, args.seed, args.dates)
    )
    print(f"{'resolution':>10} {'codec':<18} {'real':>6} {'lab':>6} {'lab/real':>8}")
    off = 0
    for resolution, row in table.items():
        for codec, (real, ours) in row.items():
            inside = abs(ours / real - 1) <= TOLERANCE
            off += not inside
            mark = "" if inside else "  outside ±10 %"
            print(f"{resolution:>8} m {codec:<18} {real:6.2f} {ours:6.2f} {ours / real:8.2f}{mark}")
    return 1 if off else 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
