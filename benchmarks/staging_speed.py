"""Publish and staging speed on a lab: publish_s3 vs a plain parallel upload, and
stream-unzip vs download + unzip of the zipped Zarr.

Needs a lab folder whose network storage holds the Zarr and zipped Zarr (``make demo``, or
the synthetic + convert + zip_zarr commands with the lab settings). Starts its own SeaweedFS
in ``{lab}/seaweedfs-staging``; every repeat uses fresh buckets and fresh temp targets.

    python benchmarks/staging_speed.py --lab lab --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentinel2_l1c import publish_s3, stage  # noqa: E402
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_environment  # noqa: E402
from sentinel2_l1c.lab.object_store import Identity, SeaweedFS, write_aws_files  # noqa: E402
from sentinel2_l1c.utils import storage_path, tree_size  # noqa: E402


def plain_upload(client, bucket: str, source: Path, key: str | None, connections: int) -> None:
    """boto3's managed upload_file per file, files in a thread pool: the usual script."""
    if key is not None:
        client.upload_file(str(source), bucket, key)
        return
    files = [p for p in source.rglob("*") if p.is_file()]
    with ThreadPoolExecutor(connections) as pool:
        list(
            pool.map(
                lambda p: client.upload_file(str(p), bucket, p.relative_to(source).as_posix()),
                files,
            )
        )


def drop_bucket(client, bucket: str) -> None:
    """Delete a bucket and its objects (SeaweedFS frees the space with the bucket)."""
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": keys[start : start + 1000]})
    client.delete_bucket(Bucket=bucket)


def stage_seconds(options: stage.StageOptions, logs: Path) -> list[float]:
    path = stage.stage(options, logs, show_progress=False)
    return [action["seconds"] for action in json.loads(path.read_text())["actions"]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", type=Path, default=Path("lab"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    lab = args.lab.resolve()
    os.environ.update(lab_environment(lab))
    logs = lab / "logs-staging-bench"
    identity = Identity("bench", ("Admin", "Read", "Write", "List", "Tagging"))
    data_dir = lab / "seaweedfs-staging"
    shutil.rmtree(data_dir, ignore_errors=True)
    with SeaweedFS(data_dir, [identity]) as store:
        os.environ.update(
            write_aws_files(data_dir / "aws", store.endpoint, {LAB_S3_PROFILE: identity})
        )
        client = store.client(identity)
        times: dict[str, list[float]] = {}
        for fmt in ("zarr", "zipzarr"):
            files, size = tree_size(storage_path("network", fmt))
            print(f"network {fmt}: {files} files, {size / 1e6:.0f} MB")
        for repeat in range(args.repeats):
            for fmt in ("zarr", "zipzarr"):
                variable = f"DSLAB_S2L1C_S3_{fmt.upper()}_BUCKET"
                os.environ[variable] = f"publish-{fmt.replace('_', '-')}-{repeat}"
                plain_bucket = f"plain-{fmt.replace('_', '-')}-{repeat}"
                for bucket in (os.environ[variable], plain_bucket):  # not timed: SeaweedFS
                    client.create_bucket(Bucket=bucket)  # grows volumes for a new bucket
                options = publish_s3.PublishOptions(formats=(fmt,), connections=args.connections)
                began = time.perf_counter()
                publish_s3.publish(options, logs, show_progress=False)
                times.setdefault(f"publish_s3 {fmt}", []).append(time.perf_counter() - began)
                key = os.environ["DSLAB_S2L1C_S3_ZIPZARR_KEY"] if fmt == "zipzarr" else None
                began = time.perf_counter()
                plain_upload(
                    client, plain_bucket, storage_path("network", fmt), key, args.connections
                )
                times.setdefault(f"plain upload {fmt}", []).append(time.perf_counter() - began)
                if fmt == "zarr":  # the zipped Zarr's bucket stays for the staging below
                    drop_bucket(client, os.environ[variable])
                drop_bucket(client, plain_bucket)
            common = {"overwrite": True, "connections": args.connections}
            copy, unzip = stage_seconds(
                stage.StageOptions(from_s3=("zipzarr",), unzip=True, **common), logs
            )
            (stream,) = stage_seconds(stage.StageOptions(stream_unzip=True, **common), logs)
            target = storage_path("temp", "zarr")
            shutil.rmtree(target)
            target.mkdir()
            began = time.perf_counter()
            subprocess.run(
                ["unzip", "-q", "-o", str(storage_path("temp", "zipzarr")), "-d", str(target)],
                check=True,
            )
            times.setdefault("Info-ZIP unzip (temp zip)", []).append(time.perf_counter() - began)
            times.setdefault("stage --from-s3 zipzarr", []).append(copy)
            times.setdefault("stage --unzip", []).append(unzip)
            times.setdefault("copy + unzip", []).append(copy + unzip)
            times.setdefault("stage --stream-unzip", []).append(stream)
            drop_bucket(client, os.environ["DSLAB_S2L1C_S3_ZIPZARR_BUCKET"])
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:30} median {median[name]:7.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")
    for fmt in ("zarr", "zipzarr"):
        ratio = median[f"publish_s3 {fmt}"] / median[f"plain upload {fmt}"]
        print(f"publish_s3 / plain parallel upload, {fmt}: {ratio:.2f}")
    print(
        f"stream-unzip / (copy + unzip): {median['stage --stream-unzip'] / median['copy + unzip']:.2f}"
    )


if __name__ == "__main__":
    main()
