"""SAFE: the products as downloaded from CDSE, one JPEG 2000 file per band."""

from __future__ import annotations

from sentinel2_l1c.formats.base import Format, Packaging
from sentinel2_l1c.formats.gdal_reader import GdalReader
from sentinel2_l1c.formats.odc_stac_reader import OdcStacReader, searched_items
from sentinel2_l1c.s2.bands import BandGroup
from sentinel2_l1c.s2.product import SafeProduct


def band_files(product: SafeProduct, group: BandGroup) -> list[str]:
    """The group's band files, relative to the SAFE root (CDSE layout)."""
    return [
        (product.name.cdse_path / product.band_path(band).relative_to(product.path)).as_posix()
        for band in group.bands
    ]


SAFE = Format(
    name="safe",
    label="SAFE",
    packaging=Packaging.TREE,
    maker="intake_cdse_s3_year",
    readers=(
        GdalReader(band_files),
        OdcStacReader(searched_items, label="odc-stac over the archive's STAC Items"),
    ),
)
