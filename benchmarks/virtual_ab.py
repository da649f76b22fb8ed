"""What fetching tile prefixes gains: virtual Zarr patch loads with and without them.

The virtual store fetches of each touched JP2 tile only the leading bytes the patch needs
(the packets up to the last precinct it touches). This loads the same patches from the lab's
S3 (or CDSE) under a network profile through the manifest as indexed and through the same
manifest with its prefixes dropped, so that the store fetches whole tiles, alternating which
goes first (the second load of a patch is faster), and reports both means, their ratio and
the CPU time this process and the lab's servers used per patch (``virtual_safe.py`` reports
the bytes). Run ``virtual_safe.py`` first: it builds, indexes and publishes the
lab this reads.

    .venv/bin/python benchmarks/virtual_prefix.py --lab /tmp/layout-lab --network allas,mbps=15,total_mbps=15
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import formats, storages  # noqa: E402
from sentinel2_l1c.benchmark import BenchmarkConfig, catalogue, open_loader, plan_patch  # noqa: E402
from sentinel2_l1c.cli import interrupt_on_sigterm  # noqa: E402
from sentinel2_l1c.demo import DemoOptions  # noqa: E402
from sentinel2_l1c.errors import ConfigError  # noqa: E402
from sentinel2_l1c.lab import network  # noqa: E402
from sentinel2_l1c.lab.cdse import LocalCdse  # noqa: E402
from sentinel2_l1c.lab.layout import lab_locations, source_root  # noqa: E402
from sentinel2_l1c.safe import list_products  # noqa: E402
from sentinel2_l1c.utils import atomic_write_text  # noqa: E402
from sentinel2_l1c.virtual_zarr import Manifest, VirtualStore  # noqa: E402

WAYS = ("prefixes", "whole tiles")


def without_prefixes(manifest: Manifest) -> Manifest:
    """The same references, each fetched whole (as from a manifest indexed before prefixes)."""
    references = {k: replace(r, prefixes=None) for k, r in manifest.references.items()}
    return Manifest(manifest.raw, references)


def cpu_seconds() -> tuple[float, float]:
    """CPU seconds used so far by this process and by the lab servers it started: on one
    machine they share the cores, which a remote S3 service would not."""

    def used(process: psutil.Process) -> float:
        times = process.cpu_times()
        return times.user + times.system

    me = psutil.Process()
    return used(me), sum(used(child) for child in me.children(recursive=True))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--lab", type=Path, default=Path("/tmp/layout-lab"))
    parser.add_argument("--patch-size", type=int, default=5100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--storage", choices=("s3", "cdse"), default="s3")
    parser.add_argument("--network", default="allas", help="network profile of the lab's S3")
    parser.add_argument("--cdse-network", default="cdse", help="network profile of CDSE")
    args = parser.parse_args()
    options = DemoOptions(lab=args.lab)
    safe = storages.NETWORK.path(lab_locations(args.lab), formats.SAFE)
    products = list_products(safe, options.tile, options.year) if safe.exists() else []
    if not products:
        parser.error(f"{args.lab} has no lab tile-year: run benchmarks/virtual_safe.py first")
    left, bottom, right, top = products[0].grid(10).bounds
    try:
        config = BenchmarkConfig(
            (args.storage,), ("safe_virtual",), args.repeats, options.tile, options.year,
            (left, top, right, bottom), patch_size=args.patch_size,
        )  # fmt: skip
        profiles = network.parse(args.network), network.parse(args.cdse_network)
    except ConfigError as error:
        parser.error(str(error))
    interrupt_on_sigterm()  # a kill stops the lab servers too
    with LocalCdse(
        args.lab, source_root(args.lab), network=profiles[0], cdse_network=profiles[1]
    ) as cdse:
        locations = cdse.locations(lab_locations(args.lab))
        found = catalogue(config, locations)
        loaders = {way: open_loader(args.storage, "safe_virtual", locations, found) for way in WAYS}
        whole = loaders["whole tiles"].store
        assert isinstance(whole, VirtualStore)
        whole.manifest = without_prefixes(whole.manifest)
        times: dict[str, list[float]] = {way: [] for way in WAYS}
        cpu: dict[str, list[list[float]]] = {way: [] for way in WAYS}
        try:
            for loader in loaders.values():
                loader.load(plan_patch(config, -1))
            for repeat in range(args.repeats):
                for way in WAYS if repeat % 2 == 0 else WAYS[::-1]:
                    begin, cpu_before = time.perf_counter(), cpu_seconds()
                    loaders[way].load(plan_patch(config, repeat))
                    times[way].append(time.perf_counter() - begin)
                    used = [
                        after - before
                        for after, before in zip(cpu_seconds(), cpu_before, strict=True)
                    ]
                    cpu[way].append(used)
                    print(
                        f"patch {repeat}: {way} {times[way][-1]:.2f} s; CPU: this process "
                        f"{used[0]:.2f} s, the lab's servers {used[1]:.2f} s",
                        flush=True,
                    )
        finally:
            for loader in loaders.values():
                loader.close()
    summary = {
        "storage": args.storage,
        "network": (profiles[0] if args.storage == "s3" else profiles[1]).describe(),
        "load_s": {way: statistics.mean(times[way]) for way in WAYS},
        "per_patch_s": times,
        "whole/prefixes": statistics.mean(times["whole tiles"])
        / statistics.mean(times["prefixes"]),
        "cpu_s_per_patch": {
            way: {
                "this process": statistics.mean(used[0] for used in cpu[way]),
                "lab servers (SeaweedFS, proxies)": statistics.mean(used[1] for used in cpu[way]),
            }
            for way in WAYS
        },
    }
    target = args.lab / "virtual-prefix.json"
    atomic_write_text(target, json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"summary: {target}")


if __name__ == "__main__":
    main()
