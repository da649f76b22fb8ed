"""The XML documents of a synthetic L1C product, shaped like ESA's (PSD 14.9, baseline 05.10).

Only the structure and the fields that readers use are reproduced; values are true for the
synthetic product (times, orbits, grids, footprint, cloud cover, file checksums).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path

from sentinel2_l1c.lab.scene import QUANTIFICATION_VALUE, RADIOMETRIC_OFFSET
from sentinel2_l1c.lab.schedule import Acquisition
from sentinel2_l1c.s2.bands import BANDS, RESOLUTIONS, band_resolution
from sentinel2_l1c.s2.names import format_utc
from sentinel2_l1c.s2.product import Grid

PSD = "https://psd-14.sentinel2.eo.esa.int/PSD"
# (min, max, central) wavelength in nm and solar irradiance in W/m²/µm, Sentinel-2A.
_SPECTRAL = {
    "B01": (411, 456, 442.7, 1884.69), "B02": (456, 533, 492.7, 1959.72),
    "B03": (538, 583, 559.8, 1823.24), "B04": (646, 684, 664.6, 1512.06),
    "B05": (694, 713, 704.1, 1424.64), "B06": (731, 749, 740.5, 1287.61),
    "B07": (769, 797, 782.8, 1162.08), "B08": (760, 907, 832.8, 1041.63),
    "B8A": (848, 881, 864.7, 955.32), "B09": (932, 958, 945.1, 812.92),
    "B10": (1337, 1412, 1373.5, 367.15), "B11": (1539, 1682, 1613.7, 245.59),
    "B12": (2078, 2320, 2202.4, 85.25),
}  # fmt: skip


def physical_band(band: str) -> str:
    """ESA's ``physicalBand`` spelling: B1 … B8, B8A, B9 … B12."""
    return band if band == "B8A" else f"B{int(band[1:])}"


def _ms(value: datetime) -> str:
    return format_utc(value, 3)


def _datatake_id(acquisition: Acquisition) -> str:
    start = acquisition.datatake_start.strftime("%Y%m%dT%H%M%S")
    return (
        f"G{acquisition.mission}_{start}_{acquisition.absolute_orbit:06d}_N{acquisition.baseline}"
    )


def granule_id(acquisition: Acquisition) -> str:
    generated = acquisition.generation_time.strftime("%Y%m%dT%H%M%S")
    return (
        f"{acquisition.mission}_OPER_MSI_L1C_TL_2APS_{generated}_A{acquisition.absolute_orbit:06d}"
        f"_T{acquisition.tile}_N{acquisition.baseline}"
    )


def datastrip_id(acquisition: Acquisition) -> str:
    generated = acquisition.generation_time.strftime("%Y%m%dT%H%M%S")
    sensed = acquisition.sensing_time.strftime("%Y%m%dT%H%M%S")
    return (
        f"{acquisition.mission}_OPER_MSI_L1C_DS_2APS_{generated}_S{sensed}_N{acquisition.baseline}"
    )


