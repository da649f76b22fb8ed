"""stage (from the network drive and from what publish_s3 put on the lab's S3): identical
trees, unzip and stream-unzip, resumed downloads, hostile zips, job.sh."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from sentinel2_l1c import (
    formats,
    publish_s3,
    stage,
)
from sentinel2_l1c.storage import places, transfer
from tests.helpers import HOSTILE, hostile_archive, last_results, storage, tree, variable

FORMATS = list(formats.FORMATS)


def test_publish_then_stage_from_s3_gives_identical_trees(
    transfer_lab: Path, network_lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 5 MiB parts: the test's zipped Zarr goes up (and down) in several parts
    monkeypatch.setattr(transfer, "PART_SIZE", 5 << 20)
    monkeypatch.setattr(publish_s3, "PART_SIZE", 5 << 20)
    monkeypatch.setattr(stage, "PART_SIZE", 5 << 20)
    assert storage(network_lab, "network", "zipzarr").stat().st_size > 5 << 20
    assert publish_s3.main(["--quiet"]) == 0
    first = last_results(transfer_lab / "logs", "publish")
    assert [a["format"] for a in first["actions"]] == list(FORMATS)
    assert all(a["files"] > 0 and a["created_bucket"] for a in first["actions"])
    assert first["environment"]["cpu_count"] >= 1
    unshaped = {"s3": "loopback: unshaped", "cdse": "loopback: unshaped", "drive": "folder"}
    assert first["environment"]["network"] == unshaped  # the lab's profiles, recorded
    assert publish_s3.main(["--quiet", "--output", str(transfer_lab / "again")]) == 0
    second = last_results(transfer_lab / "again", "publish")
    assert [(a["files"], a["bytes"]) for a in second["actions"]] == [(0, 0)] * len(FORMATS)
    assert [a["skipped_files"] for a in second["actions"]] == [a["files"] for a in first["actions"]]

    assert stage.main(["--quiet", "--from-s3", *FORMATS]) == 0
    for fmt in FORMATS:
        assert tree(storage(transfer_lab, "temp", fmt)) == tree(
            storage(network_lab, "network", fmt)
        )
    actions = last_results(transfer_lab / "logs", "stage")["actions"]
    assert [(a["action"], a["source_storage"], a["format"]) for a in actions] == [
        ("copy", "s3", fmt) for fmt in FORMATS
    ]
    assert all(a["seconds"] > 0 and a["files"] > 0 for a in actions)
    assert last_results(transfer_lab / "logs", "stage")["environment"]["network"] == unshaped


def test_stage_from_network_unzip_and_stream_unzip(transfer_lab: Path, network_lab: Path) -> None:
    assert publish_s3.main(["--quiet", "--formats", "zipzarr"]) == 0
    argv = ["--quiet", "--from-network", *FORMATS, "--unzip", "--stream-unzip", "--overwrite"]
    assert stage.main(argv) == 0
    for fmt in FORMATS:
        assert tree(storage(transfer_lab, "temp", fmt)) == tree(
            storage(network_lab, "network", fmt)
        )
    data = last_results(transfer_lab / "logs", "stage")
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
    rerun = last_results(transfer_lab / "logs", "stage")["actions"]
    assert sum(a["files"] for a in rerun) == 0 and all(a["skipped_files"] for a in rerun)


def test_interrupted_download_resumes(
    transfer_lab: Path, network_lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert publish_s3.main(["--quiet", "--formats", "zarr"]) == 0
    original = places.download_object
    calls = {"n": 0}

    def failing(*args: object, **kwargs: object) -> int:
        calls["n"] += 1
        if calls["n"] >= 20:  # the interruption; fetches the worker starts after it fail too
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(places, "download_object", failing)
    assert stage.main(["--quiet", "--from-s3", "zarr", "--connections", "1"]) == 130
    target = storage(transfer_lab, "temp", "zarr")
    assert not target.exists() and stage.partial_path(target).is_dir()
    monkeypatch.setattr(places, "download_object", original)
    assert stage.main(["--quiet", "--from-s3", "zarr"]) == 0
    record = last_results(transfer_lab / "logs", "stage")["actions"][0]
    # the 19 objects fetched before the interruption stay
    assert record["skipped_files"] == 19
    assert record["skipped_files"] + record["files"] == len(tree(target))
    assert tree(target) == tree(storage(network_lab, "network", "zarr"))


def test_changed_file_is_uploaded_and_staged_again(
    transfer_lab: Path, network_lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
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
    assert tree(storage(transfer_lab, "temp", "zarr")) == tree(source)
    (staged,) = last_results(tmp_path / "l3", "stage")["actions"]
    assert staged["files"] == 1 and staged["skipped_files"] == len(tree(source)) - 1


@pytest.mark.parametrize("kind", ["escaping", *HOSTILE])
def test_hostile_zip_entries_are_refused(
    kind: str, transfer_lab: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil = storage(transfer_lab, "temp", "zipzarr")
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
    assert not storage(transfer_lab, "temp", "zarr").exists()


def test_missing_sources_and_bad_arguments(
    transfer_lab: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert stage.main(["--quiet"]) == 2
    assert "nothing to stage" in capsys.readouterr().err
    assert stage.main(["--quiet", "--unzip"]) == 1
    assert "run python -m sentinel2_l1c.stage first" in capsys.readouterr().err
    assert stage.main(["--quiet", "--from-s3", "cog"]) == 1
    assert "run python -m sentinel2_l1c.publish_s3 first" in capsys.readouterr().err
    monkeypatch.setenv(variable("network", "cog"), str(transfer_lab / "none"))
    assert publish_s3.main(["--quiet", "--formats", "cog"]) == 1
    assert "convert_safe_to_cog first" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        stage.main(["--from-network", "tiff"])


def test_job_script_runs_with_bash(transfer_lab: Path) -> None:
    assert publish_s3.main(["--quiet", "--formats", "zipzarr"]) == 0
    script = Path(publish_s3.__file__).resolve().parent.parent / "job.sh"
    benchmark = "--storages network temp --formats zarr zipzarr --num_repeats 2 --patch_size 1800"
    environment = {**os.environ, "DSLAB_JOB_BENCHMARK_ARGS": f"{benchmark} --quiet"}
    done = subprocess.run(
        ["bash", str(script)], env=environment, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    actions = last_results(transfer_lab / "logs", "stage")["actions"]
    assert [a["action"] for a in actions] == ["copy"] * 8 + ["unzip", "stream-unzip"]
    results = last_results(transfer_lab / "logs", "sentinel2_l1c")
    assert set(results["results"]["temp"]) == {"zarr", "zipzarr"}
    assert "× fastest" in done.stdout


def test_full_disk_during_a_download_leaves_no_file(
    transfer_lab: Path,
    network_lab: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 16, item 4: a short write used to leave a right-sized zip of zeros in place."""
    monkeypatch.setattr(transfer, "PART_SIZE", 5 << 20)
    assert publish_s3.main(["--quiet", "--formats", "zipzarr"]) == 0
    real_pwrite = os.pwrite

    def full_disk(descriptor: int, data: bytes, offset: int) -> int:
        if offset < 5 << 20:  # the first part fits, the disk fills during the second
            return real_pwrite(descriptor, data, offset)
        if len(data) > 4096:
            return real_pwrite(descriptor, bytes(data[: len(data) // 2]), offset)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(transfer.os, "pwrite", full_disk)
    target = storage(transfer_lab, "temp", "zipzarr")
    assert stage.main(["--quiet", "--from-s3", "zipzarr", "--connections", "2"]) == 1
    err = capsys.readouterr().err
    assert err == f"python -m sentinel2_l1c.stage: error: {target}: No space left on device\n"
    assert not target.exists() and not list(target.parent.glob(".*"))
    monkeypatch.setattr(transfer.os, "pwrite", real_pwrite)
    assert stage.main(["--quiet", "--from-s3", "zipzarr"]) == 0  # the rerun fetches it whole
    assert target.read_bytes() == storage(network_lab, "network", "zipzarr").read_bytes()
