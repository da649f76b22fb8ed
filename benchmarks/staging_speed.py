"""Publish and staging speed on a lab: publish_s3 vs a plain parallel upload, and
stream-unzip vs download + unzip of the zipped Zarr.

Needs a lab folder whose network storage holds the Zarr and zipped Zarr (``make demo``, or
the synthetic + convert + zip_zarr commands with the lab settings). Starts its own SeaweedFS
in ``{lab}/seaweedfs-staging``; every repeat uses fresh buckets and fresh temp targets.

    python benchmarks/staging_speed.py --lab lab --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sentinel2_l1c import formats, publish_s3, stage
from sentinel2_l1c.lab.layout import LAB_S3_PROFILE, lab_locations
from sentinel2_l1c.lab.object_store import Identity, SeaweedFS, write_aws_files
from sentinel2_l1c.records.actions import ActionLog
from sentinel2_l1c.run.cli import interrupt_on_sigterm
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import tree_size
from sentinel2_l1c.storage.locations import Locations


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


def stage_seconds(options: stage.StageOptions, locations: Locations, logs: Path) -> list[float]:
    path = stage.stage(options, locations, logs, show_progress=False)
    return [action.seconds for action in ActionLog.read(path).actions]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", type=Path, default=Path("lab"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    args = parser.parse_args()
    interrupt_on_sigterm()  # a kill stops the lab servers too
    lab = args.lab.resolve()
    logs = lab / "logs-staging-bench"
    identity = Identity("bench", ("Admin", "Read", "Write", "List", "Tagging"))
    data_dir = lab / "seaweedfs-staging"
    shutil.rmtree(data_dir, ignore_errors=True)
    zarr, zipzarr = formats.ZARR, formats.ZIPZARR
    network, temp = storages.NETWORK, storages.TEMP
    with SeaweedFS(data_dir, [identity]) as store:
        files = write_aws_files(data_dir / "aws", store.endpoint, {LAB_S3_PROFILE: identity})
        lab_settings = lab_locations(lab)
        client = store.client(identity)
        times: dict[str, list[float]] = {}
        for fmt in (zarr, zipzarr):
            count, size = tree_size(network.path(lab_settings, fmt))
            print(f"network {fmt.name}: {count} files, {size / 1e6:.0f} MB")
        for repeat in range(args.repeats):
            buckets = {
                storages.S3.variables(fmt)[0]: f"publish-{fmt.name.replace('_', '-')}-{repeat}"
                for fmt in (zarr, zipzarr)
            }
            locations = Locations(
                {**lab_settings.settings, **buckets},
                aws_config_file=files.config,
                aws_credentials_file=files.credentials,
            )
            for fmt in (zarr, zipzarr):
                target = storages.S3.place(locations, fmt)
                plain_bucket = f"plain-{fmt.name.replace('_', '-')}-{repeat}"
                for bucket in (target.bucket, plain_bucket):  # not timed: SeaweedFS
                    client.create_bucket(Bucket=bucket)  # grows volumes for a new bucket
                options = publish_s3.PublishOptions((fmt.name,), connections=args.connections)
                began = time.perf_counter()
                publish_s3.publish(options, locations, logs, show_progress=False)
                times.setdefault(f"publish_s3 {fmt.name}", []).append(time.perf_counter() - began)
                began = time.perf_counter()
                plain_upload(
                    client,
                    plain_bucket,
                    network.path(locations, fmt),
                    target.key or None,
                    args.connections,
                )
                times.setdefault(f"plain upload {fmt.name}", []).append(time.perf_counter() - began)
                if fmt is zarr:  # the zipped Zarr's bucket stays for the staging below
                    drop_bucket(client, target.bucket)
                drop_bucket(client, plain_bucket)
            common = {"overwrite": True, "connections": args.connections}
            copy, unzip = stage_seconds(
                stage.StageOptions((("s3", zipzarr.name),), unzip=True, **common), locations, logs
            )
            (stream,) = stage_seconds(
                stage.StageOptions(stream_unzip=True, **common), locations, logs
            )
            target_folder = temp.path(locations, zarr)
            shutil.rmtree(target_folder)
            target_folder.mkdir()
            began = time.perf_counter()
            zipped = temp.path(locations, zipzarr)
            subprocess.run(["unzip", "-q", "-o", str(zipped), "-d", str(target_folder)], check=True)
            times.setdefault("Info-ZIP unzip (temp zip)", []).append(time.perf_counter() - began)
            times.setdefault("stage --from-s3 zipzarr", []).append(copy)
            times.setdefault("stage --unzip", []).append(unzip)
            times.setdefault("copy + unzip", []).append(copy + unzip)
            times.setdefault("stage --stream-unzip", []).append(stream)
            drop_bucket(client, storages.S3.place(locations, zipzarr).bucket)
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