def product_metadata(
    acquisition: Acquisition,
    image_files: Iterable[str],
    footprint: list[tuple[float, float]],
    cloud_percent: float,
) -> str:
    """MTD_MSIL1C.xml; ``image_files`` are paths relative to the product, without ``.jp2``."""
    name = acquisition.safe_name
    stop = acquisition.datatake_start + timedelta(seconds=5, milliseconds=211)
    images = "\n".join(f"            <IMAGE_FILE>{path}</IMAGE_FILE>" for path in image_files)
    offsets = "\n".join(
        f'        <RADIO_ADD_OFFSET band_id="{index}">-{RADIOMETRIC_OFFSET}</RADIO_ADD_OFFSET>'
        for index in range(len(BANDS))
    )
    irradiance = "\n".join(
        f'          <SOLAR_IRRADIANCE bandId="{index}" unit="W/m²/µm">{_SPECTRAL[band][3]}</SOLAR_IRRADIANCE>'
        for index, band in enumerate(BANDS)
    )
    spectral = "\n".join(
        f"""        <Spectral_Information bandId="{index}" physicalBand="{physical_band(band)}">
          <RESOLUTION>{band_resolution(band)}</RESOLUTION>
          <Wavelength>
            <MIN unit="nm">{_SPECTRAL[band][0]}</MIN>
            <MAX unit="nm">{_SPECTRAL[band][1]}</MAX>
            <CENTRAL unit="nm">{_SPECTRAL[band][2]}</CENTRAL>
          </Wavelength>
        </Spectral_Information>"""
        for index, band in enumerate(BANDS)
    )
    ring = " ".join(f"{lat:.10f} {lon:.10f}" for lon, lat in footprint)
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_User_Product xmlns:n1="{PSD}/User_Product_Level-1C.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="{PSD}/User_Product_Level-1C.xsd">
  <n1:General_Info>
    <Product_Info>
      <PRODUCT_START_TIME>{_ms(acquisition.datatake_start)}</PRODUCT_START_TIME>
      <PRODUCT_STOP_TIME>{_ms(stop)}</PRODUCT_STOP_TIME>
      <PRODUCT_URI>{name.name}</PRODUCT_URI>
      <PROCESSING_LEVEL>Level-1C</PROCESSING_LEVEL>
      <PRODUCT_TYPE>S2MSI1C</PRODUCT_TYPE>
      <PROCESSING_BASELINE>{acquisition.baseline}</PROCESSING_BASELINE>
      <PRODUCT_DOI>https://doi.org/10.5270/S2_-742ikth</PRODUCT_DOI>
      <GENERATION_TIME>{format_utc(acquisition.generation_time, 6)}</GENERATION_TIME>
      <PREVIEW_IMAGE_URL>Not applicable</PREVIEW_IMAGE_URL>
      <PREVIEW_GEO_INFO>Not applicable</PREVIEW_GEO_INFO>
      <Datatake datatakeIdentifier="{_datatake_id(acquisition)}">
        <SPACECRAFT_NAME>{acquisition.spacecraft}</SPACECRAFT_NAME>
        <DATATAKE_TYPE>INS-NOBS</DATATAKE_TYPE>
        <DATATAKE_SENSING_START>{_ms(acquisition.datatake_start)}</DATATAKE_SENSING_START>
        <SENSING_ORBIT_NUMBER>{acquisition.relative_orbit}</SENSING_ORBIT_NUMBER>
        <SENSING_ORBIT_DIRECTION>DESCENDING</SENSING_ORBIT_DIRECTION>
      </Datatake>
      <Query_Options completeSingleTile="true">
        <PRODUCT_FORMAT>SAFE_COMPACT</PRODUCT_FORMAT>
      </Query_Options>
      <Product_Organisation>
        <Granule_List>
          <Granule datastripIdentifier="{datastrip_id(acquisition)}" granuleIdentifier="{granule_id(acquisition)}" imageFormat="JPEG2000">
{images}
          </Granule>
        </Granule_List>
      </Product_Organisation>
    </Product_Info>
    <Product_Image_Characteristics>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>NODATA</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>0</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Special_Values>
        <SPECIAL_VALUE_TEXT>SATURATED</SPECIAL_VALUE_TEXT>
        <SPECIAL_VALUE_INDEX>65535</SPECIAL_VALUE_INDEX>
      </Special_Values>
      <Image_Display_Order>
        <RED_CHANNEL>3</RED_CHANNEL>
        <GREEN_CHANNEL>2</GREEN_CHANNEL>
        <BLUE_CHANNEL>1</BLUE_CHANNEL>
      </Image_Display_Order>
      <QUANTIFICATION_VALUE unit="none">{QUANTIFICATION_VALUE}</QUANTIFICATION_VALUE>
      <Radiometric_Offset_List>
{offsets}
      </Radiometric_Offset_List>
      <Reflectance_Conversion>
        <U>{_earth_sun_factor(acquisition.datatake_start):.12f}</U>
        <Solar_Irradiance_List>
{irradiance}
        </Solar_Irradiance_List>
      </Reflectance_Conversion>
      <Spectral_Information_List>
{spectral}
      </Spectral_Information_List>
      <REFERENCE_BAND>B1</REFERENCE_BAND>
    </Product_Image_Characteristics>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Product_Footprint>
      <Product_Footprint>
        <Global_Footprint>
          <EXT_POS_LIST>{ring}</EXT_POS_LIST>
        </Global_Footprint>
      </Product_Footprint>
      <RASTER_CS_TYPE>POINT</RASTER_CS_TYPE>
      <PIXEL_ORIGIN>1</PIXEL_ORIGIN>
    </Product_Footprint>
    <Coordinate_Reference_System>
      <GEO_TABLES version="1">EPSG</GEO_TABLES>
      <HORIZONTAL_CS_TYPE>GEOGRAPHIC</HORIZONTAL_CS_TYPE>
    </Coordinate_Reference_System>
  </n1:Geometric_Info>
  <n1:Auxiliary_Data_Info>
    <GIPP_List/>
    <PRODUCTION_DEM_TYPE>Copernicus DEM GLO-30</PRODUCTION_DEM_TYPE>
    <IERS_BULLETIN_FILENAME>None</IERS_BULLETIN_FILENAME>
    <ECMWF_DATA_REF>AUX_ECMWFT</ECMWF_DATA_REF>
    <CAMS_DATA_REF>AUX_CAMSFO</CAMS_DATA_REF>
  </n1:Auxiliary_Data_Info>
  <n1:Quality_Indicators_Info>
    <Cloud_Coverage_Assessment>{cloud_percent:.2f}</Cloud_Coverage_Assessment>
    <Technical_Quality_Assessment>
      <DEGRADED_ANC_DATA_PERCENTAGE>0.0</DEGRADED_ANC_DATA_PERCENTAGE>
      <DEGRADED_MSI_DATA_PERCENTAGE>0</DEGRADED_MSI_DATA_PERCENTAGE>
    </Technical_Quality_Assessment>
  </n1:Quality_Indicators_Info>
