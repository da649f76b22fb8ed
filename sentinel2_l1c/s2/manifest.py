"""``manifest.safe``: the size and MD5 of every file of a SAFE product, as ESA lists them.

JPEG 2000 carries no checksum of its own, so the manifest is the only way to know that a
downloaded or copied band file is the one ESA wrote. Pure parsing; callers hash
(``storage.transfer.file_md5``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sentinel2_l1c.errors import InputDataError

MANIFEST = "manifest.safe"


@dataclass(frozen=True)
class Listed:
    """One file as the manifest lists it."""

    size: int
    md5: str  # lower-case hex


def parse_manifest(text: bytes, where: str) -> dict[str, Listed]:
    """The files a manifest lists, by path inside the product (``GRANULE/…/B02.jp2``)."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise InputDataError(f"{where}: not a readable {MANIFEST} ({err})") from None
    listed = {}
    for stream in root.iter():
        if stream.tag.rpartition("}")[2] != "byteStream":
            continue
        href = md5 = None
        for child in stream:
            tag = child.tag.rpartition("}")[2]
            if tag == "fileLocation":
                href = child.get("href")
            elif tag == "checksum" and (child.get("checksumName") or "").upper() == "MD5":
                md5 = (child.text or "").strip().lower()
        size = stream.get("size")
        if href is None or md5 is None or size is None or not size.isdigit():
            raise InputDataError(f"{where}: a byteStream without href, size or MD5")
        listed[href.removeprefix("./")] = Listed(int(size), md5)
    if not listed:
        raise InputDataError(f"{where}: lists no files")
    return listed
