"""Listing products under a SAFE root: one per datatake, by time, tile and year, foreign folders
skipped."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.s2.listing import list_products, product_paths
from tests.helpers import Archive


class TestListing:
    def test_one_per_datatake_sorted_by_time(self, archive: Archive) -> None:
        products = list_products(archive.root, "35VLH", 2024)
        originals = [a for a in archive.acquisitions if a.baseline == "05.10"]
        kept = {}
        for acquisition in originals:  # among equal baselines the latest generation is kept
            key = acquisition.safe_name.datatake_key
            if key not in kept or acquisition.generation_time > kept[key].generation_time:
                kept[key] = acquisition
        expected = sorted(kept.values(), key=lambda a: a.datatake_start)
        assert [p.name.name for p in products] == [a.safe_name.name for a in expected]
        assert len(products) == len(archive.acquisitions) - archive.options.duplicates
        times = [p.start_time for p in products]
        assert times == sorted(times)

    def test_filters_tile_and_year(self, archive: Archive) -> None:
        assert list_products(archive.root, "35VLG") == []
        assert list_products(archive.root, "35VLH", 2023) == []
        assert len(product_paths(archive.root)) == len(list_products(archive.root, "35VLH", 2024))

    def test_skips_temporary_and_foreign_folders(self, archive: Archive, tmp_path: Path) -> None:
        root = tmp_path / "root"
        source = archive.path_of(archive.acquisitions[0])
        target = root / source.relative_to(archive.root)
        shutil.copytree(source, target)
        (target.parent / f".{target.name}.tmp-0123").mkdir()
        (
            target.parent / "S2A_MSIL2A_20240501T095031_N0510_R079_T35VLH_20240501T103209.SAFE"
        ).mkdir()
        assert [p.path for p in list_products(root)] == [target]

    def test_missing_root(self, tmp_path: Path) -> None:
        with pytest.raises(
            InputDataError,
            match=r"SAFE root .*nowhere does not exist: set DSLAB_S2L1C_NETWORK_SAFE_PATH or run intake",
        ):
            list_products(tmp_path / "nowhere")