</n1:Level-1C_User_Product>
"""


def tile_metadata(
    acquisition: Acquisition,
    epsg: int,
    grids: dict[int, Grid],
    latitude: float,
    cloud_percent: float,
) -> str:
    """MTD_TL.xml: tile id, sensing time, CRS, per-resolution size and geoposition."""
    zone = epsg % 100
    sizes = "\n".join(
        f"""      <Size resolution="{res}">
        <NROWS>{grids[res].nrows}</NROWS>
        <NCOLS>{grids[res].ncols}</NCOLS>
      </Size>"""
        for res in RESOLUTIONS
    )
    positions = "\n".join(
        f"""      <Geoposition resolution="{res}">
        <ULX>{grids[res].ulx:g}</ULX>
        <ULY>{grids[res].uly:g}</ULY>
        <XDIM>{grids[res].xdim:g}</XDIM>
        <YDIM>{grids[res].ydim:g}</YDIM>
      </Geoposition>"""
        for res in RESOLUTIONS
    )
    zenith, azimuth = _sun_angles(acquisition.sensing_time, latitude)
    hemisphere = "N" if epsg < 32700 else "S"
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_Tile_ID xmlns:n1="{PSD}/S2_PDI_Level-1C_Tile_Metadata.xsd" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:schemaLocation="{PSD}/S2_PDI_Level-1C_Tile_Metadata.xsd">
  <n1:General_Info>
    <TILE_ID metadataLevel="Brief">{granule_id(acquisition)}</TILE_ID>
    <DATASTRIP_ID metadataLevel="Standard">{datastrip_id(acquisition)}</DATASTRIP_ID>
    <DOWNLINK_PRIORITY metadataLevel="Standard">NOMINAL</DOWNLINK_PRIORITY>
    <SENSING_TIME metadataLevel="Standard">{format_utc(acquisition.sensing_time, 6)}</SENSING_TIME>
    <Archiving_Info metadataLevel="Expertise">
      <ARCHIVING_CENTRE>2APS</ARCHIVING_CENTRE>
      <ARCHIVING_TIME>{format_utc(acquisition.generation_time, 6)}</ARCHIVING_TIME>
    </Archiving_Info>
  </n1:General_Info>
  <n1:Geometric_Info>
    <Tile_Geocoding metadataLevel="Brief">
      <HORIZONTAL_CS_NAME>WGS84 / UTM zone {zone}{hemisphere}</HORIZONTAL_CS_NAME>
      <HORIZONTAL_CS_CODE>EPSG:{epsg}</HORIZONTAL_CS_CODE>
{sizes}
{positions}
    </Tile_Geocoding>
    <Tile_Angles metadataLevel="Standard">
      <Mean_Sun_Angle>
        <ZENITH_ANGLE unit="deg">{zenith:.6f}</ZENITH_ANGLE>
        <AZIMUTH_ANGLE unit="deg">{azimuth:.6f}</AZIMUTH_ANGLE>
      </Mean_Sun_Angle>
    </Tile_Angles>
  </n1:Geometric_Info>
  <n1:Quality_Indicators_Info metadataLevel="Standard">
    <Image_Content_QI>
      <CLOUDY_PIXEL_PERCENTAGE>{cloud_percent:.2f}</CLOUDY_PIXEL_PERCENTAGE>
      <DEGRADED_MSI_DATA_PERCENTAGE>0</DEGRADED_MSI_DATA_PERCENTAGE>
      <SNOW_PIXEL_PERCENTAGE>0</SNOW_PIXEL_PERCENTAGE>
    </Image_Content_QI>
  </n1:Quality_Indicators_Info>
</n1:Level-1C_Tile_ID>
"""


