"""publish_s3 against the lab's S3 store: the public-read policy, s3cmd interop, dry runs and
deletions, the sync plan, uploads a killed run left."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests

from sentinel2_l1c import (
    publish_s3,
)
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_environment
from sentinel2_l1c.lab.object_store import s3cmd_config_path
from sentinel2_l1c.storage import transfer
from sentinel2_l1c.storage.files import is_safe_relative
from sentinel2_l1c.storage.transfer import RemoteObject
from tests.helpers import bucket, storage, tool, tree


def test_public_policy_opens_only_the_published_buckets(
    transfer_lab: Path, local_cdse: LocalCdse
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
    transfer_lab: Path, network_lab: Path, local_cdse: LocalCdse
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
    s3cmd("get", f"s3://{bucket('zarr')}/35VLH/2024/zarr.json", str(transfer_lab / "zarr.json"))
    assert (transfer_lab / "zarr.json").read_bytes() == network_zarr["35VLH/2024/zarr.json"]
    zip_key = lab_environment(network_lab)["DSLAB_S2L1C_S3_ZIPZARR_KEY"]
    s3cmd("get", f"s3://{bucket('zipzarr')}/{zip_key}", str(transfer_lab / "copy.zip"))
    assert (transfer_lab / "copy.zip").read_bytes() == storage(
        network_lab, "network", "zipzarr"
    ).read_bytes()


def test_dry_run_changes_nothing_and_delete_removes_stale_objects(
    transfer_lab: Path, local_cdse: LocalCdse, capsys: pytest.CaptureFixture[str]
) -> None:
    client = local_cdse.store.client(local_cdse.storage_user)
    assert publish_s3.main(["--quiet", "--formats", "zarr", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert f"create bucket s3://{bucket('zarr')}" in out and "upload " in out
    assert bucket("zarr") not in {b["Name"] for b in client.list_buckets()["Buckets"]}
    assert not (transfer_lab / "logs").exists()

    assert publish_s3.main(["--quiet", "--formats", "zarr"]) == 0
    client.put_object(Bucket=bucket("zarr"), Key="stale/object", Body=b"old")
    assert publish_s3.main(["--quiet", "--formats", "zarr", "--dry-run", "--delete"]) == 0
    assert f"delete s3://{bucket('zarr')}/stale/object" in capsys.readouterr().out
    assert publish_s3.main(["--quiet", "--formats", "zarr"]) == 0
    assert client.list_objects_v2(Bucket=bucket("zarr"), Prefix="stale/")["KeyCount"] == 1
    assert publish_s3.main(["--quiet", "--formats", "zarr", "--delete"]) == 0
    assert client.list_objects_v2(Bucket=bucket("zarr"), Prefix="stale/")["KeyCount"] == 0


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
    assert transfer.matches_etag(a, "81dc9bdb52d04dc20036dbd8313ed055")
    assert not transfer.matches_etag(a, "81dc9bdb52d04dc20036dbd8313ed056")
    assert [is_safe_relative(n) for n in ("a/b", "../a", "a/../../b", "/etc/x", "")] == [
        True, False, False, False, False,
    ]  # fmt: skip


def test_publish_aborts_uploads_a_killed_run_left(
    transfer_lab: Path, local_cdse: LocalCdse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A publish killed after CreateMultipartUpload left the upload (and its stored parts)."""
    monkeypatch.setattr(transfer, "PART_SIZE", 5 << 20)
    key = lab_environment(transfer_lab)["DSLAB_S2L1C_S3_ZIPZARR_KEY"]
    client = local_cdse.store.client(local_cdse.storage_user)
    client.create_bucket(Bucket=bucket("zipzarr"))
    orphan = client.create_multipart_upload(Bucket=bucket("zipzarr"), Key=key)["UploadId"]
    client.upload_part(
        Bucket=bucket("zipzarr"), Key=key, UploadId=orphan, PartNumber=1, Body=bytes(5 << 20)
    )
    assert publish_s3.main(["--quiet", "--formats", "zipzarr"]) == 0
    assert not client.list_multipart_uploads(Bucket=bucket("zipzarr")).get("Uploads")
