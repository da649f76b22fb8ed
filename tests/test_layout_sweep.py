"""layout_sweep on a user's own data (issue 34): a folder of products and an S3 account named
by the user's .env, no lab settings; it resumes after a kill, and the bytes and objects it
reports are those on the stores. The rule that picks a default is pure and tested alone."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from sentinel2_l1c import layout_sweep
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.storage.retry import RetryPolicy
from sentinel2_l1c.storage.transfer import list_objects
from tests.helpers import Archive

CANDIDATES = ["zarr_sharded:chunks_128", "zarr_sharded:chunks_128_pcodec"]


@pytest.fixture()
def user_data(
    archive: Archive, local_cdse: LocalCdse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """The archive's products copied to a folder of the user's, an S3 account of theirs (the
    local SeaweedFS's storage keys under a profile of their own) and a .env naming both."""
    shutil.copytree(archive.root, tmp_path / "scratch" / "safe")
    user, port = local_cdse.storage_user, local_cdse.store.s3_port
    aws = tmp_path / "aws"
    aws.mkdir()
    (aws / "config").write_text(
        f"[profile mine]\nendpoint_url = http://127.0.0.1:{port}\nregion = us-east-1\n"
    )
    (aws / "credentials").write_text(
        f"[mine]\naws_access_key_id = {user.access_key}\n"
        f"aws_secret_access_key = {user.secret_key}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(aws / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(aws / "credentials"))
    (tmp_path / ".env").write_text(
        "DSLAB_S2L1C_NETWORK_SAFE_PATH=scratch/safe\n"
        "DSLAB_S2L1C_NETWORK_ZARR_SHARDED_PATH=scratch/cube\n"
        "DSLAB_S2L1C_TEMP_ZARR_SHARDED_PATH=nvme/cube\n"
        "DSLAB_S2L1C_S3_PROFILE=mine\n"
        "DSLAB_S2L1C_S3_ZARR_SHARDED_BUCKET=my-cube\n"
        "DSLAB_LOG_FOLDER=results\n"
    )
    return tmp_path


def test_the_sweep_runs_on_user_data_resumes_and_counts_what_the_stores_hold(
    user_data: Path, local_cdse: LocalCdse, monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = [
        "--quiet", "--tile", "35VLH", "--year", "2024", "--candidates", *CANDIDATES,
        "--repeats", "2", "--patch-size", "1800", "--concurrency", "--keep-data",
    ]  # fmt: skip
    measure, measured = layout_sweep.measure, []

    def killed_at_the_second(candidate: layout_sweep.Candidate, *args: object) -> dict:
        if measured:
            raise KeyboardInterrupt
        measured.append(candidate.name)
        return measure(candidate, *args)

    monkeypatch.setattr(layout_sweep, "measure", killed_at_the_second)
    assert layout_sweep.main(argv) == 130
    results = user_data / "results" / "layout_sweep_35VLH_2024.json"
    assert list(json.loads(results.read_text())["rows"]) == CANDIDATES[:1]

    def counting(candidate: layout_sweep.Candidate, *args: object) -> dict:
        measured.append(candidate.name)
        return measure(candidate, *args)

    monkeypatch.setattr(layout_sweep, "measure", counting)
    assert layout_sweep.main(argv) == 0
    assert measured == CANDIDATES  # the rerun measured only what the kill left
    sweep = json.loads(results.read_text())
    assert (user_data / "results" / "layout_sweep_35VLH_2024.png").stat().st_size > 0
    client = local_cdse.admin_client()
    for name, row in sweep["rows"].items():
        layout = name.partition(":")[2]
        folder = user_data / "scratch" / "layout_sweep" / f"zarr_sharded-{layout}"
        files = [p for p in folder.rglob("*") if p.is_file()]
        bucket = f"my-cube-{layout.replace('_', '-')}"
        objects = list_objects(client, bucket, "", RetryPolicy())
        assert row["objects_computed"] == row["objects_on_disk"] == len(files) == len(objects)
        assert row["bytes_on_disk"] == sum(p.stat().st_size for p in files)
        assert row["bytes_on_s3"] == sum(o.size for o in objects) == row["bytes_on_disk"]
        assert (user_data / "nvme" / "layout_sweep" / f"zarr_sharded-{layout}").is_dir()
        assert set(row["steps"]) == {"s3→temp", "s3", "network", "network→temp"}
        assert all(steps > 0 for steps in row["steps"].values())
    assert sweep["rows"][CANDIDATES[1]]["readers"] == [
        "zarr_sharded@zarr-python",
        "zarr_sharded@obstore",
    ]
    assert sweep["defaults"]["zarr_sharded"] in CANDIDATES


def row(steps: float, size: float, fmt: str = "zarr_sharded", ok: bool = True) -> dict:
    return {
        "format": fmt, "steps": {"s3→temp": steps}, "bytes_full_size": size,
        "quotas": {"bytes_ok": ok, "objects_ok": True},
    }  # fmt: skip


def test_the_rule_takes_the_most_steps_within_quotas_and_ties_to_fewer_bytes() -> None:
    rows = {
        "zarr_sharded:a": row(100, 50),
        "zarr_sharded:b": row(97, 40),  # within 5 % of a: a tie, and fewer bytes
        "zarr_sharded:c": row(200, 10, ok=False),  # over a quota
        "zarr:d": row(10, 99, fmt="zarr"),
    }
    assert layout_sweep.choose_defaults(rows) == {
        "zarr_sharded": "zarr_sharded:b",
        "zarr": "zarr:d",
    }
    quota = layout_sweep.quotas(100e9, 600, tile_years=15, years_per_bucket=5)
    assert quota["bytes_ok"] and quota["objects_ok"]
    assert not layout_sweep.quotas(100e9, 600, 385, 5)["bytes_ok"]  # Finland × 5 years
    assert not layout_sweep.quotas(1e9, 100_001, 1, 5)["objects_ok"]


def test_candidates_are_checked_before_anything_runs() -> None:
    with pytest.raises(ConfigError, match="codes single images"):
        layout_sweep.Candidate.parse("zarr:chunks_128_htj2k")
    with pytest.raises(
        ConfigError, match="candidate cog:chunks_128: choose a format from zarr, zarr_sharded"
    ):
        layout_sweep.Candidate.parse("cog:chunks_128")
    with pytest.raises(ConfigError, match="unknown layout"):
        layout_sweep.Candidate.parse("zarr_sharded:nope")
