"""Bytes one appended date writes, per format and layout: a tile-year of N dates converted into
a folder, then date N+1 appended by the same converter ``ingest`` runs; the objects the append
created or rewrote (new, or changed size or modification time) against the new date's own
compressed size (the store's data bytes over its dates, before the append). A time chunk of T rewrites its chunk
(or shard) with every date it gains, so the ratio depends on where N falls in the chunk: the
mean over a year is about (T + 1) / 2 at each resolution.

    .venv/bin/python benchmarks/append_cost.py --safe LAB/network/sentinel2_l1c_safe --dates 6 \\
        --candidates zarr:first_version zarr_sharded:chunks_128 zarr_sharded:chunks_128_append \\
        icechunk:chunks_128_append
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import formats
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions, convert
from sentinel2_l1c.cube import layouts
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage.places import FolderPlace


def link(products: list, root: Path) -> None:
    for product in products:
        target = root / product.name.cdse_path
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(product.path.resolve())


def files(store: Path) -> dict[str, tuple[int, int]]:
    return {
        name: (stat.st_size, stat.st_mtime_ns) for name, stat in FolderPlace(store).stats().items()
    }


def data_bytes(found: dict[str, tuple[int, int]]) -> int:
    """Bytes of pixel objects: Zarr's ``…/data/c/…``, icechunk's ``chunks/``."""
    return sum(size for name, (size, _) in found.items() if "/data/c/" in name or name.startswith("chunks/"))  # fmt: skip


def measure(candidate: str, products: list, dates: int, work: Path) -> dict:
    name, _, layout_name = candidate.partition(":")
    fmt = formats.get(name)
    layout = layouts.get(layout_name or fmt.layout)
    safe, store = work / f"{candidate}-safe", work / candidate.replace(":", "-")
    link(products[:dates], safe)
    convert(ZarrOptions(safe, store, fmt, layout), show_progress=False)
    before = files(store)
    link(products[: dates + 1], safe)
    started = time.perf_counter()
    convert(ZarrOptions(safe, store, fmt, layout), show_progress=False)
    seconds = time.perf_counter() - started
    after = files(store)
    written = {n: s for n, s in after.items() if before.get(n) != s}
    per_date = data_bytes(before) / dates  # before: icechunk keeps replaced chunks after
    size = sum(s for s, _ in written.values())
    return {
        "candidate": f"{fmt.name}:{layout.name}",
        "objects": len(written),
        "written_mb": size / 1e6,
        "date_mb": per_date / 1e6,
        "ratio": size / per_date,
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--safe", type=Path, required=True, help="SAFE root of one tile-year.")
    parser.add_argument("--dates", type=int, default=6, help="Dates before the appended one.")
    parser.add_argument("--candidates", nargs="+", default=["zarr_sharded:chunks_128", "zarr_sharded:chunks_128_append"])  # fmt: skip
    parser.add_argument("--work", type=Path, default=None, help="Scratch folder (default: a temporary one).")  # fmt: skip
    args = parser.parse_args()
    products = list_products(args.safe)
    if len(products) <= args.dates:
        parser.error(f"{args.safe} has {len(products)} products; --dates must be fewer")
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        print(
            "candidate                               objects  written MB  date MB  ratio  append s"
        )
        for candidate in args.candidates:
            row = measure(candidate, products, args.dates, Path(work))
            print(
                f"{row['candidate']:<40}{row['objects']:>7}{row['written_mb']:>12.1f}"
                f"{row['date_mb']:>9.1f}{row['ratio']:>7.2f}{row['seconds']:>10.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
