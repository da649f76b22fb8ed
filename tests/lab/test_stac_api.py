"""lab.stac_api: the real pystac-client searches it as it would search CDSE."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pystac.validation
import pytest
import rasterio
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac_client import Client

from sentinel2_l1c.lab.stac_api import BadRequest, StacApi, parse_cql2_json, parse_cql2_text
from sentinel2_l1c.s2.listing import safe_folders
from sentinel2_l1c.s2.product import SafeProduct
from tests.helpers import Archive

TILE_FILTER = {"op": "=", "args": [{"property": "grid:code"}, "MGRS-35VLH"]}


@pytest.fixture(scope="module")
def api(archive: Archive) -> Iterator[StacApi]:
    with StacApi.from_products(
        SafeProduct.from_path(f) for f in safe_folders(archive.root)
    ) as server:
        yield server


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize(
    "flt,lang", [(TILE_FILTER, "cql2-json"), ("grid:code = 'MGRS-35VLH'", "cql2-text")]
)
@pytest.mark.lab
def test_search_pages_through_everything(
    api: StacApi, archive: Archive, method: str, flt: object, lang: str
) -> None:
    client = Client.open(api.url)
    search = client.search(
        collections=["sentinel-2-l1c"], filter=flt, filter_lang=lang, limit=4, method=method,
        datetime="2024-05-01T00:00:00Z/2024-07-01T00:00:00Z",
    )  # fmt: skip
    ids = [item["id"] for item in search.items_as_dicts()]
    assert len(ids) == len(archive.acquisitions) > 4  # several pages, duplicates included
    assert ids == sorted(ids, key=lambda i: (i.split("_")[2], i))
    assert ids == [a.safe_name.name.removesuffix(".SAFE") for a in archive.acquisitions]


@pytest.mark.lab
def test_items_are_shaped_like_cdse(api: StacApi, archive: Archive) -> None:
    item = next(Client.open(api.url).search(collections=["sentinel-2-l1c"], max_items=1).items())
    acquisition = archive.acquisitions[0]
    assert item.id == acquisition.safe_name.name.removesuffix(".SAFE")
    assert item.datetime == acquisition.datatake_start
    assert item.properties["grid:code"] == "MGRS-35VLH"
    assert item.properties["processing:version"] == acquisition.baseline
    assert item.properties["sat:relative_orbit"] == acquisition.relative_orbit
    safe = f"s3://eodata/{acquisition.safe_name.cdse_path}"
    assert [link.href for link in item.links if link.rel == "enclosure"] == [f"{safe}/"]
    assert item.assets["B8A"].href.startswith(
        f"{safe}/GRANULE/{acquisition.granule_name}/IMG_DATA/"
    )
    assert item.assets["B8A"].href.endswith("_B8A.jp2")
    assert 23 < item.bbox[0] < 24 and 61 < item.bbox[1] < 62  # 35VLH: western Finland


@pytest.mark.lab
def test_band_assets_say_what_their_files_are(api: StacApi, archive: Archive) -> None:
    """Valid STAC; each band's projection and raster fields are its JPEG 2000 file's own
    (STAC loaders such as odc-stac read a band by them)."""
    item = next(Client.open(api.url).search(collections=["sentinel-2-l1c"], max_items=1).items())
    assert pystac.validation.validate_dict(item.to_dict(), extensions=[])
    safe = archive.root / item.assets["B01"].href.removeprefix("s3://eodata/").split(".SAFE/")[0]
    product = SafeProduct.from_path(f"{safe}.SAFE")
    assert ProjectionExtension.ext(item).code == product.crs
    for band, path in product.band_paths.items():
        asset = item.assets[band]
        with rasterio.open(path) as jp2:
            projection = ProjectionExtension.ext(asset)
            assert projection.shape == [jp2.height, jp2.width]
            assert projection.transform == list(jp2.transform)[:6]
            (raster,) = RasterExtension.ext(asset).bands or []
            assert (raster.data_type, raster.nodata) == ("uint16", 0) and jp2.dtypes == ("uint16",)
            assert raster.offset == product.radiometric_offsets[band] / product.quantification_value


@pytest.mark.lab
def test_filters_narrow_the_result(api: StacApi, archive: Archive) -> None:
    client = Client.open(api.url)
    other_tile = client.search(
        filter="grid:code = 'MGRS-35VLG'", filter_lang="cql2-text", method="GET"
    )
    assert list(other_tile.items()) == []
    one_day = client.search(datetime="2024-05-05", filter=TILE_FILTER)
    assert [i.datetime.date().isoformat() for i in one_day.items()] in ([], ["2024-05-05"])
    first = archive.acquisitions[0].safe_name.name.removesuffix(".SAFE")
    assert [i.id for i in client.search(ids=[first]).items()] == [first]
    assert list(client.search(collections=["sentinel-2-l2a"]).items()) == []


@pytest.mark.lab
def test_bad_requests_get_400(api: StacApi) -> None:
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{api.url}/search?filter=eo%3Acloud_cover%20%3C%2010")
    assert caught.value.code == 400
    assert "unsupported CQL2 text filter term" in json.loads(caught.value.read())["description"]
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(f"{api.url}/search?limit=many")
    assert caught.value.code == 400


def test_cql2_parsers() -> None:
    assert parse_cql2_text("grid:code = 'MGRS-35VLH' AND sat:relative_orbit = 79") == {
        "grid:code": "MGRS-35VLH",
        "sat:relative_orbit": 79.0,
    }
    assert parse_cql2_text("\"grid:code\"='it''s AND so'") == {"grid:code": "it's AND so"}
    assert parse_cql2_json({"op": "and", "args": [TILE_FILTER]}) == {"grid:code": "MGRS-35VLH"}
    with pytest.raises(BadRequest):
        parse_cql2_json({"op": "<", "args": [{"property": "eo:cloud_cover"}, 10]})
