"""Intake throughput vs a plain parallel GET of the same objects, on the lab's local CDSE.

Writes synthetic products, serves them from SeaweedFS (through ``--cdse-network``), then
alternately (a) GETs every object with N threads, discarding the bytes, and (b) runs the real
intake (STAC search, listing, manifest.safe, atomic per-product download to disk, every
object's MD5 checked) with N connections. Prints both rates, their ratio, and the seconds of
MD5 hashing inside the intake (in its download threads, as the bytes arrive).

    .venv/bin/python benchmarks/intake_throughput.py --scale 5 --count 8 --repeats 3
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c.intake_cdse_s3 import IntakeOptions, run_intake
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.synthetic import SyntheticOptions, generate
from sentinel2_l1c.run.cli import interrupt_on_sigterm
from sentinel2_l1c.storage.clients import s3_client
from sentinel2_l1c.storage.locations import Locations


def plain_get(
    client, keys: list[str], connections: int, folder: Path | None = None
) -> tuple[float, int]:
    """GET every object with ``connections`` threads; into files under ``folder`` if given."""

    def get(key: str) -> int:
        body = client.get_object(Bucket="eodata", Key=key)["Body"]
        if folder is None:
            return sum(len(chunk) for chunk in body.iter_chunks(1 << 20))
        path = folder / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            for chunk in body.iter_chunks(1 << 20):
                handle.write(chunk)
        return path.stat().st_size

    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        size = sum(pool.map(get, keys))
    return time.perf_counter() - started, size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--count", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--cdse-network", type=network.option, default="loopback")
    args = parser.parse_args()
    interrupt_on_sigterm()  # a kill stops the lab servers too

    work = Path(tempfile.mkdtemp(prefix="dslab-intake-bench-"))
    try:
        options = SyntheticOptions(
            start=date(2024, 6, 1), end=date(2024, 7, 1), count=args.count, scale=args.scale
        )
        list(generate(options, work / "eodata", show_progress=False))
        with LocalCdse(work / "lab", work / "eodata", cdse_network=args.cdse_network) as cdse:
            account = cdse.locations(Locations()).cdse_account
            client = s3_client(account, args.connections)
            keys = [
                o["Key"]
                for page in client.get_paginator("list_objects_v2").paginate(Bucket="eodata")
                for o in page.get("Contents", [])
            ]
            window = (
                datetime(2024, 6, 1, tzinfo=UTC),
                datetime(2024, 7, 1, tzinfo=UTC),
            )
            ratios, disk_ratios = [], []
            for repeat in range(args.repeats):
                plain_seconds, size = plain_get(client, keys, args.connections)
                to_disk_seconds, _ = plain_get(client, keys, args.connections, work / "plain")
                shutil.rmtree(work / "plain")
                target = work / f"safe{repeat}"
                intake = IntakeOptions(
                    tile="35VLH", windows=(window,), safe_root=target,
                    stac_url=cdse.stac.url, account=account, connections=args.connections,
                )  # fmt: skip
                summary = run_intake(intake, show_progress=False)
                shutil.rmtree(target)
                ratio = plain_seconds / summary.seconds
                ratios.append(ratio)
                disk_ratios.append(to_disk_seconds / summary.seconds)
                print(
                    f"repeat {repeat}: {len(keys)} objects, {size / 1e6:.0f} MB; plain GET "
                    f"{size / 1e6 / plain_seconds:.1f} MB/s, to files {size / 1e6 / to_disk_seconds:.1f} MB/s; intake {summary.bytes / 1e6 / summary.seconds:.1f} MB/s "
                    f"({summary.requests} requests, {summary.requests / summary.downloaded:.0f} per product); "
                    f"intake/plain {ratio:.2f}×, intake/plain-to-files {disk_ratios[-1]:.2f}×; "
                    f"MD5 {summary.hashing_seconds:.2f} s of hashing "
                    f"({summary.bytes / 1e6 / summary.hashing_seconds:.0f} MB/s, "
                    f"{summary.hashing_seconds / summary.seconds:.1%} of the intake's wall time)"
                )
            print(f"median intake/plain throughput: {sorted(ratios)[len(ratios) // 2]:.2f}×")
            print(
                f"median intake/plain-to-files throughput: {sorted(disk_ratios)[len(disk_ratios) // 2]:.2f}×"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
