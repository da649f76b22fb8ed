"""Two ways of loading the same patches, A/B: what prefixes gain, and virtual against SAFE.

A ratio of two loads of one run moves with the patches drawn (SAFE's time varies with the
patch far more than the virtual Zarr's). This loads the same patches from the lab's S3 (or
CDSE) under a network profile both ways, alternating which goes first (the second load of a
patch is faster), and reports both means, the ratio of the means with a bootstrap interval
over the patches, the per-patch ratios and the CPU time this process and the lab's servers
used per patch. Ways: ``virtual`` (the virtual Zarr as indexed, fetching of each touched JP2
tile only the leading bytes the patch needs), ``virtual-whole`` (the same manifest with its
prefixes dropped: whole tiles), ``safe`` (the SAFE reader), ``safe_tlm``
(``safe_virtual@gdal_tlm``). Run ``virtual_safe.py`` first: it builds, indexes and publishes
the lab this reads; ``virtual_safe.py`` reports the bytes.

    .venv/bin/python benchmarks/virtual_ab.py --lab /tmp/layout-lab --ways virtual,safe --repeats 12
    .venv/bin/python benchmarks/virtual_ab.py --ways virtual,virtual-whole --network allas,mbps=15,total_mbps=15
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import formats
from sentinel2_l1c.bench.config import (
    BenchmarkConfig,
    Pair,
    plan_patch,
)
from sentinel2_l1c.bench.run import catalogue, open_loader
from sentinel2_l1c.demo import DemoOptions
from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.jp2.virtual_store import Manifest, VirtualStore
from sentinel2_l1c.lab import network
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations, source_root
from sentinel2_l1c.run.cli import interrupt_on_sigterm
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_write_text

BOOTSTRAP_SAMPLES = 2000


def without_prefixes(manifest: Manifest) -> Manifest:
    """The same references, each fetched whole (as from a manifest indexed before prefixes)."""
    references = {k: replace(r, prefixes=None) for k, r in manifest.references.items()}
    return Manifest(manifest.raw, references)


#: way → the format key it loads and what it makes of the manifest (virtual ways only)
WAYS = {
    "virtual": ("safe_virtual", None),
    "virtual-whole": ("safe_virtual", without_prefixes),
    "safe": ("safe", None),
    "safe_tlm": ("safe_virtual@gdal_tlm", None),
}


def two_ways(text: str) -> tuple[str, str]:
    """argparse ``type=`` of ``--ways``: two different known ways, comma-separated."""
    ways = tuple(text.split(","))
    if len(ways) != 2 or ways[0] == ways[1] or not set(ways) <= set(WAYS):
        raise argparse.ArgumentTypeError(f"two different ways of {', '.join(WAYS)}, as A,B")
    return ways[0], ways[1]


def ratio_interval(a: list[float], b: list[float], level: float = 0.9) -> tuple[float, float]:
    """Bootstrap interval of mean(b)/mean(a), resampling patches (a[i] and b[i] together)."""
    rng = random.Random(0)
    count = len(a)
    ratios = []
    for _ in range(BOOTSTRAP_SAMPLES):
        drawn = [rng.randrange(count) for _ in range(count)]
        ratios.append(sum(b[i] for i in drawn) / sum(a[i] for i in drawn))
    ratios.sort()
    tail = (1 - level) / 2
    return ratios[int(tail * len(ratios))], ratios[int((1 - tail) * len(ratios)) - 1]


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
    parser.add_argument("--repeats", type=int, default=3, help="patches, each loaded both ways")
    parser.add_argument(
        "--ways", type=two_ways, default=("virtual", "virtual-whole"), metavar="A,B",
        help=f"the two ways to compare, of {', '.join(WAYS)} (default: virtual,virtual-whole)",
    )  # fmt: skip
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
    if args.repeats < 2:
        parser.error("--repeats must be at least 2 (patches to compare)")
    ways = args.ways
    try:
        config = BenchmarkConfig(
            (args.storage,), tuple(WAYS[way][0] for way in ways), args.repeats,
            options.tile, options.year, (left, top, right, bottom), patch_size=args.patch_size,
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
        loaders = {
            way: open_loader(Pair.parse(args.storage, WAYS[way][0]), locations, found)
            for way in ways
        }
        for way in ways:
            rewrite = WAYS[way][1]
            if rewrite is not None:
                store = loaders[way].store
                assert isinstance(store, VirtualStore)
                store.manifest = rewrite(store.manifest)
        times: dict[str, list[float]] = {way: [] for way in ways}
        cpu: dict[str, list[list[float]]] = {way: [] for way in ways}
        try:
            for loader in loaders.values():
                loader.load(plan_patch(config, -1))
            for repeat in range(args.repeats):
                for way in ways if repeat % 2 == 0 else ways[::-1]:
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
    a, b = ways
    low, high = ratio_interval(times[a], times[b])
    summary = {
        "storage": args.storage,
        "network": (profiles[0] if args.storage == "s3" else profiles[1]).describe(),
        "patches": args.repeats,
        "load_s": {way: statistics.mean(times[way]) for way in ways},
        "per_patch_s": times,
        f"{b}/{a}": statistics.mean(times[b]) / statistics.mean(times[a]),
        f"{b}/{a} 90% bootstrap interval": [low, high],
        f"{b}/{a} per patch": [tb / ta for ta, tb in zip(times[a], times[b], strict=True)],
        "cpu_s_per_patch": {
            way: {
                "this process": statistics.mean(used[0] for used in cpu[way]),
                "lab servers (SeaweedFS, proxies)": statistics.mean(used[1] for used in cpu[way]),
            }
            for way in ways
        },
    }
    target = args.lab / f"virtual-ab-{a}-{b}.json"
    atomic_write_text(target, json.dumps(summary, indent=1))
    print(json.dumps(summary, indent=1))
    print(f"summary: {target}")


if __name__ == "__main__":
    main()