def datastrip_metadata(acquisition: Acquisition) -> str:
    """MTD_DS.xml with the datastrip's identity and sensing period."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<n1:Level-1C_DataStrip_ID xmlns:n1="{PSD}/S2_PDI_Level-1C_Datastrip_Metadata.xsd">
  <n1:General_Info>
    <Datastrip_Time_Info>
      <DATASTRIP_SENSING_START>{_ms(acquisition.datatake_start)}</DATASTRIP_SENSING_START>
      <DATASTRIP_SENSING_STOP>{_ms(acquisition.sensing_time)}</DATASTRIP_SENSING_STOP>
    </Datastrip_Time_Info>
    <Datastrip_Identification>
      <DATASTRIP_ID>{datastrip_id(acquisition)}</DATASTRIP_ID>
      <SPACECRAFT_NAME>{acquisition.spacecraft}</SPACECRAFT_NAME>
      <SENSING_ORBIT_NUMBER>{acquisition.relative_orbit}</SENSING_ORBIT_NUMBER>
      <ABSOLUTE_ORBIT_NUMBER>{acquisition.absolute_orbit}</ABSOLUTE_ORBIT_NUMBER>
    </Datastrip_Identification>
  </n1:General_Info>
</n1:Level-1C_DataStrip_ID>
"""


def quality_report(report: str, subject: str) -> str:
    """A passed quality-check report (``GENERAL_QUALITY`` etc.) for ``subject``."""
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Earth_Explorer_File>
  <Earth_Explorer_Header>
    <Fixed_Header>
      <File_Name>{report}</File_Name>
      <File_Type>{report}</File_Type>
    </Fixed_Header>
  </Earth_Explorer_Header>
  <Data_Block type="xml">
    <report>
      <checkList>
        <parentID>{subject}</parentID>
        <item name="{subject}"/>
        <check><inspection status="PASSED"/></check>
      </checkList>
    </report>
  </Data_Block>
