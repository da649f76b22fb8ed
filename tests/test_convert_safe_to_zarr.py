"""convert_safe_to_zarr (and the COG beside it): identical pixels in every format, chunks
written once, append, resume, crash points, bad input, Dask engines."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rioxarray  # noqa: F401 - registers .rio
import xarray as xr
import zarr
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate
from zarr.storage import LocalStore, ZipStore

from sentinel2_l1c import convert_safe_to_cog, convert_safe_to_zarr, formats, zip_zarr
from sentinel2_l1c.convert_safe_to_cog import CogOptions
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions
from sentinel2_l1c.cube import layouts as zarr_layouts  # fmt: skip
from sentinel2_l1c.cube.protocol import COMPLETE, DONE, blocks, is_complete
from sentinel2_l1c.cube.schema import LAYOUT, crs_attributes, group_path, listing_groups
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.formats.cog import cog_file
from sentinel2_l1c.run import dask_engine
from sentinel2_l1c.run.dask_engine import DaskEngine
from sentinel2_l1c.s2.bands import BAND_GROUPS, BandGroup
from sentinel2_l1c.s2.listing import Selection, list_products
from sentinel2_l1c.s2.product import SafeProduct, read_band
from tests.helpers import SMALL, Archive, Converted, data_array, link_products, store_contents


def cog_path(root: Path, product: SafeProduct, band_group: BandGroup) -> Path:
    return root / cog_file(product, band_group)


REPO = Path(__file__).resolve().parents[1]


def assert_same_store(first: Path, second: Path) -> None:
    a, b = store_contents(first), store_contents(second)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    chunk_files = lambda p: sorted(f.relative_to(p) for f in p.rglob("c/*") if f.is_file())  # noqa: E731
    assert chunk_files(first) == chunk_files(second)


class TestIdenticalPixels:
    def test_random_windows_in_every_format(self, converted: Converted) -> None:
        rng = np.random.default_rng(42)
        zip_store = ZipStore(converted.zipped, mode="r")
        for _ in range(4):
            size = int(rng.integers(6, 20)) * 6  # 10 m pixels, a multiple of 6 so all grids align
            y0, x0 = (int(v) * 6 for v in rng.integers(0, (366 - size) // 6, size=2))
            for band_group in BAND_GROUPS:
                factor = band_group.resolution // 10
                window = Window(x0 // factor, y0 // factor, size // factor, size // factor)
                rows = slice(window.row_off, window.row_off + window.height)
                cols = slice(window.col_off, window.col_off + window.width)
                from_zarr = data_array(str(converted.zarr), band_group)[:, :, rows, cols]
                from_sharded = data_array(str(converted.sharded), band_group)[:, :, rows, cols]
                from_zip = data_array(zip_store, band_group)[:, :, rows, cols]
                assert from_zarr.shape == (
                    len(converted.products),
                    len(band_group.bands),
                    *from_zarr.shape[2:],
                )
                for t, product in enumerate(converted.products):
                    from_safe = np.stack(
                        [read_band(product.band_path(b), window) for b in band_group.bands]
                    )
                    with rasterio.open(cog_path(converted.cog, product, band_group)) as cog:
                        from_cog = cog.read(window=window)
                    for name, pixels in [
                        ("cog", from_cog),
                        ("zarr", from_zarr[t]),
                        ("sharded", from_sharded[t]),
                        ("zip", from_zip[t]),
                    ]:
                        np.testing.assert_array_equal(
                            pixels,
                            from_safe,
                            err_msg=f"{name} {product.product_id} {band_group.name}",
                        )
        zip_store.close()

    def test_cogs_are_valid_and_described(self, converted: Converted) -> None:
        product = converted.products[0]
        for band_group in BAND_GROUPS:
            path = cog_path(converted.cog, product, band_group)
            valid, errors, _ = cog_validate(str(path))
            assert valid, errors
            with rasterio.open(path) as cog:
                assert cog.descriptions == band_group.bands
                assert cog.crs.to_epsg() == 32635
                assert cog.transform == product.grid(band_group.resolution).transform
                assert (
                    cog.tags()["PRODUCT_START_TIME"].endswith("Z")
                    and "." in cog.tags()["PRODUCT_START_TIME"]
                )
                assert (
                    float(cog.tags(1)["WAVELENGTH"])
                    == product.wavelengths[band_group.bands[0]].central
                )
                assert cog.block_shapes[0] == (
                    min(512, cog.height),
                    min(512, cog.width),
                ) or cog.block_shapes[0] == (512, 512)
        metadata = (
            converted.cog / "35VLH" / "2024" / product.product_id / "product.json"
        ).read_text()
        assert product.product_id in metadata


class TestZarrLayout:
    def test_xarray_and_rioxarray_view(self, converted: Converted) -> None:
        for store in (converted.zarr, converted.sharded):
            for band_group in BAND_GROUPS:
                ds = xr.open_zarr(
                    store, group=group_path("35VLH", 2024, band_group), consolidated=False
                )
                product = converted.products[0]
                grid = product.grid(band_group.resolution)
                assert ds.data.dtype == np.uint16 and ds.data.dims == ("time", "band", "y", "x")
                expected_times = np.array([p.start_time64 for p in converted.products])
                np.testing.assert_array_equal(
                    ds.time.values.astype("datetime64[ms]"), expected_times
                )
                assert list(ds.product_id.values) == [p.product_id for p in converted.products]
                assert list(ds.band.values) == list(band_group.bands)
                np.testing.assert_array_equal(ds.x.values, grid.x_centres())
                np.testing.assert_array_equal(ds.y.values, grid.y_centres())
                assert ds.rio.crs.to_epsg() == 32635
                assert ds.rio.transform() == grid.transform

    def test_default_layout_chunks_and_shards(self, archive: Archive, tmp_path: Path) -> None:
        convert_safe_to_zarr.convert(
            ZarrOptions(
                archive.root,
                tmp_path / "s",
                formats.ZARR_SHARDED,
                selection=Selection(("35VLH",), (2024,)),
            ),
            False,
        )
        layout = zarr_layouts.get(formats.ZARR_SHARDED.layout)
        for band_group in BAND_GROUPS:
            array = data_array(str(tmp_path / "s"), band_group)
            tiling = layout.tiling(band_group.resolution)
            bands = len(band_group.bands)
            assert array.chunks == (tiling.time, bands, tiling.side, tiling.side)
            assert array.shards == (tiling.time, bands, tiling.block, tiling.block)
            group = zarr.open_group(str(tmp_path / "s"), mode="r")[
                group_path("35VLH", 2024, band_group)
            ]
            assert group.attrs[LAYOUT] == layout.name


class TestWrites:
    def test_each_chunk_and_shard_written_once(
        self, archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        writes: Counter[str] = Counter()
        original = LocalStore.set

        async def counting_set(self: LocalStore, key: str, value: object) -> None:
            writes[f"{self.root.name}/{key}"] += 1
            await original(self, key, value)

        monkeypatch.setattr(LocalStore, "set", counting_set)
        for name, fmt in (("plain", formats.ZARR), ("sharded", formats.ZARR_SHARDED)):
            convert_safe_to_zarr.convert(
                ZarrOptions(archive.root, tmp_path / name, fmt, layout=SMALL),
                False,
            )
            data_writes = {
                k: n for k, n in writes.items() if k.startswith(f"{name}/") and "/data/c/" in k
            }
            on_disk = {
                f"{name}/{p.relative_to(tmp_path / name).as_posix()}"
                for p in (tmp_path / name).rglob("c/*/*/*/*")
                if "/data/" in p.as_posix()
            }
            assert set(data_writes) == on_disk
            assert set(data_writes.values()) == {1}, f"{name}: some chunk written more than once"
        plain = sum(1 for k in writes if k.startswith("plain/") and "/data/c/" in k)
        sharded = sum(1 for k in writes if k.startswith("sharded/") and "/data/c/" in k)
        assert sharded < plain

    def test_append_equals_full_conversion(
        self, converted: Converted, archive: Archive, tmp_path: Path
    ) -> None:
        root = tmp_path / "safe"
        first, rest = converted.products[:10], converted.products[10:]
        for product in first:
            link = root / product.name.cdse_path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(product.path)
        target = tmp_path / "zarr"
        convert_safe_to_zarr.convert(ZarrOptions(root, target, layout=SMALL), False)
        for product in rest:
            link = root / product.name.cdse_path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(product.path)
        summary = convert_safe_to_zarr.convert(ZarrOptions(root, target, layout=SMALL), False)
        total = len(converted.products)
        expected = sum(
            1
            for g in BAND_GROUPS
            for _ in blocks(
                total, first[0].grid(g.resolution).shape, SMALL.of(g, False), first_time=10
            )
        )
        assert summary.blocks_written == expected  # only the last partial time chunk and after
        assert_same_store(target, converted.zarr)
        again = convert_safe_to_zarr.convert(ZarrOptions(root, target, layout=SMALL), False)
        assert again.blocks_written == 0

    def test_earlier_dates_need_overwrite(self, converted: Converted, tmp_path: Path) -> None:
        root = tmp_path / "safe"
        for product in converted.products[1:]:
            link = root / product.name.cdse_path
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(product.path)
        target = tmp_path / "zarr"
        convert_safe_to_zarr.convert(ZarrOptions(root, target, layout=SMALL), False)
        first = converted.products[0]
        (root / first.name.cdse_path).parent.mkdir(parents=True, exist_ok=True)
        (root / first.name.cdse_path).symlink_to(first.path)
        with pytest.raises(InputDataError, match="rerun with --overwrite to rebuild it"):
            convert_safe_to_zarr.convert(ZarrOptions(root, target, layout=SMALL), False)
        convert_safe_to_zarr.convert(ZarrOptions(root, target, layout=SMALL, overwrite=True), False)
        assert_same_store(target, converted.zarr)

    def test_killed_and_rerun(self, converted: Converted, archive: Archive, tmp_path: Path) -> None:
        target = tmp_path / "zarr"
        code = (
            "from pathlib import Path; from tests.helpers import SMALL; "
            "from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions, convert; "
            "from sentinel2_l1c.run.dask_engine import DaskEngine; "
            f"convert(ZarrOptions(Path({str(archive.root)!r}), Path({str(target)!r}), "
            "engine=DaskEngine(workers=1), layout=SMALL), False)"
        )
        process = subprocess.Popen([sys.executable, "-c", code], cwd=REPO)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if sum(1 for _ in target.rglob("c/*/*/*/*")) >= 30:
                break
            time.sleep(0.005)
        process.kill()
        process.wait()
        group = zarr.open_group(str(target), mode="r", zarr_format=3)[
            group_path("35VLH", 2024, BAND_GROUPS[0])
        ]
        assert group.attrs[COMPLETE] is False, "killed before the end"
        assert len(group.attrs[DONE]) < 16  # of 2 × 2 blocks × 4 time chunks
        convert_safe_to_zarr.convert(ZarrOptions(archive.root, target, layout=SMALL), False)
        assert_same_store(target, converted.zarr)


class Killed(BaseException):
    """Stands for a kill -9: nothing in the converter handles it."""


def kill_when(monkeypatch: pytest.MonkeyPatch, owner: type, method: str, hit: object) -> None:
    """Raise Killed at the call of ``owner.method`` for which ``hit(self, *args)`` holds."""
    original = getattr(owner, method)

    def patched(self: object, *args: object, **kwargs: object) -> object:
        if hit(self, *args):
            raise Killed
        return original(self, *args, **kwargs)

    monkeypatch.setattr(owner, method, patched)


class TestCrashPoints:
    """Kills at the exact writes that once left wrong data marked good (issue 16)."""

    def test_killed_between_coordinates_and_data_resize_on_append(
        self, converted: Converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        root, target = tmp_path / "safe", tmp_path / "zarr"
        link_products(root, converted.products[:2])
        options = ZarrOptions(root, target, layout=SMALL)
        convert_safe_to_zarr.convert(options, False)
        link_products(root, converted.products[2:])
        with monkeypatch.context() as patch:  # product_id rewritten, data not yet resized
            kill_when(patch, zarr.Array, "resize", lambda a, *_: a.path.endswith("/data"))
            with pytest.raises(Killed):
                convert_safe_to_zarr.convert(options, False)
        group = zarr.open_group(str(target), mode="r")[group_path("35VLH", 2024, BAND_GROUPS[0])]
        assert group["product_id"].shape[0] == len(converted.products) != group["data"].shape[0]
        assert not is_complete(group), "data and coordinates disagree: not complete"
        with pytest.raises(InputDataError, match="is not complete: rerun convert_safe_to_zarr"):
            zip_zarr.zip_store(target, tmp_path / "z.zip", show_progress=False)
        convert_safe_to_zarr.convert(options, False)
        assert_same_store(target, converted.zarr)

    @pytest.mark.parametrize("array", ["data", "x", "spatial_ref"])
    def test_killed_while_creating_a_group(
        self,
        array: str,
        converted: Converted,
        archive: Archive,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        target = tmp_path / "zarr"
        options = ZarrOptions(archive.root, target, layout=SMALL)
        with monkeypatch.context() as patch:
            kill_when(patch, zarr.Group, "create_array", lambda g, name, *_: name == array)
            with pytest.raises(Killed):
                convert_safe_to_zarr.convert(options, False)
        with pytest.raises(InputDataError, match="is not complete: rerun convert_safe_to_zarr"):
            zip_zarr.zip_store(target, tmp_path / "z.zip", show_progress=False)
        assert not (tmp_path / "z.zip").exists()
        convert_safe_to_zarr.convert(options, False)
        assert_same_store(target, converted.zarr)

    def test_killed_while_committing_times_of_a_new_group(
        self,
        converted: Converted,
        archive: Archive,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        target = tmp_path / "zarr"
        options = ZarrOptions(archive.root, target, layout=SMALL)
        with monkeypatch.context() as patch:  # coordinates written, data still 0 dates long
            kill_when(patch, zarr.Array, "resize", lambda a, *_: a.path.endswith("/data"))
            with pytest.raises(Killed):
                convert_safe_to_zarr.convert(options, False)
        convert_safe_to_zarr.convert(options, False)
        assert_same_store(target, converted.zarr)


def test_selection_of_tiles_and_years(archive: Archive, tmp_path: Path) -> None:
    """--tiles/--years: several of each (duplicates dropped, a leading T accepted); none found
    is one line naming the selection."""
    both = Selection(("T35VLH", "35vlh", "34WFA"), (2024, 2023, 2024))
    assert (both.tiles, both.years) == (("35VLH", "34WFA"), (2024, 2023))
    assert both.products(archive.root) == list_products(archive.root)
    with pytest.raises(InputDataError, match="no L1C products of tile 35VLH in 2023 under"):
        Selection(("35VLH",), (2023,)).products(archive.root)
    with pytest.raises(ConfigError, match="invalid tile id"):
        Selection(("35VLX",))
    argv = ["--tiles", "34WFA", "35VLH", "--years", "2023", "2024", "--quiet", "--layout", "first_version",
            "--source", str(archive.root), "--target", str(tmp_path / "zarr")]  # fmt: skip
    assert convert_safe_to_zarr.main(argv) == 0
    with listing_groups():  # the root also holds the store's STAC
        assert list(zarr.open_group(str(tmp_path / "zarr"), mode="r").group_keys()) == ["35VLH"]


class TestBadInput:
    def test_corrupt_jp2_names_the_file(self, archive: Archive, tmp_path: Path) -> None:
        root = tmp_path / "safe"
        source = list_products(archive.root)[0].path
        copy = root / source.relative_to(archive.root)
        shutil.copytree(source, copy)
        band = next(copy.glob("GRANULE/*/IMG_DATA/*_B03.jp2"))
        band.write_bytes(band.read_bytes()[:300])
        with pytest.raises(InputDataError, match=rf"^{band}: cannot read JP2"):
            convert_safe_to_zarr.convert(ZarrOptions(root, tmp_path / "zarr", layout=SMALL), False)
        group = zarr.open_group(str(tmp_path / "zarr"), mode="r")[
            group_path("35VLH", 2024, BAND_GROUPS[0])
        ]
        assert group.attrs[COMPLETE] is False
        with pytest.raises(InputDataError, match=rf"^{band}: cannot read JP2"):
            convert_safe_to_cog.convert(CogOptions(root, tmp_path / "cog"), False)
        assert not any((tmp_path / "cog").rglob("*.tif")), "no half-converted product is left"

    def test_no_products(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        (tmp_path / "safe").mkdir()
        argv = ["--source", str(tmp_path / "safe"), "--target", str(tmp_path / "z"), "--quiet"]
        assert convert_safe_to_zarr.main(argv) == 1
        assert "no L1C products under" in capsys.readouterr().err
        assert convert_safe_to_cog.main(argv) == 1

    def test_missing_configuration(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert convert_safe_to_zarr.main(["--quiet"]) == 2
        assert "DSLAB_S2L1C_NETWORK_SAFE_PATH is not set" in capsys.readouterr().err
        assert zip_zarr.main(["--quiet"]) == 2


@pytest.fixture(autouse=True)
def _no_stray_partial_files(tmp_path: Path) -> Iterator[None]:
    yield
    assert not [p for p in tmp_path.rglob("*.partial") if p.is_file()]


def test_conversion_on_a_distributed_scheduler(
    archive: Archive, converted: Converted, tmp_path: Path
) -> None:
    """--scheduler: the blocks run on a dask.distributed cluster given by its address."""
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    ) as cluster:
        options = ZarrOptions(
            archive.root,
            tmp_path / "zarr",
            layout=SMALL,
            engine=DaskEngine(scheduler=cluster.scheduler_address),
        )
        assert convert_safe_to_zarr.convert(options, False).blocks_written > 0
    assert_same_store(tmp_path / "zarr", converted.zarr)


def test_unreachable_scheduler(
    archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dask_engine, "SCHEDULER_TIMEOUT", "1s")
    options = ZarrOptions(
        archive.root,
        tmp_path / "zarr",
        layout=SMALL,
        engine=DaskEngine(scheduler="tcp://127.0.0.1:9"),
    )
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        convert_safe_to_zarr.convert(options, False)


def test_reruns_remove_temporary_outputs_of_killed_runs(
    converted: Converted, archive: Archive, tmp_path: Path
) -> None:
    """A killed COG conversion or zip_zarr left hidden .*.tmp-* outputs that reruns never
    deleted (issue 16)."""
    product = converted.products[0]
    cog_root = tmp_path / "cog"
    leftover = cog_root / "35VLH" / "2024" / f".{product.product_id}.tmp-0123456789ab"
    (leftover / "B01_B09_B10.tif").parent.mkdir(parents=True)
    (leftover / "B01_B09_B10.tif").write_bytes(b"half a tiff")
    zip_leftover = tmp_path / ".z.zip.tmp-0123456789ab"
    zip_leftover.write_bytes(b"half a zip")
    convert_safe_to_cog.convert(CogOptions(archive.root, cog_root), show_progress=False)
    zip_zarr.zip_store(converted.zarr, tmp_path / "z.zip", show_progress=False)
    assert not leftover.exists() and not zip_leftover.exists()
    assert not [p for p in tmp_path.rglob(".*") if ".tmp-" in p.name]


def test_a_rerun_adds_the_crs_attributes_to_a_store_from_before_them(
    converted: Converted, archive: Archive, tmp_path: Path
) -> None:
    """Groups written before the CRS attributes gain them on the converter's next run, which
    rewrites only the arrays' metadata documents, no chunk."""
    target, product = tmp_path / "zarr", converted.products[0]
    shutil.copytree(converted.zarr, target)
    added = set(crs_attributes(product.crs, product.grid(10)))
    for document in target.glob("35VLH/2024/*/data/zarr.json"):  # as written before them
        metadata = json.loads(document.read_text())
        metadata["attributes"] = {k: v for k, v in metadata["attributes"].items() if k not in added}
        document.write_text(json.dumps(metadata))
    chunks = {p: p.stat().st_mtime_ns for p in target.rglob("c/*/*/*/*")}
    options = ZarrOptions(archive.root, target, layout=SMALL)
    summary = convert_safe_to_zarr.convert(options, False)
    assert (summary.blocks_written, summary.described) == (0, 3)
    assert "CRS attributes added to 3 existing groups" in summary.lines()[0]
    assert {p: p.stat().st_mtime_ns for p in target.rglob("c/*/*/*/*")} == chunks
    root = zarr.open_group(str(target), mode="r")
    for group in BAND_GROUPS:
        expected = crs_attributes(product.crs, product.grid(group.resolution))
        data = root[group_path("35VLH", 2024, group)]["data"]
        assert {k: data.attrs[k] for k in expected} == json.loads(json.dumps(expected))
    assert convert_safe_to_zarr.convert(options, False).described == 0
