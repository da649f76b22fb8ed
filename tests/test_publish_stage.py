"""publish_s3 and stage against the lab's S3 store: identical trees, resumes, policy, s3cmd."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
import requests

from sentinel2_l1c import formats, publish_s3, remote, stage, storages
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_environment
from sentinel2_l1c.lab.object_store import s3cmd_config_path
from sentinel2_l1c.remote import RemoteObject
from sentinel2_l1c.utils import is_safe_relative

from .conftest import storage, tool, use_settings
from .test_async_zipfs import HOSTILE, hostile_archive

FORMATS = list(formats.FORMATS)


def variable(storage_name: str, fmt: str) -> str:
    """The variable naming where ``fmt`` lives on a storage (its bucket on S3)."""
    return storages.get(storage_name).variables(formats.get(fmt))[0]


def tree(root: Path) -> dict[str, bytes]:
    if root.is_file():
        return {"": root.read_bytes()}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture()
def configured(
    network_lab: Path, local_cdse: LocalCdse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Network storage of the shared lab; this test's own buckets, temp and log folders."""
    own = {
        **{variable("temp", fmt): str(storage(tmp_path, "temp", fmt)) for fmt in FORMATS},
        **{
            variable("s3", fmt): f"t-{tmp_path.name[-20:].lower().replace('_', '-')}-{i}"
            for i, fmt in enumerate(FORMATS)
        },
        "DSLAB_LOG_FOLDER": str(tmp_path / "logs"),
    }
    use_settings(monkeypatch, lab_environment(network_lab), local_cdse.environment(), own)
    return tmp_path


def last_results(folder: Path, prefix: str) -> dict:
    return json.loads(sorted(folder.glob(f"{prefix}_*.json"))[-1].read_text())


def bucket(fmt: str) -> str:
    return os.environ[variable("s3", fmt)]


