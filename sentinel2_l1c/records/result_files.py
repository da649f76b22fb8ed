"""Results files: a new one per run, named by its start time and never another run's, and
what every one records about where it was measured (host, CPUs, versions, network)."""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import os
import platform
import socket
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.storage.files import fsync_file, temp_sibling


def read_json(path: Path) -> dict:
    """A results file; a missing or malformed one is an InputDataError naming it."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except json.JSONDecodeError as err:
        raise InputDataError(f"{path}: not JSON ({err})") from None


def new_result_file(folder: Path, prefix: str, started: datetime, text: str) -> Path:
    """``{folder}/{prefix}_YYYY-MM-DD_HH-MM-SS.json`` holding ``text``, created whole and
    exclusively: a second run started in the same second gets ``…_2.json``, never the first
    run's file. (Written under a temporary name, then hard-linked to the first free name.)"""
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}_{started:%Y-%m-%d_%H-%M-%S}"
    temp = temp_sibling(folder / f"{stem}.json")
    try:
        temp.write_text(text)
        fsync_file(temp)
        for number in itertools.count(1):
            target = folder / (f"{stem}.json" if number == 1 else f"{stem}_{number}.json")
            try:
                os.link(temp, target)
                return target
            except FileExistsError:
                continue
    finally:
        temp.unlink(missing_ok=True)
    raise AssertionError("unreachable")


def run_environment(network: dict[str, str] | None = None) -> dict[str, Any]:
    """Where a measurement was taken: host, CPUs, platform, Python and library versions, and
    the lab's network profiles (``Locations.network``; None: a real network)."""
    import rasterio

    versions = {}
    for package in ("numpy", "zarr", "rasterio", "xarray", "s3fs", "boto3"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    versions["gdal"] = rasterio.__gdal_version__
    return {
        "host": socket.gethostname(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": versions,
        "network": network,
    }
