"""The SAFE archive as a virtual Zarr: both readers load the Zarr format's pixels on every
storage, and the store fetches only the packets a window needs.

On products whose band files have several JP2 tiles (scale 6: 2×2 tiles at every
resolution, edge tiles smaller), with and without TLM markers.
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow
import pyarrow.parquet
import pytest
import rasterio
import zarr
from obstore.store import LocalStore
from zarr.abc.store import ByteRequest
from zarr.core.buffer import default_buffer_prototype

from sentinel2_l1c import formats, index_safe, publish_s3
from sentinel2_l1c.bench.config import Pair
from sentinel2_l1c.bench.run import open_loader
from sentinel2_l1c.convert_safe_to_zarr import ZarrOptions, convert
from sentinel2_l1c.demo import make_format
from sentinel2_l1c.errors import InputDataError
from sentinel2_l1c.formats.safe import band_files
from sentinel2_l1c.jp2.virtual_store import Manifest, Reference, VirtualStore
from sentinel2_l1c.lab.cdse import LocalCdse
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.loaders.base import Catalogue, Patch, checksum
from sentinel2_l1c.loaders.zarr_arrays import ZarrLoader
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage import storages
from tests.helpers import YEAR, index_root, read_manifest


def test_virtual_zarr_and_tlm_reads_equal_the_zarr_format_on_every_storage(
    tiled: dict[bool, Path], local_cdse: LocalCdse, tmp_path: Path
) -> None:
    """Metadata, coordinates and patches crossing tile edges, with and without TLM markers
    in the files, on the network drive and S3."""
    lab = tmp_path / "lab"
    locations = local_cdse.locations(lab_locations(lab))
    suffix = tmp_path.name[-12:].lower().replace("_", "-")
    locations = locations.with_settings(
        {storages.S3.variables(formats.get(name))[0]: f"v-{suffix}-{name.replace('_', '-')}"
         for name in ("safe", "safe_virtual")}
    )  # fmt: skip
    network = storages.NETWORK
    safe_root = network.path(locations, formats.SAFE)
    for root in tiled.values():
        shutil.copytree(root, safe_root, dirs_exist_ok=True)
    convert(ZarrOptions(safe_root, network.path(locations, formats.ZARR)), show_progress=False)
    make_format(
        formats.SAFE_VIRTUAL, safe_root, network.path(locations, formats.SAFE_VIRTUAL), False
    )
    publish_s3.publish(
        publish_s3.PublishOptions(("safe", "safe_virtual")), locations, lab / "logs", False
    )
    for year in YEAR.values():
        products = tuple(list_products(safe_root, "35VLH", year))
        catalogue = Catalogue("35VLH", year, products)
        reference = open_loader(Pair.parse("network", "zarr@zarr-python"), locations, catalogue)
        assert isinstance(reference, ZarrLoader)
        left, top = (float(products[0].grid(10).bounds[i]) for i in (0, 3))
        patches = [Patch(left + x, top - y, 2400) for x, y in ((0, 0), (9000, 9000), (15900, 4200))]
        expected = [checksum(reference.load(patch)) for patch in patches]
        virtual = open_loader(Pair.parse("network", "safe_virtual"), locations, catalogue)
        assert isinstance(virtual, ZarrLoader) and virtual.layout == index_safe.LAYOUT
        for group in BAND_GROUPS:
            got, want = virtual.arrays[group.name], reference.arrays[group.name]
            assert got.shape == want.shape and got.dtype == want.dtype
            for name in ("time", "product_id", "band", "x", "y"):
                node = f"35VLH/{year}/{group.name}/{name}"
                assert np.array_equal(zarr.open_array(virtual.store, path=node)[:],
                                      zarr.open_array(reference.store, path=node)[:])  # fmt: skip
        virtual.close()
        reference.close()
        for storage in ("network", "s3"):
            for key in ("safe_virtual", "safe_virtual@gdal_tlm"):
                loader = open_loader(Pair.parse(storage, key), locations, catalogue)
                try:
                    assert [checksum(loader.load(p)) for p in patches] == expected, (year, key)
                finally:
                    loader.close()

    # a band file changed since it was indexed (same size): one line naming it, on the
    # drive by its modification time, on S3 by its ETag, never other pixels
    year = YEAR[False]
    catalogue = Catalogue("35VLH", year, tuple(list_products(safe_root, "35VLH", year)))
    name = band_files(catalogue.products[0], BAND_GROUPS[0])[0]
    changed = bytearray((safe_root / name).read_bytes())
    changed[-len(changed) // 3] ^= 0xFF
    (safe_root / name).write_bytes(bytes(changed))
    client = local_cdse.store.client(local_cdse.storage_user)
    client.put_object(Bucket=f"v-{suffix}-safe", Key=name, Body=bytes(changed))
    for storage, why in (("network", "modified"), ("s3", "ETag")):
        for key in ("safe_virtual", "safe_virtual@gdal_tlm"):
            with pytest.raises(InputDataError) as raised:
                loader = open_loader(Pair.parse(storage, key), locations, catalogue)
                try:
                    loader.load(patches[0])
                finally:
                    loader.close()
            message = str(raised.value)
            assert f"/{name}: changed since it was indexed ({why}" in message, message
            assert "index_safe --overwrite" in message and "\n" not in message


def test_the_manifest_keeps_where_packets_end_and_the_store_fetches_only_those(
    tiled: dict[bool, Path], tmp_path: Path
) -> None:
    """Walked tiles carry ``Prefixes`` through the Parquet manifest; TLM-indexed ones do not
    (their tile-part headers are never read); a manifest from before the column still reads;
    ``get_area`` fetches the prefix an area needs, all of a tile without a table."""
    for tlm, root in tiled.items():
        index_root(root, tmp_path / f"v{tlm}")
        manifest = read_manifest(tmp_path / f"v{tlm}", YEAR[tlm])
        assert all((r.prefixes is None) == tlm for r in manifest.references.values())
    root, manifest = tiled[False], read_manifest(tmp_path / "vFalse")
    older = manifest.table().drop_columns(["prefixes"])
    sink = pyarrow.BufferOutputStream()
    pyarrow.parquet.write_table(older, sink)
    assert Manifest.from_bytes(sink.getvalue().to_pybytes()).references == {
        key: replace(reference, prefixes=None) for key, reference in manifest.references.items()
    }
    store, prototype = VirtualStore(manifest, LocalStore(root)), default_buffer_prototype()
    key = "35VLH/2024/B02_B03_B04_B08/data/c/0/0/0/0"  # the first date's B02, top left tile
    reference = manifest.references[key]
    assert reference.prefixes is not None and reference.prefixes.row_edges == (256, 512, 768)
    top = asyncio.run(store.get_area(key, prototype, (0, 10), (0, 10)))
    assert len(top) == reference.prefixes.ends[0] < reference.size
    whole = asyncio.run(store.get(key, prototype))
    assert top.to_bytes() == whole.to_bytes()[: len(top)] and len(whole) == reference.size
    bare = VirtualStore(
        Manifest(manifest.raw, {key: replace(reference, prefixes=None)}), store.files
    )
    assert len(asyncio.run(bare.get_area(key, prototype, (0, 10), (0, 10)))) == reference.size

    lengths = []

    class Counting(VirtualStore):
        async def _read(self, reference: Reference, byte_range: ByteRequest | None) -> bytes:
            data = await super()._read(reference, byte_range)
            lengths.append(len(data))
            return data

    group = zarr.open_group(Counting(manifest, LocalStore(root)), mode="r", zarr_format=3)
    corner = group["35VLH/2024/B02_B03_B04_B08/data"][0, 0, :10, :10]  # through zarr's codec
    with rasterio.open(root / reference.path) as dataset:
        assert np.array_equal(corner, dataset.read(1, window=((0, 10), (0, 10))))
    assert lengths == [reference.prefixes.ends[0]], "one read, of the top left precinct's prefix"
