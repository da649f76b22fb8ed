"""The benchmark's plan: the same patches and order for a seed, the first version's zip switch."""

from __future__ import annotations

from sentinel2_l1c.bench.config import BenchmarkConfig, plan_order, plan_patch, with_zip_reader
from tests.helpers import PATCH


def test_same_seed_same_patches_and_order() -> None:
    config = BenchmarkConfig(
        ("network", "temp"),
        ("zarr", "cog"),
        3,
        "35VLH",
        2024,
        (300000, 6800040, 303660, 6796380),
        patch_size=PATCH,
        seed=9,
    )
    again = BenchmarkConfig.from_json(config.to_json())
    for repeat in range(3):
        assert plan_patch(config, repeat) == plan_patch(again, repeat)
        assert plan_order(config, repeat) == plan_order(again, repeat)
        patch = plan_patch(config, repeat)
        assert (patch.x - 300000) % 60 == 0 and (6800040 - patch.y) % 60 == 0
        assert patch.x + PATCH <= 303660 and patch.y - PATCH >= 6796380
    other = BenchmarkConfig.from_json({**config.to_json(), "seed": 10})
    assert [plan_patch(other, r) for r in range(3)] != [plan_patch(config, r) for r in range(3)]


def test_the_first_versions_async_zipfs_switch_names_a_zip_reader() -> None:
    keys = ("zipzarr", "zarr")
    assert with_zip_reader(keys, False) == ("zipzarr@zipstore", "zarr")
    assert with_zip_reader(keys, True) == ("zipzarr@async_zipfs", "zarr")
    assert with_zip_reader(keys, None) == keys
    config = {"storages": ["s3"], "formats": ["zipzarr"], "num_repeats": 2, "tile": "35VLH",
              "year": 2024, "bounds": [0, 9000, 9000, 0]}  # fmt: skip
    old = BenchmarkConfig.from_json({**config, "async_zipfs": False})
    assert old.formats == ("zipzarr@zipstore",)
    assert BenchmarkConfig.from_json(config).formats == ("zipzarr",)