</Earth_Explorer_File>
"""


def inspire_metadata(acquisition: Acquisition, footprint: list[tuple[float, float]]) -> str:
    """INSPIRE.xml: the ISO 19139 record with the product's geographic bounding box."""
    lons = [lon for lon, _ in footprint]
    lats = [lat for _, lat in footprint]
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<gmd:MD_Metadata xmlns:gmd="http://www.isotc211.org/2005/gmd" xmlns:gco="http://www.isotc211.org/2005/gco">
  <gmd:fileIdentifier><gco:CharacterString>{acquisition.safe_name.name}</gco:CharacterString></gmd:fileIdentifier>
  <gmd:dateStamp><gco:Date>{acquisition.generation_time.date().isoformat()}</gco:Date></gmd:dateStamp>
  <gmd:identificationInfo>
    <gmd:MD_DataIdentification>
      <gmd:extent>
        <gmd:EX_Extent>
          <gmd:geographicElement>
            <gmd:EX_GeographicBoundingBox>
              <gmd:westBoundLongitude><gco:Decimal>{min(lons):.6f}</gco:Decimal></gmd:westBoundLongitude>
              <gmd:eastBoundLongitude><gco:Decimal>{max(lons):.6f}</gco:Decimal></gmd:eastBoundLongitude>
              <gmd:southBoundLatitude><gco:Decimal>{min(lats):.6f}</gco:Decimal></gmd:southBoundLatitude>
              <gmd:northBoundLatitude><gco:Decimal>{max(lats):.6f}</gco:Decimal></gmd:northBoundLatitude>
            </gmd:EX_GeographicBoundingBox>
          </gmd:geographicElement>
        </gmd:EX_Extent>
      </gmd:extent>
    </gmd:MD_DataIdentification>
  </gmd:identificationInfo>
</gmd:MD_Metadata>
"""


def manifest(acquisition: Acquisition, product: Path, files: Iterable[Path]) -> str:
    """manifest.safe listing every file with its size and MD5, as ESA's does."""
    objects = []
    for number, path in enumerate(sorted(files)):
        relative = path.relative_to(product).as_posix()
        section = "metadataObject" if relative.endswith(".xml") else "dataObject"
        digest = _md5(path)
        objects.append(
            (
                section,
                f"""    <{section} ID="object_{number:03d}">
      <byteStream mimeType="{_mime(relative)}" size="{path.stat().st_size}">
        <fileLocation locatorType="URL" href="./{relative}"/>
        <checksum checksumName="MD5">{digest}</checksum>
      </byteStream>
    </{section}>""",
            )
        )
    metadata = "\n".join(text for section, text in objects if section == "metadataObject")
    data = "\n".join(text for section, text in objects if section == "dataObject")
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" xmlns:safe="http://www.esa.int/safe/sentinel/1.1" version="esa/safe/sentinel/1.1/sentinel-2/msi/archive_l1c_user_product">
  <informationPackageMap>
    <xfdu:contentUnit unitType="Product_Level-1C" textInfo="SENTINEL-2 MSI Level-1C User Product" dmdID="{acquisition.safe_name.name}"/>
  </informationPackageMap>
  <metadataSection>
{metadata}
  </metadataSection>
  <dataObjectSection>
{data}
  </dataObjectSection>
</xfdu:XFDU>
"""


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _mime(relative: str) -> str:
    suffix = relative.rsplit(".", 1)[-1] if "." in relative.rsplit("/", 1)[-1] else ""
    return {
        "xml": "text/xml", "jp2": "application/octet-stream", "html": "text/html",
        "xsl": "text/xsl", "xsd": "text/xml", "png": "image/png", "jpg": "image/jpeg",
    }.get(suffix, "application/octet-stream")  # fmt: skip


def _earth_sun_factor(moment: datetime) -> float:
    """ESA's U: correction of solar irradiance for the Earth-Sun distance on that day."""
    day = moment.timetuple().tm_yday
    return 1 / (1 - 0.01673 * math.cos(0.0172 * (day - 4))) ** 2


def _sun_angles(moment: datetime, latitude: float) -> tuple[float, float]:
    """Approximate solar zenith and azimuth (degrees) near local noon at ``latitude``."""
    day = moment.timetuple().tm_yday
    declination = 23.44 * math.sin(math.radians(360 / 365 * (day - 81)))
    return 90 - (90 - abs(latitude) + declination), 160.0
