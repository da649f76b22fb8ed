"""STAC for what the tool makes: the COG format's catalogue (valid STAC, extension fields that
say what the files are, relative links that pystac walks, reruns that write only what is
missing, odc-stac refusing in one line without it) and the Zarr formats' Collections (an Item
per band group whose datacube fields are the group's own arrays)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pystac
import pystac.validation
import pystac_client
import pytest
import rasterio
import requests
import zarr
from pystac.extensions.datacube import DatacubeExtension
from pystac.extensions.eo import EOExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension

from sentinel2_l1c import formats
from sentinel2_l1c.bench.config import Pair
from sentinel2_l1c.bench.run import open_loader
from sentinel2_l1c.errors import ConfigError, InputDataError
from sentinel2_l1c.formats import cog_stac, zarr_stac
from sentinel2_l1c.formats.odc_stac_reader import OdcStacReader
from sentinel2_l1c.lab.layout import lab_locations
from sentinel2_l1c.lab.stac_api import StacApi
from sentinel2_l1c.loaders.base import Catalogue, Patch, checksum
from sentinel2_l1c.s2.bands import BAND_GROUPS
from sentinel2_l1c.s2.listing import list_products
from sentinel2_l1c.storage.places import FolderPlace
from tests.helpers import storage

pytestmark = pytest.mark.lab


def test_every_document_is_valid_stac_and_says_what_its_files_are(network_lab: Path) -> None:
    root = storage(network_lab, "network", "cog")
    products = list_products(storage(network_lab, "network", "safe"))
    catalog = pystac.Catalog.from_file(str(root / cog_stac.ROOT))
    items = list(catalog.get_items(recursive=True))
    assert sorted(item.id for item in items) == sorted(p.product_id for p in products)
    documents = [root / cog_stac.ROOT, *root.glob(f"*/*/{cog_stac.ROOT}")]
    for path in documents:
        assert pystac.validation.validate_dict(json.loads(path.read_text()), extensions=[])
    by_id = {product.product_id: product for product in products}
    for item in items:
        # the core schema offline; the extensions' schemas are not reachable here, so their
        # fields are read back through pystac's extension classes and checked against the files
        assert pystac.validation.validate_dict(item.to_dict(), extensions=[])
        assert set(item.stac_extensions) == {cog_stac.PROJECTION, cog_stac.RASTER, cog_stac.EO}  # fmt: skip
        product = by_id[item.id]
        assert item.datetime == product.start_time
        for group in BAND_GROUPS:
            asset = item.assets[group.name]
            path = Path(asset.get_absolute_href())
            with rasterio.open(path) as cog:
                projection = ProjectionExtension.ext(asset)
                assert projection.code == product.crs == cog.crs.to_string()
                assert projection.shape == [cog.height, cog.width]
                assert projection.transform == list(cog.transform)[:6]
                raster = RasterExtension.ext(asset).bands
                assert raster is not None and len(raster) == cog.count
                assert {(b.data_type, b.nodata) for b in raster} == {("uint16", cog.nodata)}
                assert [b.name for b in EOExtension.ext(asset).bands or []] == list(group.bands)
                assert list(cog.descriptions) == list(group.bands)


def test_a_rerun_writes_only_missing_items_and_odc_stac_needs_the_catalogue(
    network_lab: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "cog"
    shutil.copytree(storage(network_lab, "network", "cog"), root)
    products = list_products(storage(network_lab, "network", "safe"), "35VLH", 2024)
    assert cog_stac.write_catalogue(root, products) == 0
    (root / cog_stac.item_name(products[0])).unlink()
    assert cog_stac.write_catalogue(root, products) == 1
    catalogue = Catalogue("35VLH", 2024, tuple(products))
    monkeypatch.chdir(tmp_path)  # a relative place, as the lab's settings are
    loader = OdcStacReader().open(FolderPlace(Path("cog")), catalogue, "convert_safe_to_cog")
    left, _, _, top = products[0].grid(10).bounds
    patch = Patch(left + 600, top - 1200, 1200)
    pixels = loader.load(patch)
    reference = open_loader(Pair.parse("network", "cog"), lab_locations(network_lab), catalogue)
    assert checksum(pixels) == checksum(reference.load(patch))
    assert pixels[BAND_GROUPS[0].name].shape == (len(products), 4, 120, 120)
    (root / cog_stac.tile_year_catalogue("35VLH", 2024)).unlink()
    with pytest.raises(InputDataError, match="no STAC catalogue 35VLH/2024/catalog.json: run"):
        OdcStacReader().open(FolderPlace(Path("cog")), catalogue, formats.COG.step)


def test_odc_stac_reads_safe_through_the_archives_items_and_refuses_without_them(
    network_lab: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``safe@odc-stac`` searches the STAC API the products were found in, moves the Items'
    ``s3://eodata`` hrefs to the place's copy and reads the default reader's pixels; without
    an API, or with a product the API does not know, it says so in one line."""
    safe = storage(network_lab, "network", "safe")
    products = tuple(list_products(safe, "35VLH", 2024))
    reader = formats.variant("safe@odc-stac").reader
    left, _, _, top = products[0].grid(10).bounds
    patch = Patch(left + 600, top - 1200, 1200)
    monkeypatch.chdir(network_lab)  # a relative place, as the lab's settings are
    place = FolderPlace(safe.relative_to(network_lab))
    with StacApi.from_products(products) as api:
        catalogue = Catalogue("35VLH", 2024, products, stac_url=api.url)
        pixels = reader.open(place, catalogue, "intake").load(patch)
        reference = open_loader(
            Pair.parse("network", "safe"), lab_locations(network_lab), catalogue
        )
        assert checksum(pixels) == checksum(reference.load(patch))
    with StacApi.from_products(products[1:]) as api:
        catalogue = Catalogue("35VLH", 2024, products, stac_url=api.url)
        with pytest.raises(InputDataError, match=f"no STAC Item of {products[0].product_id}"):
            reader.open(place, catalogue, "intake")
    with pytest.raises(ConfigError, match="no STAC API .*: set DSLAB_S2L1C_STAC_URL"):
        reader.open(place, Catalogue("35VLH", 2024, products), "intake")


