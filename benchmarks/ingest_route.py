"""Ingest against the route it replaces, on the lab: the same products of one tile and window
fetched from the lab's CDSE and put into sharded Zarr on the lab's S3, once as intake (SAFE
to a network-drive folder) → convert_safe_to_zarr (there) → publish_s3, once by ``ingest``
(straight to S3; its default append layout, and the route's layout). Each command runs as a
process, timed whole; prints the seconds of each and the ratios. Run it under the lab's
servers, which set the CDSE and S3 profiles and their network shaping:

    .venv/bin/python -m sentinel2_l1c.lab.serve --lab LAB --network allas --cdse-network cdse \\
        --drive-network folder -- .venv/bin/python benchmarks/ingest_route.py --work /tmp/route \\
        --tile 35VLH --time-start 2024-01-01T00:00:00Z --time-end 2025-01-01T00:00:00Z
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sentinel2_l1c import formats
from sentinel2_l1c.storage import storages

FMT = formats.ZARR_SHARDED


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", f"sentinel2_l1c.{argv[0]}", *argv[1:], "--quiet"], env=env, check=True)  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tile", default="35VLH")
    parser.add_argument("--time-start", required=True)
    parser.add_argument("--time-end", required=True)
    parser.add_argument("--tag", default=str(os.getpid()), help="Bucket name suffix.")
    args = parser.parse_args()
    drive = (
        Path(os.environ[storages.NETWORK.variables(formats.SAFE)[0]]).parent / f"route-{args.tag}"
    )
    temp = Path(os.environ[storages.TEMP.variables(formats.SAFE)[0]]).parent / f"ingest-{args.tag}"
    window = ["--time-start", args.time_start, "--time-end", args.time_end]
    env = {
        **os.environ,
        storages.NETWORK.variables(FMT)[0]: str(drive / "zarr"),
        storages.S3.variables(FMT)[0]: f"route-{args.tag}",
    }
    intake = ["intake_cdse_s3", "--tile", args.tile, *window, "--target", str(drive / "safe")]
    convert = ["convert_safe_to_zarr", "--format", FMT.name, "--source", str(drive / "safe")]
    route = {
        "intake": timed(intake, env),
        "convert": timed(convert, env),
        "publish": timed(["publish_s3", "--formats", FMT.name], env),
    }
    total = sum(route.values())
    print(" + ".join(f"{k} {v:.1f} s" for k, v in route.items()) + f" = {total:.1f} s", flush=True)
    for label, layout in (("append layout", []), ("route's layout", ["--layout", FMT.layout])):
        argv = ["ingest", "--tiles", args.tile, *window, "--format", FMT.name, *layout,
                "--target", f"s3://ingest-{args.tag}-{len(layout)}",
                "--source", str(temp / f"scratch-{len(layout)}")]  # fmt: skip
        seconds = timed(argv, env)
        print(f"ingest ({label}): {seconds:.1f} s, {seconds / total:.2f}× the route", flush=True)
    for folder in (drive, temp):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
