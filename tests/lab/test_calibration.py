"""lab.calibration: the lab's pixels compress like real Sentinel-2 bands (±10 %)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from sentinel2_l1c.lab import calibration

REPOSITORY = Path(__file__).resolve().parents[2]
SAMPLES = Path(os.environ.get("DSLAB_CALIBRATION_SAMPLES", REPOSITORY / "../shared/calibration"))


@pytest.fixture(scope="module")
def samples() -> dict[int, list[np.ndarray]]:
    if not all((SAMPLES / name).is_file() for name in calibration.SAMPLES):
        pytest.skip(
            f"the real calibration samples are not at {SAMPLES.resolve()} "
            "(set DSLAB_CALIBRATION_SAMPLES to their folder)"
        )
    return calibration.sample_bands(SAMPLES)


@pytest.mark.parametrize("resolution", sorted(calibration.LAB_BANDS))
def test_lab_bands_compress_like_the_real_samples(
    samples: dict[int, list[np.ndarray]], resolution: int
) -> None:
    lab = calibration.lab_bands(scale=15, dates=2)
    table = calibration.comparison(samples, lab)[resolution]
    assert set(table) == {"zstd5+bitshuffle", "lz4+bitshuffle", "pcodec", "jpeg2000"}
    off = {
        codec: f"real {real:.2f}, lab {ours:.2f}"
        for codec, (real, ours) in table.items()
        if abs(ours / real - 1) > calibration.TOLERANCE
    }
    assert not off, f"{resolution} m bands outside ±10 %: {off}"


def test_the_measurement_tells_noise_from_smoothness() -> None:
    """The ratios would let an over-compressible lab pass only if they measured nothing."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 1 << 15, size=(256, 256), dtype=np.uint16)
    smooth = np.add.outer(np.arange(256), np.arange(256)).astype(np.uint16) + 1000
    noisy, flat = calibration.ratios([noise]), calibration.ratios([smooth])
    assert all(ratio < 1.15 for ratio in noisy.values()), noisy
    assert all(ratio > 3 for ratio in flat.values()), flat


def test_only_full_chunks_count() -> None:
    image = np.zeros((300, 200), np.uint16)
    assert [chunk.shape for chunk in calibration.chunks(image)] == [(128, 128), (128, 128)]
    with pytest.raises(calibration.ConfigError, match="no full 128 px chunk"):
        calibration.ratios([np.zeros((100, 300), np.uint16)])


def test_lab_bands_are_deterministic_and_differ_by_band() -> None:
    first, second = (
        calibration.lab_bands(scale=30, dates=1),
        calibration.lab_bands(scale=30, dates=1),
    )
    assert all(np.array_equal(a, b) for a, b in zip(first[10], second[10], strict=True))
    b02, b03 = first[10][:2]
    assert not np.array_equal(b02, b03)
    texture = np.corrcoef(np.diff(b02.astype(float), axis=1).ravel(),
                          np.diff(b03.astype(float), axis=1).ravel())[0, 1]  # fmt: skip
    assert 0.4 < texture < 0.95, "bands share most of their texture, not all of it"
