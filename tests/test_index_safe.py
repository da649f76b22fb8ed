"""index_safe: appends add only references, a failed manifest write keeps the previous manifest,
bad band files are named, old manifests gain the CRS attributes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow
import pyarrow.parquet
import pytest

from sentinel2_l1c import index_safe
from sentinel2_l1c.jp2.virtual_store import manifest_name
from sentinel2_l1c.s2.listing import list_products
from tests.helpers import YEAR, band_paths, index_root, one_error_line, open_virtual, read_manifest


def test_an_append_adds_only_references(tiled: dict[bool, Path], tmp_path: Path) -> None:
    root, manifests = tmp_path / "safe", tmp_path / "virtual"
    products = list_products(tiled[False], None, None)
    for product in products[:2]:
        shutil.copytree(product.path, root / product.path.relative_to(tiled[False]))
    first = index_root(root, manifests)
    assert (first.manifests_written, first.files_indexed) == (1, 26)
    before = read_manifest(manifests)
    stats = {path: path.stat().st_mtime_ns for path in root.rglob("*") if path.is_file()}
    shutil.copytree(products[2].path, root / products[2].path.relative_to(tiled[False]))
    second = index_root(root, manifests)
    assert (second.files_indexed, second.files_kept) == (13, 26)
    after = read_manifest(manifests)
    assert all(after.references[key] == ref for key, ref in before.references.items())
    added = {key: ref for key, ref in after.references.items() if key not in before.references}
    assert {ref.path.split("/")[6] for ref in added.values()} == {products[2].path.name}
    assert len(added) == len(before.references) // 2
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in stats.items())
    assert index_root(root, manifests).manifests_written == 0  # nothing new: nothing written
    group = open_virtual(manifests, root)
    assert group["35VLH/2024/B02_B03_B04_B08/data"].shape[0] == 3


def test_a_failed_manifest_write_leaves_the_previous_one(
    tiled: dict[bool, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifests = tmp_path / "virtual"
    index_root(tiled[True], manifests)
    target = manifests / manifest_name("35VLH", YEAR[True])
    before = target.read_bytes()

    def killed(table: object, where: object, **options: object) -> None:
        Path(where).write_bytes(b"PAR1 half a manifest")
        raise KeyboardInterrupt

    monkeypatch.setattr(pyarrow.parquet, "write_table", killed)
    with pytest.raises(KeyboardInterrupt):
        index_root(tiled[True], manifests, overwrite=True)
    assert target.read_bytes() == before
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_a_truncated_or_corrupt_band_file_is_one_error_naming_it(
    tiled: dict[bool, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for damage in ("truncated", "corrupt"):
        root = tmp_path / damage
        shutil.copytree(tiled[False], root)
        victim = band_paths(root)[5]
        data = victim.read_bytes()
        if damage == "truncated":
            victim.write_bytes(data[: len(data) // 2])
        else:
            start = data.index(b"\xff\x90")  # the first tile-part header
            victim.write_bytes(data[:start] + b"\x00" * 12 + data[start + 12 :])
        line = one_error_line(
            index_safe.main, ["--source", str(root), "--target", str(tmp_path / "v")], capsys
        )
        assert str(victim) in line and "JPEG 2000" in line, line
        assert not (tmp_path / "v" / manifest_name("35VLH", YEAR[False])).exists()


def test_a_manifest_from_before_the_crs_attributes_is_made_again_without_indexing(
    tiled: dict[bool, Path], tmp_path: Path
) -> None:
    manifests = tmp_path / "virtual"
    index_root(tiled[False], manifests)
    manifest = read_manifest(manifests)
    for key in [k for k in manifest.raw if k.endswith("/data/zarr.json")]:  # as written before
        metadata = json.loads(manifest.raw[key])
        metadata["attributes"] = {k: v for k, v in metadata["attributes"].items() if k != "_CRS"}
        manifest.raw[key] = json.dumps(metadata).encode()
    manifest.write(manifests / manifest_name("35VLH", YEAR[False]))
    again = index_root(tiled[False], manifests)
    assert (again.manifests_written, again.files_indexed) == (1, 0)
    rewritten = read_manifest(manifests)
    assert rewritten.references == manifest.references
    data = open_virtual(manifests, tiled[False])["35VLH/2024/B02_B03_B04_B08/data"]
    assert data.attrs["_CRS"]["projjson"]["id"] == {"authority": "EPSG", "code": 32635}
    assert index_root(tiled[False], manifests).manifests_written == 0
