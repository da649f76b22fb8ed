"""A stored chunk whose bytes changed (same size) is an error naming the chunk, never other
pixels, in stores written with checksums (``NAME_crc32c`` layouts): every Zarr format,
through every reader, on network, temp and S3."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from sentinel2_l1c import convert_safe_to_zarr, formats, publish_s3, stage, zip_zarr
from sentinel2_l1c.bench.config import Pair
from sentinel2_l1c.bench.run import open_loader
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions
from sentinel2_l1c.cube import layouts as zarr_layouts
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.loaders.base import CORRUPTED, Catalogue, Patch
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from tests.helpers import PATCH, storage, variable

ZARR_FORMATS = ("zarr", "zarr_sharded", "zipzarr", "icechunk")
KEYS = [  # every reader of stored chunks (a coverage service's is tested on its own)
    formats.get(name).key(reader)
    for name in ZARR_FORMATS
    for reader in formats.get(name).readers
    if not reader.asks_service
]


def flip_middle_byte(path: Path, offset: int = 0, size: int | None = None) -> None:
    """Change one byte in the middle of ``size`` bytes from ``offset`` (the whole file)."""
    size = path.stat().st_size - offset if size is None else size
    with open(path, "r+b") as file:
        file.seek(offset + size // 2)
        byte = file.read(1)
        file.seek(offset + size // 2)
        file.write(bytes([byte[0] ^ 0x5A]))


def corrupt(fmt: str, place: Path) -> int:
    """Change one byte of every data chunk object of a store on a folder; how many."""
    if fmt == "zipzarr":
        with zipfile.ZipFile(place) as archive:
            members = [m for m in archive.infolist() if "/data/c/" in m.filename]
        with open(place, "rb") as file:
            for member in members:  # the data start after the local header and its extra
                file.seek(member.header_offset + 26)
                lengths = file.read(4)
                start = member.header_offset + 30 + int.from_bytes(lengths[:2], "little")
                start += int.from_bytes(lengths[2:], "little")
                flip_middle_byte(place, start, member.compress_size)
        return len(members)
    chunks = place / "chunks" if fmt == "icechunk" else place
    found = [
        p
        for p in chunks.rglob("*")
        if p.is_file() and ("/data/c/" in p.as_posix() or fmt == "icechunk")
    ]
    for path in found:
        flip_middle_byte(path)
    return len(found)


@pytest.fixture(scope="module")
def corrupted(network_lab: Path, local_cdse: LocalCdse, tmp_path_factory: pytest.TempPathFactory) -> Path:  # fmt: skip
    """The lab's SAFE in every Zarr format with checksums, every data chunk then changed on
    the network drive, staged to temp and published to buckets of their own."""
    lab = tmp_path_factory.mktemp("corrupted")
    safe = storage(lab, "network", "safe")
    shutil.copytree(storage(network_lab, "network", "safe"), safe)
    for fmt in ("zarr", "zarr_sharded", "icechunk"):
        layout = zarr_layouts.get(f"{formats.get(fmt).layout}{zarr_layouts.WITH_CHECKSUM}")
        options = ZarrOptions(safe, storage(lab, "network", fmt), formats.get(fmt), layout)
        convert_safe_to_zarr.convert(options, show_progress=False)
    zip_zarr.zip_store(storage(lab, "network", "zarr"), storage(lab, "network", "zipzarr"), False)
    for fmt in ZARR_FORMATS:
        assert corrupt(fmt, storage(lab, "network", fmt)) > 0
    copies = tuple(("network", fmt) for fmt in ZARR_FORMATS)
    stage.stage(stage.StageOptions(copies=copies), lab_locations(lab), lab / "logs", False)
    return lab


def test_a_changed_chunk_is_named_on_every_storage_and_reader(
    corrupted: Path, local_cdse: LocalCdse
) -> None:
    buckets = {variable("s3", fmt): f"corrupted-{fmt.replace('_', '-')}" for fmt in ZARR_FORMATS}
    locations = local_cdse.locations(lab_locations(corrupted)).with_settings(buckets)
    options = publish_s3.PublishOptions(formats=ZARR_FORMATS)
    publish_s3.publish(options, locations, corrupted / "logs", show_progress=False)
    products = list_products(storage(corrupted, "network", "safe"), "35VLH", 2024)
    found = Catalogue("35VLH", 2024, tuple(products))
    for storage_name in ("network", "temp", "s3"):
        for key in KEYS:
            pair = Pair(storages.get(storage_name), formats.variant(key))
            loader = open_loader(pair, locations, found)
            corner = next(iter(loader.origins.values()))
            try:
                with pytest.raises(InputDataError) as raised:
                    loader.load(Patch(corner[0], corner[1], PATCH))
            finally:
                loader.close()
            message = str(raised.value)
            assert "\n" not in message and CORRUPTED in message, (storage_name, key, message)
            assert "chunk" in message and "write it again" in message, message
            assert storage_name != "s3" or "s3://corrupted-" in message, message
        ideal = open_loader(Pair(storages.get(storage_name), formats.variant("zarr@obstore"), True), locations, found)  # fmt: skip
        with pytest.raises(InputDataError, match=f"chunk .*/data/c/.* {CORRUPTED}"):
            ideal.load(Patch(*next(iter(ideal.zarr.origins.values())), PATCH))
        ideal.close()
