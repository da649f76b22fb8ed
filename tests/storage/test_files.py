"""Atomic local outputs: complete or absent, never half-written."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sentinel2_l1c.storage import files


class TestAtomicOutput:
    def test_file_lands_complete(self, tmp_path: Path) -> None:
        target = tmp_path / "sub" / "result.json"
        files.atomic_write_text(target, "{}")
        assert target.read_text() == "{}"
        assert os.listdir(target.parent) == ["result.json"]

    def test_failure_leaves_nothing(self, tmp_path: Path) -> None:
        target = tmp_path / "product.SAFE"
        with pytest.raises(RuntimeError):
            with files.atomic_output(target) as temp:
                temp.mkdir()
                (temp / "half.jp2").write_bytes(b"x")
                raise RuntimeError("crash")
        assert list(tmp_path.iterdir()) == []

    def test_replaces_existing_file(self, tmp_path: Path) -> None:
        target = tmp_path / "a.txt"
        target.write_text("old")
        files.atomic_write_text(target, "new")
        assert target.read_text() == "new"

    def test_temp_name_never_looks_finished(self, tmp_path: Path) -> None:
        temp = files.temp_sibling(tmp_path / "x.SAFE")
        assert temp.parent == tmp_path and temp.name.startswith(".x.SAFE.tmp-")
        assert not temp.name.endswith(".SAFE")
