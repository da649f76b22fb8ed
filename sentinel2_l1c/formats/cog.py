"""COG: one multi-band Cloud Optimized GeoTIFF per product and band group.

Layout under a COG root::

    {tile}/{year}/{product_id}/B02_B03_B04_B08.tif
                              /B05_B06_B07_B8A_B11_B12.tif
                              /B01_B09_B10.tif
                              /product.json      product id, PRODUCT_START_TIME (ms), ...
"""

from __future__ import annotations

from pathlib import PurePosixPath

from sentinel2_l1c.formats.base import Format, Packaging
from sentinel2_l1c.formats.gdal_reader import GdalReader
from sentinel2_l1c.formats.odc_stac_reader import OdcStacReader
from sentinel2_l1c.formats.stackstac_reader import StackstacReader
from sentinel2_l1c.s2.bands import BandGroup
from sentinel2_l1c.s2.product import SafeProduct

METADATA = "product.json"


def product_folder(product: SafeProduct) -> PurePosixPath:
    """A product's folder, relative to the COG root."""
    return PurePosixPath(product.tile, str(product.year), product.product_id)


def cog_file(product: SafeProduct, group: BandGroup) -> str:
    """The COG of a product's band group, relative to the COG root."""
    return str(product_folder(product) / f"{group.name}.tif")


COG = Format(
    name="cog",
    label="COG",
    packaging=Packaging.TREE,
    maker="convert_safe_to_cog",
    made_from="safe",
    readers=(
        GdalReader(lambda product, group: [cog_file(product, group)]),
        OdcStacReader(),
        StackstacReader(),
    ),
)