@pytest.mark.parametrize("name", ["zarr", "zarr_sharded", "icechunk"])
def test_a_zarr_store_has_a_collection_whose_items_describe_each_cube(
    network_lab: Path, name: str
) -> None:
    """Valid STAC; each Item's datacube and projection fields are the group's own arrays."""
    fmt = formats.get(name)
    root = storage(network_lab, "network", name)
    collection = pystac.Collection.from_file(str(root / zarr_stac.COLLECTION))
    assert pystac.validation.validate_dict(collection.to_dict(), extensions=[])
    assert Path(collection.assets["store"].get_absolute_href()) == root
    items = {item.id: item for item in collection.get_items()}
    place = FolderPlace(root)
    zarr_python = fmt.reader("icechunk" if fmt.transactional else "zarr-python")
    loader = zarr_python.open(place, Catalogue("35VLH", 2024, ()), "test")
    try:
        for group in BAND_GROUPS:
            item = items.pop(f"35VLH-2024-{group.name}")
            assert pystac.validation.validate_dict(item.to_dict(), extensions=[])
            assert set(item.stac_extensions) == {zarr_stac.DATACUBE, zarr_stac.PROJECTION}
            cube = DatacubeExtension.ext(item)
            arrays = zarr.open_group(loader.store, mode="r")[f"35VLH/2024/{group.name}"]
            times = [str(t)[:23] for t in np.asarray(arrays["time"][:]).astype("datetime64[ms]")]
            assert [v[:23] for v in cube.dimensions["time"].values] == times
            assert cube.dimensions["band"].values == list(group.bands) == list(arrays["band"][:])
            x, y = np.asarray(arrays["x"][:]), np.asarray(arrays["y"][:])
            half = group.resolution / 2
            assert cube.dimensions["x"].extent == [x[0] - half, x[-1] + half]
            assert cube.dimensions["y"].extent == [y[-1] - half, y[0] + half]
            assert cube.dimensions["x"].step == group.resolution == -cube.dimensions["y"].step
            assert cube.variables["data"].dimensions == ["time", "band", "y", "x"]
            projection = ProjectionExtension.ext(item)
            assert projection.shape == [len(y), len(x)] == list(arrays["data"].shape[2:])
            assert projection.code == "EPSG:32635"
            href = Path(item.assets["data"].get_absolute_href())
            assert href == (root if fmt.transactional else root / "35VLH" / "2024" / group.name)
    finally:
        loader.close()
    assert items == {}


def test_the_lab_stac_api_serves_the_tools_own_catalogues(network_lab: Path) -> None:
    """Beside the CDSE-like collection: each format's STAC, walked over HTTP by pystac."""
    folders = {name: storage(network_lab, "network", name) for name in ("cog", "zarr_sharded")}
    folders["zarr"] = network_lab / "nothing-written-yet"
    products = list_products(storage(network_lab, "network", "safe"))
    with StacApi.from_products(products[:1], catalogues=folders) as api:
        client = pystac_client.Client.open(api.url)
        children = {link.href for link in client.get_links("child")}
        cog_root = f"{api.url}/catalogues/cog/{cog_stac.ROOT}"
        zarr_root = f"{api.url}/catalogues/zarr_sharded/{zarr_stac.COLLECTION}"
        assert {cog_root, zarr_root} <= children and not any("/zarr/" in c for c in children)
        cog_items = list(pystac.Catalog.from_file(cog_root).get_items(recursive=True))
        assert sorted(item.id for item in cog_items) == sorted(p.product_id for p in products)
        assert cog_items[0].assets["B02_B03_B04_B08"].get_absolute_href().startswith(api.url)
        collection = pystac.Collection.from_file(zarr_root)
        assert len(list(collection.get_items())) == len(BAND_GROUPS)
        for wrong in ("catalogues/cog/../zarr.json", "catalogues/cog/35VLH", "catalogues/x/a.json"):
            answer = requests.get(f"{api.url}/{wrong}", timeout=10)
            assert answer.status_code == 404, wrong
