"""zip_zarr: one ZIP_STORED archive that Info-ZIP and xarray read, ZIP64 when needed, reruns,
incomplete stores refused."""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rioxarray  # noqa: F401 - registers .rio
import xarray as xr
import zarr
from zarr.storage import ZipStore

from sentinel2_l1c import zip_zarr
from sentinel2_l1c.cube.protocol import COMPLETE
from sentinel2_l1c.cube.schema import group_path
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.s2.bands import BAND_GROUPS
from tests.helpers import Converted, data_array, tool


class TestZip:
    def test_info_zip_and_rerun(
        self, converted: Converted, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = subprocess.run(
            [tool("unzip", "unzip"), "-tq", str(converted.zipped)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        with zipfile.ZipFile(converted.zipped) as archive:
            assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
            names = archive.namelist()
        assert "zarr.json" in names and not any(name.endswith(".partial") for name in names)
        stamp = converted.zipped.stat().st_mtime_ns
        argv = ["--source", str(converted.zarr), "--target", str(converted.zipped), "--quiet"]
        assert zip_zarr.main(argv) == 0
        assert "up to date" in capsys.readouterr().out
        assert converted.zipped.stat().st_mtime_ns == stamp

    def test_xarray_reads_the_zip(self, converted: Converted) -> None:
        with ZipStore(converted.zipped, mode="r") as store:
            ds = xr.open_zarr(
                store, group=group_path("35VLH", 2024, BAND_GROUPS[2]), consolidated=False
            )
            direct = data_array(str(converted.zarr), BAND_GROUPS[2])
            np.testing.assert_array_equal(ds.data.values, direct[:])

    def test_zip64_when_limits_are_passed(
        self, converted: Converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setattr(zipfile, "ZIP64_LIMIT", 1000)
        monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 10)
        target = tmp_path / "z64.zip"
        zip_zarr.zip_store(converted.zarr, target, show_progress=False)
        monkeypatch.undo()
        data = target.read_bytes()
        assert (
            b"PK\x06\x06" in data[-200:] and b"PK\x06\x07" in data[-200:]
        )  # ZIP64 end record and locator
        unzip = tool("unzip", "unzip")
        assert subprocess.run([unzip, "-tq", str(target)], capture_output=True).returncode == 0
        with ZipStore(target, mode="r") as store:
            np.testing.assert_array_equal(
                data_array(store, BAND_GROUPS[1])[:],
                data_array(str(converted.zarr), BAND_GROUPS[1])[:],
            )

    def test_incomplete_store_is_refused(self, converted: Converted, tmp_path: Path) -> None:
        copy = tmp_path / "zarr"
        shutil.copytree(converted.zarr, copy)
        group = zarr.open_group(str(copy), mode="r+")[group_path("35VLH", 2024, BAND_GROUPS[1])]
        group.attrs[COMPLETE] = False
        with pytest.raises(InputDataError, match="is not complete: rerun convert_safe_to_zarr"):
            zip_zarr.zip_store(copy, tmp_path / "z.zip", show_progress=False)
        assert not (tmp_path / "z.zip").exists()