def test_publish_then_stage_from_s3_gives_identical_trees(
    configured: Path, network_lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 MiB parts: the test's zipped Zarr goes up (and down) in several parts
    monkeypatch.setattr(remote, "PART_SIZE", 5 << 20)
    monkeypatch.setattr(publish_s3, "PART_SIZE", 5 << 20)
    monkeypatch.setattr(stage, "PART_SIZE", 5 << 20)
    assert storage(network_lab, "network", "zipzarr").stat().st_size > 5 << 20
    assert publish_s3.main(["--quiet"]) == 0
    first = last_results(configured / "logs", "publish")
    assert [a["format"] for a in first["actions"]] == list(FORMATS)
    assert all(a["files"] > 0 and a["created_bucket"] for a in first["actions"])
    assert first["environment"]["cpu_count"] >= 1
    unshaped = {"s3": "loopback: unshaped", "cdse": "loopback: unshaped"}
    assert first["environment"]["network"] == unshaped  # the lab's profiles, recorded
    assert publish_s3.main(["--quiet", "--output", str(configured / "again")]) == 0
    second = last_results(configured / "again", "publish")
    assert [(a["files"], a["bytes"]) for a in second["actions"]] == [(0, 0)] * len(FORMATS)
    assert [a["skipped_files"] for a in second["actions"]] == [a["files"] for a in first["actions"]]

    assert stage.main(["--quiet", "--from-s3", *FORMATS]) == 0
    for fmt in FORMATS:
        assert tree(storage(configured, "temp", fmt)) == tree(storage(network_lab, "network", fmt))
    actions = last_results(configured / "logs", "stage")["actions"]
    assert [(a["action"], a["source_storage"], a["format"]) for a in actions] == [
        ("copy", "s3", fmt) for fmt in FORMATS
    ]
    assert all(a["seconds"] > 0 and a["files"] > 0 for a in actions)
    assert last_results(configured / "logs", "stage")["environment"]["network"] == unshaped


def test_stage_from_network_unzip_and_stream_unzip(configured: Path, network_lab: Path) -> None:
    assert publish_s3.main(["--quiet", "--formats", "zipzarr"]) == 0
    argv = ["--quiet", "--from-network", *FORMATS, "--unzip", "--stream-unzip", "--overwrite"]
    assert stage.main(argv) == 0
    for fmt in FORMATS:
        assert tree(storage(configured, "temp", fmt)) == tree(storage(network_lab, "network", fmt))
    data = last_results(configured / "logs", "stage")
    actions = [(a["action"], a["source_storage"], a["format"]) for a in data["actions"]]
    assert actions == [
        *[("copy", "network", fmt) for fmt in FORMATS],
        ("unzip", "temp", "zipzarr"),
        ("stream-unzip", "s3", "zipzarr"),
    ]
    zarr_files = len(tree(storage(network_lab, "network", "zarr")))
    for record in data["actions"][-2:]:
        assert record["files"] == zarr_files and record["target"].endswith("sentinel2_l1c_zarr")
    assert data["config"]["overwrite"] is True and "versions" in data["environment"]

    # a rerun without --overwrite finds everything in place (the Zarr copy from the network
    # is left out: the extractions gave its files new modification times, so it would copy)
    others = [fmt for fmt in FORMATS if fmt != "zarr"]
    assert stage.main(["--quiet", "--from-network", *others, "--unzip", "--stream-unzip"]) == 0
    rerun = last_results(configured / "logs", "stage")["actions"]
    assert sum(a["files"] for a in rerun) == 0 and all(a["skipped_files"] for a in rerun)


def test_interrupted_download_resumes(
    configured: Path, network_lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert publish_s3.main(["--quiet", "--formats", "zarr"]) == 0
    original = storages.download_object
    calls = {"n": 0}

    def failing(*args: object, **kwargs: object) -> int:
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(storages, "download_object", failing)
    assert stage.main(["--quiet", "--from-s3", "zarr", "--connections", "1"]) == 130
    target = storage(configured, "temp", "zarr")
    assert not target.exists() and stage.partial_path(target).is_dir()
    monkeypatch.setattr(storages, "download_object", original)
    assert stage.main(["--quiet", "--from-s3", "zarr"]) == 0
    record = last_results(configured / "logs", "stage")["actions"][0]
    # the 19 objects fetched before the interruption (and the one a worker may have begun) stay
    assert 19 <= record["skipped_files"] <= 20
    assert record["skipped_files"] + record["files"] == len(tree(target))
    assert tree(target) == tree(storage(network_lab, "network", "zarr"))


def test_public_policy_opens_only_the_published_buckets(
    configured: Path, local_cdse: LocalCdse
) -> None:
    assert publish_s3.main(["--quiet", "--formats", "zarr", "--public"]) == 0
    assert publish_s3.main(["--quiet", "--formats", "cog"]) == 0
    endpoint = local_cdse.store.endpoint
    assert requests.get(f"{endpoint}/{bucket('zarr')}/35VLH/2024/zarr.json").status_code == 200
    assert requests.get(f"{endpoint}/{bucket('zarr')}?list-type=2").status_code == 200
    client = local_cdse.store.client(local_cdse.storage_user)
    cog_key = client.list_objects_v2(Bucket=bucket("cog"), MaxKeys=1)["Contents"][0]["Key"]
    assert requests.get(f"{endpoint}/{bucket('cog')}/{cog_key}").status_code == 403
    eodata_key = client.list_objects_v2(Bucket="eodata", MaxKeys=1)["Contents"][0]["Key"]
    assert requests.get(f"{endpoint}/eodata/{eodata_key}").status_code == 403
    policy = json.loads(client.get_bucket_policy(Bucket=bucket("zarr"))["Policy"])
    resources = {
        r
        for s in policy["Statement"]
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    }
    assert resources == {f"arn:aws:s3:::{bucket('zarr')}", f"arn:aws:s3:::{bucket('zarr')}/*"}


def test_s3cmd_lists_and_gets_what_was_published(
    configured: Path, network_lab: Path, local_cdse: LocalCdse
) -> None:
    assert publish_s3.main(["--quiet", "--formats", "zarr", "zipzarr"]) == 0
    config = s3cmd_config_path(local_cdse.lab / "aws", LAB_S3_PROFILE)
    command = tool("s3cmd", "s3cmd")

    def s3cmd(*args: str) -> str:
        done = subprocess.run(
            [command, "-c", str(config), *args], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    listing = s3cmd("ls", "-r", f"s3://{bucket('zarr')}")
    network_zarr = tree(storage(network_lab, "network", "zarr"))
    assert len([line for line in listing.splitlines() if "s3://" in line]) == len(network_zarr)
    s3cmd("get", f"s3://{bucket('zarr')}/35VLH/2024/zarr.json", str(configured / "zarr.json"))
    assert (configured / "zarr.json").read_bytes() == network_zarr["35VLH/2024/zarr.json"]
    zip_key = lab_environment(network_lab)["DSLAB_S2L1C_S3_ZIPZARR_KEY"]
    s3cmd("get", f"s3://{bucket('zipzarr')}/{zip_key}", str(configured / "copy.zip"))
    assert (configured / "copy.zip").read_bytes() == storage(
        network_lab, "network", "zipzarr"
    ).read_bytes()


def test_dry_run_changes_nothing_and_delete_removes_stale_objects(
    configured: Path, local_cdse: LocalCdse, capsys: pytest.CaptureFixture[str]
) -> None:
    client = local_cdse.store.client(local_cdse.storage_user)
    assert publish_s3.main(["--quiet", "--formats", "zarr", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"create bucket s3://{bucket('zarr')}" in out and "upload " in out
    assert bucket("zarr") not in {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert not (configured / "logs").exists()

    assert publish_s3.main(["--quiet", "--formats", "zarr"]) == 0
    client.put_object(Bucket=bucket("zarr"), Key="stale/object", Body=b"old")
    assert publish_s3.main(["--quiet", "--formats", "zarr", "--dry-run", "--delete"]) == 0
    assert f"delete s3://{bucket('zarr')}/stale/object" in capsys.readouterr().out
    assert publish_s3.main(["--quiet", "--formats", "zarr"]) == 0
    assert client.list_objects_v2(Bucket=bucket("zarr"), Prefix="stale/")["KeyCount"] == 1
    assert publish_s3.main(["--quiet", "--formats", "zarr", "--delete"]) == 0
    assert client.list_objects_v2(Bucket=bucket("zarr"), Prefix="stale/")["KeyCount"] == 0


def test_changed_file_is_uploaded_and_staged_again(
    configured: Path, network_lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "zarr-copy"
    shutil.copytree(storage(network_lab, "network", "zarr"), source)
    monkeypatch.setenv(variable("network", "zarr"), str(source))
    assert publish_s3.main(["--quiet", "--formats", "zarr"]) == 0
    assert stage.main(["--quiet", "--from-s3", "zarr"]) == 0
    chunk = next(p for p in sorted(source.rglob("c/*/*/*/*")) if p.is_file())
    data = bytearray(chunk.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    chunk.write_bytes(bytes(data))
    assert publish_s3.main(["--quiet", "--formats", "zarr", "--output", str(tmp_path / "l2")]) == 0
    (record,) = last_results(tmp_path / "l2", "publish")["actions"]
    assert record["files"] == 1 and record["bytes"] == len(data)
    # staging again fetches it (same size, another ETag), keeping everything else
    assert stage.main(["--quiet", "--from-s3", "zarr", "--output", str(tmp_path / "l3")]) == 0
    assert tree(storage(configured, "temp", "zarr")) == tree(source)
    (staged,) = last_results(tmp_path / "l3", "stage")["actions"]
    assert staged["files"] == 1 and staged["skipped_files"] == len(tree(source)) - 1


@pytest.mark.parametrize("kind", ["escaping", *HOSTILE])
def test_hostile_zip_entries_are_refused(
    kind: str, configured: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = storage(configured, "temp", "zipzarr")
    evil.parent.mkdir(parents=True, exist_ok=True)
    if kind == "escaping":
        with zipfile.ZipFile(evil, "w") as archive:
            archive.writestr("zarr.json", b"{}")
            archive.writestr("../escaped.txt", b"gotcha")
    else:
        hostile_archive(evil, kind)
    assert stage.main(["--quiet", "--unzip"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("python -m sentinel2_l1c.stage: error: ")
    assert "refusing" in err and "Traceback" not in err
    assert not (evil.parent.parent / "escaped.txt").exists()
    assert not storage(configured, "temp", "zarr").exists()


def test_missing_sources_and_bad_arguments(
    configured: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stage.main(["--quiet"]) == 2
    assert "nothing to stage" in capsys.readouterr().err
    assert stage.main(["--quiet", "--unzip"]) == 1
    assert "run python -m sentinel2_l1c.stage first" in capsys.readouterr().err
    assert stage.main(["--quiet", "--from-s3", "cog"]) == 1
    assert "run python -m sentinel2_l1c.publish_s3 first" in capsys.readouterr().err
    monkeypatch.setenv(variable("network", "cog"), str(configured / "none"))
    assert publish_s3.main(["--quiet", "--formats", "cog"]) == 1
    assert "convert_safe_to_cog first" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        stage.main(["--from-network", "tiff"])


def test_sync_plan_and_policy_are_pure_logic(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_bytes(b"1234")
    b.write_bytes(b"12345")
    remote_objects = {
        "a": RemoteObject("a", 4, "x"),
        "b": RemoteObject("b", 4, "y"),
        "old": RemoteObject("old", 1, "z"),
    }
    uploads, skipped, stale = publish_s3.sync_plan(
        {"a": a, "b": b}, remote_objects, lambda p, o: True
    )
    assert uploads == [(b, "b")] and skipped.files == 1 and stale == ["old"]
    template = publish_s3.policy_template()
    assert "arn:aws:s3:::my-bucket/*" in publish_s3.policy_for("my-bucket", template)
    with pytest.raises(ConfigError, match="reaches beyond bucket"):
        publish_s3.policy_for("my-bucket", template.replace("${BUCKET}/*", "*"))
    statement = {"Effect": "Allow", "Principal": "*", "Resource": "arn:aws:s3:::my-bucket/*"}
    for wrong, message in [
        ({**statement, "Action": "s3:GetObject", "NotResource": "x"}, "NotResource is not allowed"),
        ({**statement, "NotAction": "s3:PutObject"}, "NotAction is not allowed"),
        ({**statement, "Action": "s3:*"}, "not read-only"),
        ({**statement, "Action": ["s3:GetObject", "s3:PutObject"]}, "not read-only"),
        ({**statement, "Action": "s3:GetObject", "Resource": []}, "names no Resource"),
    ]:
        with pytest.raises(ConfigError, match=message):
            publish_s3.policy_for("my-bucket", json.dumps({"Statement": wrong}))
    one = {**statement, "Action": "s3:GetObject"}  # a single statement as an object is valid
    assert json.loads(publish_s3.policy_for("my-bucket", json.dumps({"Statement": one})))
    with pytest.raises(ConfigError, match="no Statement list"):
        publish_s3.policy_for("my-bucket", json.dumps({"Statement": "everything"}))
    assert remote.matches_etag(a, "81dc9bdb52d04dc20036dbd8313ed055")
    assert not remote.matches_etag(a, "81dc9bdb52d04dc20036dbd8313ed056")
    assert [is_safe_relative(n) for n in ("a/b", "../a", "a/../../b", "/etc/x", "")] == [
        True, False, False, False, False,
    ]  # fmt: skip


def test_job_script_runs_with_bash(configured: Path) -> None:
    assert publish_s3.main(["--quiet", "--formats", "zipzarr"]) == 0
    script = Path(publish_s3.__file__).resolve().parent.parent / "job.sh"
    benchmark = "--storages network temp --formats zarr zipzarr --num_repeats 2 --patch_size 1800"
    environment = {**os.environ, "DSLAB_JOB_BENCHMARK_ARGS": f"{benchmark} --quiet"}
    done = subprocess.run(
        ["bash", str(script)], env=environment, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    actions = last_results(configured / "logs", "stage")["actions"]
    assert [a["action"] for a in actions] == ["copy"] * 8 + ["unzip", "stream-unzip"]
    results = last_results(configured / "logs", "sentinel2_l1c")
    assert set(results["results"]["temp"]) == {"zarr", "zipzarr"}
    assert "× fastest" in done.stdout


def test_full_disk_during_a_download_leaves_no_file(
    configured: Path,
    network_lab: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 16, item 4: a short write used to leave a right-sized zip of zeros in place."""
    monkeypatch.setattr(remote, "PART_SIZE", 5 << 20)
    assert publish_s3.main(["--quiet", "--formats", "zipzarr"]) == 0
    real_pwrite = os.pwrite

    def full_disk(descriptor: int, data: bytes, offset: int) -> int:
        if offset < 5 << 20:  # the first part fits, the disk fills during the second
            return real_pwrite(descriptor, data, offset)
        if len(data) > 4096:
            return real_pwrite(descriptor, bytes(data[: len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(remote.os, "pwrite", full_disk)
    target = storage(configured, "temp", "zipzarr")
    assert stage.main(["--quiet", "--from-s3", "zipzarr", "--connections", "2"]) == 1
    err = capsys.readouterr().err
    assert err == f"python -m sentinel2_l1c.stage: error: {target}: No space left on device\n"
    assert not target.exists() and not list(target.parent.glob(".*"))
    monkeypatch.setattr(remote.os, "pwrite", real_pwrite)
    assert stage.main(["--quiet", "--from-s3", "zipzarr"]) == 0  # the rerun fetches it whole
    assert target.read_bytes() == storage(network_lab, "network", "zipzarr").read_bytes()


def test_publish_aborts_uploads_a_killed_run_left(
    configured: Path, local_cdse: LocalCdse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish killed after CreateMultipartUpload left the upload (and its stored parts)."""
    monkeypatch.setattr(remote, "PART_SIZE", 5 << 20)
    key = lab_environment(configured)["DSLAB_S2L1C_S3_ZIPZARR_KEY"]
    client = local_cdse.store.client(local_cdse.storage_user)
    client.create_bucket(Bucket=bucket("zipzarr"))
    orphan = client.create_multipart_upload(Bucket=bucket("zipzarr"), Key=key)["UploadId"]
    client.upload_part(
        Bucket=bucket("zipzarr"), Key=key, UploadId=orphan, PartNumber=1, Body=bytes(5 << 20)
    )
    assert publish_s3.main(["--quiet", "--formats", "zipzarr"]) == 0
    assert not client.list_multipart_uploads(Bucket=bucket("zipzarr")).get("Uploads")


def test_lab_files_and_ports_are_private(local_cdse: LocalCdse) -> None:
    """Keys are in files only their owner reads; the filer's HTTP port serves no bucket."""
    for path in [
        *(local_cdse.lab / "aws").glob("*"),
        local_cdse.store.data_dir / "s3-identities.json",
    ]:
        if "credentials" in path.name or path.suffix in (".cfg", ".json"):
            assert path.stat().st_mode & 0o777 == 0o600, path
    command = Path(f"/proc/{local_cdse.store.process.pid}/cmdline").read_text().split("\0")
    filer = next(a for a in command if a.startswith("-filer.port=")).split("=")[1]
    key = local_cdse.store.client(local_cdse.admin).list_objects_v2(Bucket="eodata", MaxKeys=1)
    url = f"http://127.0.0.1:{filer}/buckets/eodata/{key['Contents'][0]['Key']}"
    assert requests.get(url, timeout=10).status_code == 404
    assert (
        requests.put(
            f"http://127.0.0.1:{filer}/buckets/eodata/x", data=b"x", timeout=10
        ).status_code
        == 404
    )
