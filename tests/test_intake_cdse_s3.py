"""Intake end to end against the local CDSE: real STAC search, real S3 store, real modules."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sentinel2_l1c import intake_cdse_s3, intake_cdse_s3_year
from sentinel2_l1c.errors import ConfigError, RemoteError
from sentinel2_l1c.intake_cdse_s3 import IntakeOptions, ProductSource, run_intake, source_from_item
from sentinel2_l1c.intake_cdse_s3_year import day_windows
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.object_store import write_aws_files
from sentinel2_l1c.lab.proxy import LabProxy
from sentinel2_l1c.s2.listing import product_paths, safe_folders
from sentinel2_l1c.s2.names import SafeName
from sentinel2_l1c.storage.locations import Locations
from sentinel2_l1c.storage.retry import RetryPolicy
from sentinel2_l1c.storage.s3_account import S3Account
from tests.helpers import Archive

REPO = Path(__file__).resolve().parents[1]
UTC = UTC
FAST_RETRY = RetryPolicy(attempts=8, first_wait=0.01, max_wait=0.2)
ARCHIVE_WINDOW = (datetime(2024, 5, 1, tzinfo=UTC), datetime(2024, 7, 1, tzinfo=UTC))


@pytest.fixture(scope="module")
def missing_product(local_cdse: LocalCdse, archive: Archive) -> Iterator[SafeName]:
    """The last product of the archive, listed in STAC but deleted from S3 for this module."""
    folder = product_paths(archive.root)[-1]
    name = SafeName.parse(folder.name)
    assert local_cdse.remove_product(name) > 60
    yield name
    local_cdse.publish([folder])


def expected_products(archive: Archive, missing: SafeName) -> list[Path]:
    return [path for path in product_paths(archive.root) if path.name != missing.name]


def assert_identical(source_root: Path, copy_root: Path, products: list[Path]) -> None:
    """The copy holds exactly ``products``, each file by file equal to its source."""
    copied = safe_folders(copy_root)
    assert [p.relative_to(copy_root) for p in copied] == [
        p.relative_to(source_root) for p in products
    ]
    for source in products:
        copy = copy_root / source.relative_to(source_root)
        source_files = sorted(p.relative_to(source) for p in source.rglob("*") if p.is_file())
        copy_files = sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
        assert copy_files == source_files
        _, mismatch, errors = filecmp.cmpfiles(
            source, copy, [str(f) for f in source_files], shallow=False
        )
        assert mismatch == [] and errors == []
    leftovers = [
        p for p in copy_root.rglob(".*") if p.name.endswith(".partial") or ".tmp-" in p.name
    ]
    assert leftovers == []


class TestTileYear:
    def test_year_intake_then_rerun(
        self,
        cdse_environment: LocalCdse,
        archive: Archive,
        missing_product: SafeName,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        root = tmp_path / "network_safe"
        os.environ["DSLAB_S2L1C_NETWORK_SAFE_PATH"] = str(root)  # removed by the autouse fixture
        expected = expected_products(archive, missing_product)
        assert (
            intake_cdse_s3_year.main(["--tile_id", "35VLH", "--year_start", "2024", "--quiet"]) == 1
        )
        captured = capsys.readouterr()
        assert f"{len(expected) + 1} products found, {len(expected)} downloaded" in captured.out
        assert f"missing from S3: {missing_product.name}" in captured.out
        assert "1 product(s) listed in STAC are missing or not complete in S3" in captured.err
        assert_identical(archive.root, root, expected)
        assert len(safe_folders(archive.root)) == len(expected) + 1 + archive.options.duplicates

        # A second run downloads nothing and makes no S3 request but the missing product's list.
        assert intake_cdse_s3_year.main(["--tile_id", "T35VLH", "--quiet"]) == 1
        out = capsys.readouterr().out
        assert f"0 downloaded, {len(expected)} already complete, 1 missing" in out
        assert "0.0 MB" in out and ", 1 S3 requests" in out

    def test_killed_and_restarted(
        self,
        cdse_environment: LocalCdse,
        archive: Archive,
        missing_product: SafeName,
        tmp_path: Path,
    ) -> None:
        root = tmp_path / "network_safe"
        environment = {
            **os.environ,
            "DSLAB_S2L1C_NETWORK_SAFE_PATH": str(root),
            "PYTHONPATH": str(REPO),
        }
        command = [
            sys.executable, "-m", "sentinel2_l1c.intake_cdse_s3", "--tile", "35VLH",
            "--time-start", "2024-05-01T00:00:00Z", "--time-end", "2024-07-01T00:00:00Z",
            "--connections", "1", "--quiet",
        ]  # fmt: skip
        process = subprocess.Popen(command, env=environment, cwd=tmp_path)
        deadline = time.monotonic() + 60
        partial = []
        while time.monotonic() < deadline and process.poll() is None:
            try:  # the running intake renames folders while this looks
                complete = safe_folders(root)
                partial = [
                    p for p in root.rglob(".*.partial") if sum(1 for _ in p.rglob("*.jp2")) >= 3
                ]
            except FileNotFoundError:
                continue
            if len(complete) >= 2 and partial:
                break
            time.sleep(0.01)
        process.kill()
        process.wait()
        assert partial, "the run was killed while a product was partly downloaded"
        for folder in safe_folders(root):  # whatever is visible as a product is complete
            source = archive.root / folder.relative_to(root)
            assert sorted(p.name for p in folder.rglob("*")) == sorted(
                p.name for p in source.rglob("*")
            )

        os.environ["DSLAB_S2L1C_NETWORK_SAFE_PATH"] = str(root)
        assert intake_cdse_s3.main(command[3:-1] + ["--quiet"]) == 1
        assert_identical(archive.root, root, expected_products(archive, missing_product))

    def test_faults_are_retried(
        self,
        cdse_environment: LocalCdse,
        archive: Archive,
        missing_product: SafeName,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        with LabProxy(cdse_environment.store.s3_port, every=5) as proxy:
            files = write_aws_files(
                tmp_path / "aws", proxy.endpoint, {"cdse-faulty": cdse_environment.cdse_user}
            )
            options = IntakeOptions(
                tile="35VLH",
                windows=(ARCHIVE_WINDOW,),
                safe_root=tmp_path / "safe",
                stac_url=cdse_environment.stac.url,
                account=S3Account("cdse-faulty", files.config, files.credentials, FAST_RETRY),
            )
            summary = run_intake(options, show_progress=False)
        expected = expected_products(archive, missing_product)
        assert summary.downloaded == len(expected) and summary.missing == [missing_product.name]
        assert proxy.faults["503"] > 10 and proxy.faults["reset"] > 10
        assert summary.requests > 68 * len(expected)  # retried requests are counted too
        assert_identical(archive.root, tmp_path / "safe", expected)


class TestManifest:
    """Every object is checked against the product's manifest.safe (size and MD5)."""

    def options(self, cdse: LocalCdse, root: Path, files=None, attempts: int = 8) -> IntakeOptions:  # noqa: ANN001
        account = cdse.locations(Locations()).cdse_account
        if files is not None:
            account = S3Account("cdse-faulty", files.config, files.credentials, account.retry)
        retry = replace(FAST_RETRY, attempts=attempts)
        return IntakeOptions("35VLH", (ARCHIVE_WINDOW,), root, cdse.stac.url, replace(account, retry=retry))  # fmt: skip

    def test_bytes_changed_in_transit_are_fetched_again(
        self, local_cdse: LocalCdse, archive: Archive, missing_product: SafeName, tmp_path: Path
    ) -> None:
        with LabProxy(local_cdse.store.s3_port, every=4, faults=("flip",)) as proxy:
            files = write_aws_files(tmp_path / "aws", proxy.endpoint, {"cdse-faulty": local_cdse.cdse_user})  # fmt: skip
            summary = run_intake(self.options(local_cdse, tmp_path / "safe", files), False)
        assert proxy.faults["flip"] > 10
        assert summary.hashing_seconds > 0 and "MD5s checked against manifest.safe" in "\n".join(summary.lines())  # fmt: skip
        assert_identical(archive.root, tmp_path / "safe", expected_products(archive, missing_product))  # fmt: skip

    def test_a_changed_object_fails_in_one_line_and_a_partly_listed_product_waits(
        self, local_cdse: LocalCdse, archive: Archive, missing_product: SafeName, tmp_path: Path
    ) -> None:
        first = expected_products(archive, missing_product)[0]
        band = sorted(first.rglob("*_B02.jp2"))[0]
        key = band.relative_to(archive.root).as_posix()
        client = local_cdse.admin_client()
        changed = bytearray(band.read_bytes())
        changed[len(changed) // 2] ^= 0xFF  # same size: only the MD5 tells
        root = tmp_path / "safe"
        try:
            client.put_object(Bucket="eodata", Key=key, Body=bytes(changed))
            with pytest.raises(RemoteError) as raised:
                run_intake(self.options(local_cdse, root, attempts=2), False)
            message = str(raised.value)
            assert message.startswith(f"GET s3://eodata/{key}: gave up after 2 attempts")
            assert "MD5" in message and "\n" not in message
            assert not (root / first.relative_to(archive.root)).exists(), "not complete"

            client.delete_object(Bucket="eodata", Key=key)  # listed in STAC and the manifest
            summary = run_intake(self.options(local_cdse, root), False)
            assert summary.incomplete == [f"{first.name}: manifest.safe names {band.relative_to(first).as_posix()}, which S3 does not list"]  # fmt: skip
            assert intake_cdse_s3.report(summary) == 1
        finally:
            client.upload_file(str(band), "eodata", key)
        summary = run_intake(self.options(local_cdse, root), False)  # the next run gets it
        assert summary.incomplete == [] and summary.downloaded == 1
        assert_identical(archive.root, root, expected_products(archive, missing_product))


class TestBadInput:
    @pytest.mark.parametrize(
        "argv,message",
        [
            (["--tile_id", "35VLX"], "invalid tile id '35VLX'"),
            (
                ["--time_start", "2024-03-01T00:00:00Z", "--time_end", "2024-02-01T00:00:00Z"],
                "must be after --time-start",
            ),
            (["--connections", "0"], "connections must be at least 1"),
        ],
    )
    def test_rejected_before_any_network_call(
        self,
        argv: list[str],
        message: str,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        monkeypatch.setenv("DSLAB_S2L1C_NETWORK_SAFE_PATH", str(tmp_path))
        monkeypatch.setenv("DSLAB_S2L1C_STAC_URL", "http://127.0.0.1:9/never-called")
        started = time.monotonic()
        assert intake_cdse_s3.main([*argv, "--quiet"]) == 2
        assert message in capsys.readouterr().err
        assert time.monotonic() - started < 2

    def test_bad_time_format(self, capsys: pytest.CaptureFixture[str]) -> None:
        with pytest.raises(SystemExit) as caught:
            intake_cdse_s3.main(["--time_start", "21.2.2024"])
        assert caught.value.code == 2
        assert (
            "expected a UTC time YYYY-MM-DDTHH:MM:SSZ, got '21.2.2024'" in capsys.readouterr().err
        )

    def test_bad_years(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.setenv("DSLAB_S2L1C_NETWORK_SAFE_PATH", str(tmp_path))
        assert (
            intake_cdse_s3_year.main(["--year-start", "2024", "--year-end", "2024", "--quiet"]) == 2
        )
        assert "--year-end 2024 must be after --year-start 2024" in capsys.readouterr().err

    def test_missing_network_path(self, capsys: pytest.CaptureFixture[str]) -> None:
        assert intake_cdse_s3.main(["--quiet"]) == 2
        assert "DSLAB_S2L1C_NETWORK_SAFE_PATH is not set" in capsys.readouterr().err

    def test_unknown_profile(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        files = write_aws_files(tmp_path / "aws", "http://127.0.0.1:9", {})
        for name, value in files.environment().items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DSLAB_S2L1C_NETWORK_SAFE_PATH", str(tmp_path))
        assert intake_cdse_s3.main(["--quiet"]) == 2
        assert "AWS profile 'cdse' not found" in capsys.readouterr().err

    def test_unreachable_stac_api(self, local_cdse: LocalCdse, tmp_path: Path) -> None:
        options = IntakeOptions(
            tile="35VLH",
            windows=(ARCHIVE_WINDOW,),
            safe_root=tmp_path,
            stac_url="http://127.0.0.1:9",
            account=replace(
                local_cdse.locations(Locations()).cdse_account,
                retry=RetryPolicy(attempts=2, first_wait=0.01),
            ),
        )
        with pytest.raises(
            RemoteError, match=r"^STAC API http://127.0.0.1:9: gave up after 2 attempts"
        ):
            run_intake(options, show_progress=False)


class TestPureParts:
    def test_source_from_enclosure_link(self) -> None:
        name = "S2A_MSIL1C_20240221T095031_N0510_R079_T35VLH_20240221T103209.SAFE"
        prefix = f"Sentinel-2/MSI/L1C/2024/02/21/{name}"
        item = {"id": name[:-5], "links": [{"rel": "enclosure", "href": f"s3://eodata/{prefix}/"}]}
        assert source_from_item(item) == ProductSource(SafeName.parse(name), "eodata", prefix)
        by_asset = {
            "id": "x",
            "assets": {"B01": {"href": f"s3://eodata/{prefix}/GRANULE/g/IMG_DATA/b.jp2"}},
        }
        assert source_from_item(by_asset).prefix == prefix

    def test_day_windows(self) -> None:
        windows = day_windows(2024, 2025)
        assert len(windows) == 366
        assert windows[0] == (datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 2, tzinfo=UTC))
        assert windows[-1][1] == datetime(2025, 1, 1, tzinfo=UTC)
        with pytest.raises(ConfigError):
            day_windows(2025, 2024)
