"""Pack a Zarr store into one ZIP_STORED archive (ZIP64 when sizes or counts need it).

One object instead of thousands suits object stores with object-count quotas; stored (not
deflated) entries can be read by byte range. The archive is written under a temporary name
and renamed when complete. Its comment records a fingerprint of the store (paths, sizes,
modification times), so a rerun on an unchanged store does nothing. Only complete stores
are zipped. Readable by Info-ZIP ``unzip``, zarr's ``ZipStore``, xarray and ``async_zipfs``.

    python -m sentinel2_l1c.zip_zarr [--source STORE] [--target FILE.zip]
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import time
import zipfile
from pathlib import Path

import zarr

from sentinel2_l1c import formats
from sentinel2_l1c.cube.protocol import is_complete
from sentinel2_l1c.cube.schema import listing_groups
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.run.cli import new_parser, run_cli
from sentinel2_l1c.run.progress import progress_bar
from sentinel2_l1c.storage import storages
from sentinel2_l1c.storage.files import atomic_output
from sentinel2_l1c.storage.locations import Locations

COMMENT_PREFIX = b"dslab-zarr-fingerprint:"
COPY_BUFFER = 8 << 20


def store_files(store: Path) -> list[Path]:
    """The store's files in a stable order (temporary files of interrupted writes excluded)."""
    return sorted(p for p in store.rglob("*") if p.is_file() and not p.name.endswith(".partial"))


def fingerprint(store: Path, files: list[Path]) -> bytes:
    digest = hashlib.sha256()
    for path in files:
        stat = path.stat()
        digest.update(
            f"{path.relative_to(store).as_posix()}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode()
        )
    return COMMENT_PREFIX + digest.hexdigest().encode()


def incomplete_groups(store: Path) -> list[str]:
    """Band groups (the leaves of the tree of groups) whose conversion has not finished,
    including those whose creation was interrupted before their arrays existed."""
    root = zarr.open_group(str(store), mode="r", zarr_format=3)
    with listing_groups():
        return _incomplete(root, "")


def _incomplete(group: zarr.Group, path: str) -> list[str]:
    children = list(group.groups())
    if not children:
        return [] if is_complete(group) else [path or "/"]
    found = []
    for name, child in children:
        found += _incomplete(child, f"{path}/{name}".lstrip("/"))
    return found


def zip_store(source: Path, target: Path, show_progress: bool = True) -> str:
    """Write ``target`` from the Zarr store ``source``; returns a summary line."""
    if not (source / "zarr.json").is_file():
        raise InputDataError(
            f"{source} is not a Zarr v3 store (no zarr.json): run convert_safe_to_zarr first"
        )
    pending = incomplete_groups(source)
    if pending:
        raise InputDataError(
            f"{source}: conversion of {', '.join(pending)} is not complete: rerun convert_safe_to_zarr"
        )
    files = store_files(source)
    stamp = fingerprint(source, files)
    if target.is_file():
        try:
            with zipfile.ZipFile(target) as existing:
                if existing.comment == stamp:
                    return f"{target}: up to date ({len(files)} entries)"
        except zipfile.BadZipFile:
            pass  # replaced below
    started = time.perf_counter()
    total = sum(path.stat().st_size for path in files)
    with atomic_output(target) as temp, progress_bar(len(files), "entries", show_progress) as bar:
        with zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            archive.comment = stamp
            for number, path in enumerate(files, 1):
                info = zipfile.ZipInfo.from_file(path, path.relative_to(source).as_posix())
                info.compress_type = zipfile.ZIP_STORED
                with (
                    open(path, "rb") as reader,
                    archive.open(
                        info, "w", force_zip64=info.file_size >= zipfile.ZIP64_LIMIT
                    ) as writer,
                ):
                    shutil.copyfileobj(reader, writer, COPY_BUFFER)
                bar.update(number)
    return (
        f"{target}: {len(files)} entries, {total / 1e6:.0f} MB stored in "
        f"{time.perf_counter() - started:.1f} s"
    )


def make(fmt: formats.Format, source: Path, target: Path, show_progress: bool) -> list[str]:
    """The format registry's hook: pack the Zarr store ``source`` into the archive ``target``."""
    return [zip_store(source, target, show_progress)]


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(
        "Pack a Zarr store into one uncompressed (ZIP_STORED) zip archive.",
        prog="python -m sentinel2_l1c.zip_zarr",
    )
    parser.add_argument(
        "--source",
        type=Path,
        default=None,
        help="Zarr store (default: $DSLAB_S2L1C_NETWORK_ZARR_PATH).",
    )
    parser.add_argument(
        "--target",
        type=Path,
        default=None,
        help="Zip file (default: $DSLAB_S2L1C_NETWORK_ZIPZARR_PATH).",
    )
    return parser


def _run(args: argparse.Namespace) -> int:
    locations = Locations.from_environment()
    source = args.source or storages.NETWORK.path(locations, formats.ZARR)
    target = args.target or storages.NETWORK.path(locations, formats.ZIPZARR)
    print(zip_store(source, target, show_progress=not args.quiet))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_cli(build_parser(), argv, _run)


if __name__ == "__main__":
    raise SystemExit(main())
