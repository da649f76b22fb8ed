"""What travels on the link per patch: the coverage service beside direct S3 reads.

On an existing lab (its network drive holding SAFE, sharded Zarr and COG, published to its
S3), starts the lab with the coverage service, then per patch: the S3 requests and response
bytes of each direct S3 route (counted by the lab's proxy, ``lab.request_count``), and the
service route's bytes delivered and server CPU seconds (recorded by its loader).

    .venv/bin/python benchmarks/service_route.py --lab /tmp/cal2 --patches 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import formats
from sentinel2_l1c.bench.config import BenchmarkConfig, Pair, plan_patch
from sentinel2_l1c.bench.run import catalogue, open_loader
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations, source_root
from sentinel2_l1c.lab.request_count import requests_per_patch
from sentinel2_l1c.run.cli import interrupt_on_sigterm
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages

DIRECT = ("zarr_sharded", "zarr_sharded@xarray", "cog", "cog@odc-stac", "cog@stackstac")
SERVICE = "zarr_sharded@edr"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", type=Path, required=True)
    parser.add_argument("--tile", default="35VLH")
    parser.add_argument("--year", type=int, default=2024)
    parser.add_argument("--patches", type=int, default=5)
    parser.add_argument("--patch-size", type=int, default=5100)
    parser.add_argument("--network", type=network.option, default="allas")
    args = parser.parse_args()
    interrupt_on_sigterm()
    with LocalCdse(args.lab, source_root(args.lab), network=args.network, service=True) as lab:
        locations = lab.locations(lab_locations(args.lab))
        safe_root = storages.NETWORK.path(locations, formats.SAFE)
        left, bottom, right, top = list_products(safe_root, args.tile, args.year)[0].grid(10).bounds
        config = BenchmarkConfig(
            ("s3", "service"), (*DIRECT, SERVICE), 2, args.tile, args.year,
            (left, top, right, bottom), patch_size=args.patch_size,
        )  # fmt: skip
        direct = requests_per_patch(replace(config, formats=DIRECT), locations, args.patches)
        loader = open_loader(
            Pair.parse("service", SERVICE), locations, catalogue(config, locations)
        )
        costs: dict[str, list[float]] = {}
        try:
            loader.load(plan_patch(config, -1))
            for repeat in range(args.patches):
                loader.load(plan_patch(config, repeat))
                for name, value in loader.served().items():
                    costs.setdefault(name, []).append(value)
        finally:
            loader.close()
    print(f"{args.tile} {args.year}, {args.patch_size} m patches, {args.patches} per route")
    print(f"{'route':28} {'requests':>9} {'MB on the link':>15} {'server CPU s':>13}")
    for key, (requests, sent) in direct.items():
        print(f"{'s3/' + key:28} {requests:9.0f} {sent / 1e6:15.1f} {'-':>13}")
    print(
        f"{'service/' + SERVICE:28} {3:9d} {statistics.mean(costs['link_bytes']) / 1e6:15.1f} "
        f"{statistics.mean(costs['server_cpu_seconds']):13.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
