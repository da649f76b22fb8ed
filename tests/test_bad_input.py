"""Bad input ends every command with one error line: exit code non-zero, no traceback, and
nothing written under a final name (issue 16). Each case once ended in a traceback, exited 0,
or was silently accepted."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from sentinel2_l1c import (
    benchmark_patch_load,
    convert_safe_to_cog,
    convert_safe_to_zarr,
    ingest,
    intake_cdse_s3,
    plan,
    publish_s3,
    report,
    stage,
    throughput,
    zip_zarr,
)
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_environment
from sentinel2_l1c.lab.object_store import Identity, write_aws_files
from tests.helpers import Archive, one_error_line, storage, use_settings

Main = Callable[[list[str]], int]
PATCH = ["--patch-size", "1800", "--num-repeats", "2"]
ARCHIVE_WINDOW = ["--time-start", "2024-05-01T00:00:00Z", "--time-end", "2024-07-01T00:00:00Z"]


# -- without servers ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--load", "s3/zarr=0"], "--load s3/zarr must be above 0, got 0"),
        (["--load", "s3/zarr=-1"], "--load s3/zarr must be above 0, got -1"),
        (["--staging", "copy:s3:zarr=-2"], "--staging copy:s3:zarr must be at least 0"),
    ],
)
def test_throughput_refuses_impossible_times(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert message in one_error_line(throughput.main, argv, capsys)


@pytest.mark.parametrize(
    "results,message",
    [
        ({"results": {"s3": {"zarr": {"durations": "fast"}}}}, "durations is 'fast', not a list"),
        ({"results": {"s3": {"zarr": {"durations": [1, "x"]}}}}, "holds 'x', not a number"),
        ({"results": {"s3": {"zarr": {"mean_durations": None}}}}, "is None, not a number"),
        ({"results": ["s3"]}, "results is ['s3'], not an object"),
        ({"tile": "35VLH"}, "not a benchmark_patch_load results file"),
    ],
)
def test_results_files_with_wrong_fields(
    results: dict, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    assert message in one_error_line(throughput.main, ["--results", str(path)], capsys)
    assert message in one_error_line(report.main, [str(path), "--img", str(tmp_path)], capsys)


def test_converters_refuse_bad_workers(
    archive: Archive, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--source", str(archive.root), "--target", str(tmp_path / "out"), "--workers", "-3"]
    for main in (convert_safe_to_zarr.main, convert_safe_to_cog.main):
        assert "--workers must be at least 1, got -3" in one_error_line(main, argv, capsys)
    assert not (tmp_path / "out").exists()


def test_zip_target_under_a_file(
    network_lab: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    source = storage(network_lab, "network", "zarr")
    argv = ["--source", str(source), "--target", str(tmp_path / "a-file" / "z.zip")]
    assert "a-file" in one_error_line(zip_zarr.main, argv, capsys)


# -- a full disk in every writing tool ------------------------------------------------------


def full_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every rename and hard link into place fails as on a full disk."""

    def no_space(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", no_space)
    monkeypatch.setattr(os, "link", no_space)


def test_full_disk_in_every_writing_tool(
    network_lab: Path,
    archive: Archive,
    local_cdse: LocalCdse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    use_settings(monkeypatch, local_cdse.environment(), {"DSLAB_LOG_FOLDER": str(out / "logs")})
    use_settings(monkeypatch, {"DSLAB_S2L1C_NETWORK_SAFE_PATH": str(out / "safe")})
    for name in ("TEMP_ZARR", "TEMP_COG"):
        monkeypatch.setenv(f"DSLAB_S2L1C_{name}_PATH", str(out / name.lower()))
    network = {fmt: str(storage(network_lab, "network", fmt)) for fmt in ("safe", "zarr", "cog")}
    commands: list[tuple[Main, list[str], Path | None]] = [
        (intake_cdse_s3.main, ARCHIVE_WINDOW, out / "safe"),
        (convert_safe_to_cog.main, ["--source", network["safe"], "--target", str(out / "c")], None),
        (
            convert_safe_to_zarr.main,
            ["--source", network["safe"], "--target", str(out / "z")],
            None,
        ),
        (
            zip_zarr.main,
            ["--source", network["zarr"], "--target", str(out / "z.zip")],
            out / "z.zip",
        ),
    ]
    with monkeypatch.context() as patch:
        full_disk(patch)
        for main, argv, target in commands:
            assert "No space left on device" in one_error_line(main, argv, capsys)
            if target is not None:
                assert not target.exists() or not any(target.rglob("*.SAFE"))
        assert not any((out / "c").rglob("*.tif")), "no COG under its final name"
    use_settings(monkeypatch, lab_environment(network_lab), {"DSLAB_LOG_FOLDER": str(out / "logs")})
    monkeypatch.setenv(
        "DSLAB_S2L1C_S3_ZARR_BUCKET", f"full-disk-{tmp_path.name[-8:].lower().replace('_', '-')}"
    )
    for name in ("TEMP_ZARR", "TEMP_COG"):
        monkeypatch.setenv(f"DSLAB_S2L1C_{name}_PATH", str(out / name.lower()))
    benchmark = ["--storages", "network", "--formats", "zarr", *PATCH]
    with monkeypatch.context() as patch:
        full_disk(patch)
        for main, argv in [
            (stage.main, ["--from-network", "zarr", "cog"]),
            (publish_s3.main, ["--formats", "zarr"]),  # its results file
            (benchmark_patch_load.main, benchmark),  # its results file
        ]:
            assert "No space left on device" in one_error_line(main, argv, capsys)
    assert not (out / "temp_zarr").exists() and not (out / "temp_cog").exists()
    assert not list((out / "logs").glob("*.json"))


# -- servers that refuse or are not what they should be -----------------------------------


@pytest.fixture()
def wrong_keys(
    network_lab: Path, local_cdse: LocalCdse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> LocalCdse:
    """The lab's settings, with profiles whose secret key is wrong."""
    wrong = Identity("wrong", ("Admin",), local_cdse.storage_user.access_key, "not-the-secret")
    files = write_aws_files(
        tmp_path / "aws", local_cdse.store.endpoint, {LAB_S3_PROFILE: wrong, "cdse": wrong}
    )
    use_settings(
        monkeypatch,
        lab_environment(network_lab),
        local_cdse.environment(),
        files.environment(),
        {"DSLAB_LOG_FOLDER": str(tmp_path / "logs"), "DSLAB_NETWORK_ATTEMPTS": "2"},
    )
    for fmt in ("zarr", "zipzarr"):  # this test's own temp storage
        monkeypatch.setenv(f"DSLAB_S2L1C_TEMP_{fmt.upper()}_PATH", str(tmp_path / fmt))
    return local_cdse


@pytest.mark.parametrize(
    "main,argv",
    [
        (intake_cdse_s3.main, [*ARCHIVE_WINDOW]),
        (stage.main, ["--from-s3", "zarr"]),
        (stage.main, ["--stream-unzip"]),
        (benchmark_patch_load.main, ["--storages", "s3", "--formats", "zarr", *PATCH]),
        (benchmark_patch_load.main, ["--storages", "s3", "--formats", "cog", *PATCH]),
        (publish_s3.main, ["--formats", "zipzarr"]),
    ],
)
def test_wrong_secret_key(
    main: Main,
    argv: list[str],
    wrong_keys: LocalCdse,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if main is intake_cdse_s3.main:
        argv = [*argv, "--target", str(tmp_path / "safe")]
    line = one_error_line(main, argv, capsys)
    assert "refused (HTTP 403" in line, line
    assert not (tmp_path / "zarr").exists() and not (tmp_path / "safe").exists()


def test_publish_without_write_rights(
    network_lab: Path,
    local_cdse: LocalCdse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The CDSE profile may list eodata but not write to it."""
    use_settings(
        monkeypatch,
        lab_environment(network_lab),
        local_cdse.environment(),
        {
            "DSLAB_S2L1C_S3_PROFILE": "cdse",
            "DSLAB_S2L1C_S3_ZIPZARR_BUCKET": "eodata",
            "DSLAB_LOG_FOLDER": str(tmp_path / "logs"),
        },
    )
    line = one_error_line(publish_s3.main, ["--formats", "zipzarr"], capsys)
    assert "PUT s3://eodata/" in line and "refused (HTTP 403 AccessDenied)" in line, line


def test_stac_url_that_is_not_a_stac_api(
    local_cdse: LocalCdse,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings(monkeypatch, local_cdse.environment())
    assert local_cdse.stac is not None
    # an S3 endpoint (403 with XML), and JSON that is no catalog (a search's answer)
    for url in (local_cdse.store.endpoint, f"{local_cdse.stac.url}/search"):
        monkeypatch.setenv("DSLAB_S2L1C_STAC_URL", url)
        argv = [*ARCHIVE_WINDOW, "--target", str(tmp_path / "safe")]
        line = one_error_line(intake_cdse_s3.main, argv, capsys)
        assert "STAC API" in line and "DSLAB_S2L1C_STAC_URL" in line, line
    assert not (tmp_path / "safe").exists()


def test_unknown_profile_and_refused_connection(
    network_lab: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    use_settings(monkeypatch, lab_environment(network_lab), {"DSLAB_NETWORK_ATTEMPTS": "2"})
    monkeypatch.setenv("DSLAB_S2L1C_TEMP_ZARR_PATH", str(tmp_path / "zarr"))
    monkeypatch.setenv("DSLAB_S2L1C_S3_PROFILE", "nobody")
    assert "AWS profile 'nobody' not found" in one_error_line(
        stage.main, ["--stream-unzip"], capsys
    )
    argv = ["--storages", "s3", "--formats", "zipzarr", *PATCH]
    assert "AWS profile 'nobody' not found" in one_error_line(
        benchmark_patch_load.main, argv, capsys
    )
    files = write_aws_files(tmp_path / "aws", "http://127.0.0.1:9", {"nobody": Identity("n", ())})
    use_settings(monkeypatch, files.environment())  # port 9: nothing listens
    for main, args in ((stage.main, ["--stream-unzip"]), (benchmark_patch_load.main, argv)):
        assert "gave up after 2 attempts" in one_error_line(main, args, capsys)
    shutil.rmtree(tmp_path / "aws")


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--tiles", "35VLH"], "give the window: --days DAYS, or --time-start"),
        (["--tiles", "35VLH", "--days", "-2"], "--days must be positive, got -2"),
        (
            ["--tiles", "35VLH", "--days", "2", *ARCHIVE_WINDOW[:2]],
            "give --days or --time-start, not both",
        ),  # fmt: skip
        (["--days", "2"], "give the tiles: --tiles 35VLH"),
        (["--tiles", "35XYZ1", "--days", "2"], "35XYZ1"),
        (
            ["--tiles", "35VLH", "--days", "2", "--target", "s3://Bad_Bucket"],
            "name a whole bucket, s3://BUCKET",
        ),  # fmt: skip
        (["--tiles", "35VLH", "--days", "2", "--layout", "chunks_7"], "unknown layout 'chunks_7'"),
        (
            ["--tiles", "35VLH", "--consolidate", "2024", "--target", "zarr-here"],
            "rewriting it in place would not be atomic",
        ),  # fmt: skip
        (
            ["--tiles", "35VLH", "--days", "2", "--format", "safe_virtual", "--storage", "s3"],
            "safe_virtual is indexed where the products are, in CDSE: --storage s3 does not apply",
        ),  # fmt: skip
        (
            ["--tiles", "35VLH", "--days", "2", "--format", "safe_virtual", "--target", "s3://bkt"],
            "s3://bkt: safe_virtual's manifests are written to a folder",
        ),  # fmt: skip
    ],
)
def test_ingest_refuses_bad_options(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    assert message in one_error_line(ingest.main, argv, capsys)
    assert not (tmp_path / "zarr-here").exists()


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--years", "2016-20x5"], "a year or a range YYYY-YYYY, got '2016-20x5'"),
        (["--formats", "cog"], "plan covers the Zarr formats"),
        (["--tiles", "35VLH", "--dates", "0"], "--dates must be at least 1"),
        ([], "DSLAB_QUOTA_TIB must be a number, got 'ten'"),
    ],
)
def test_plan_refuses_bad_options(
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DSLAB_QUOTA_TIB", "ten" if not argv else "10")
    assert message in one_error_line(plan.main, [*argv, "--output", str(tmp_path)], capsys)
