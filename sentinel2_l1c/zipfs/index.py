"""Parsing a zip archive's end records, central directory and local headers (pure, no I/O).

``zipfs.filesystem`` feeds it bytes read from anywhere. Every structure is checked (signatures,
bounds, overlaps, multi-disk), so a corrupt archive raises ``ZipFormatError`` instead of
yielding wrong bytes. Sizes come from the central directory, which is right even when an
entry has a data descriptor (flag bit 3) and zeros in its local header.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

EOCD = b"PK\x05\x06"
ZIP64_LOCATOR = b"PK\x06\x07"
ZIP64_EOCD = b"PK\x06\x06"
CENTRAL = b"PK\x01\x02"
LOCAL = b"PK\x03\x04"
EOCD_SIZE, LOCATOR_SIZE, ZIP64_EOCD_SIZE, CENTRAL_SIZE, LOCAL_SIZE = 22, 20, 56, 46, 30
MAX_COMMENT = 0xFFFF
#: Bytes read from the end to find the end records: any comment, the ZIP64 records.
TAIL = EOCD_SIZE + MAX_COMMENT + LOCATOR_SIZE + ZIP64_EOCD_SIZE
STORED, DEFLATED = 0, 8
UTF8_FLAG = 0x800


class ZipFormatError(ValueError):
    """The bytes are not a readable zip archive (or not one this reader supports)."""


@dataclass(frozen=True)
class EndRecord:
    """Where the central directory is, and what follows it."""

    entries: int
    cd_offset: int
    cd_size: int
    #: Absolute offset of the first byte after the central directory (ZIP64 record or EOCD).
    cd_end: int
    #: Offset in the tail buffer of the byte at ``cd_end``, when known.
    tail_cd_end: int


@dataclass(frozen=True)
class Entry:
    name: str
    method: int
    flags: int
    compressed_size: int
    size: int
    header_offset: int
    crc: int
    name_length: int  # bytes of the stored name, as in the local header

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")


def find_end_record(tail: bytes, tail_offset: int | None) -> tuple[EndRecord, int | None]:
    """Parse the end records in ``tail`` (the last bytes of the file).

    ``tail_offset`` is the absolute offset of ``tail[0]`` if known. Returns the end record and,
    when the ZIP64 end record lies before the tail, its absolute offset (read it separately).
    """
    position = _eocd_position(tail)
    (_, disk, cd_disk, disk_entries, entries, cd_size, cd_offset, _) = struct.unpack_from(
        "<4sHHHHIIH", tail, position
    )
    has_locator = (
        position >= LOCATOR_SIZE
        and tail[position - LOCATOR_SIZE : position - LOCATOR_SIZE + 4] == ZIP64_LOCATOR
    )
    if not has_locator:
        if disk or cd_disk or disk_entries != entries:
            raise ZipFormatError("multi-disk zip archives are not supported")
        return EndRecord(entries, cd_offset, cd_size, cd_offset + cd_size, position), None
    _, zip64_disk, zip64_offset, disks = struct.unpack_from("<4sIQI", tail, position - LOCATOR_SIZE)
    if zip64_disk or disks > 1:
        raise ZipFormatError("multi-disk zip archives are not supported")
    start = _tail_index(zip64_offset, tail_offset, position - LOCATOR_SIZE - ZIP64_EOCD_SIZE)
    if start is None or start < 0:
        return EndRecord(0, 0, 0, zip64_offset, -1), zip64_offset
    return parse_zip64_end(tail[start : start + ZIP64_EOCD_SIZE], zip64_offset, start), None


def _tail_index(absolute: int, tail_offset: int | None, expected: int) -> int | None:
    """Index in the tail of an absolute offset; without the tail's offset assume ``expected``."""
    return absolute - tail_offset if tail_offset is not None else expected


def parse_zip64_end(record: bytes, offset: int, tail_index: int = -1) -> EndRecord:
    if len(record) < ZIP64_EOCD_SIZE or record[:4] != ZIP64_EOCD:
        raise ZipFormatError("bad ZIP64 end of central directory record")
    (_, _, _, _, disk, cd_disk, disk_entries, entries, cd_size, cd_offset) = struct.unpack_from(
        "<4sQHHIIQQQQ", record
    )
    if disk or cd_disk or disk_entries != entries:
        raise ZipFormatError("multi-disk zip archives are not supported")
    return EndRecord(entries, cd_offset, cd_size, offset, tail_index)


def _eocd_position(tail: bytes) -> int:
    """The end-of-central-directory record: the last signature whose comment ends the file."""
    position = tail.rfind(EOCD)
    while position >= 0:
        if len(tail) - position >= EOCD_SIZE:
            (comment_length,) = struct.unpack_from("<H", tail, position + 20)
            if position + EOCD_SIZE + comment_length == len(tail):
                return position
        position = tail.rfind(EOCD, 0, position)
    raise ZipFormatError("not a zip archive (no end of central directory record); truncated?")


def parse_central_directory(data: bytes, end: EndRecord) -> list[Entry]:
    """All entries of the central directory ``data``, checked for bounds and overlaps."""
    if len(data) != end.cd_size:
        raise ZipFormatError("central directory is truncated")
    entries, position = [], 0
    for _ in range(end.entries):
        if data[position : position + 4] != CENTRAL or position + CENTRAL_SIZE > len(data):
            raise ZipFormatError(
                f"bad central directory entry signature at offset {end.cd_offset + position}"
            )
        fields = struct.unpack_from("<4sHHHHHHIIIHHHHHII", data, position)
        (
            _,
            _,
            _,
            flags,
            method,
            _,
            _,
            crc,
            compressed,
            size,
            name_length,
            extra_length,
            comment_length,
            disk,
            _,
            _,
            header,
        ) = fields
        start = position + CENTRAL_SIZE
        raw_name = data[start : start + name_length]
        extra = data[start + name_length : start + name_length + extra_length]
        position = start + name_length + extra_length + comment_length
        if position > len(data):
            raise ZipFormatError("central directory entry runs past its end")
        size, compressed, header, disk = _zip64_extra(extra, size, compressed, header, disk)
        if disk:
            raise ZipFormatError("multi-disk zip archives are not supported")
        name = _decode_name(raw_name, flags, extra)
        entries.append(Entry(name, method, flags, compressed, size, header, crc, name_length))
    if position != len(data):
        raise ZipFormatError("central directory size does not match its entries")
    _check_layout(entries, end.cd_offset)
    return entries


def _decode_name(raw: bytes, flags: int, extra: bytes) -> str:
    """UTF-8 with flag bit 11, or Info-ZIP's Unicode Path field (0x7075) if its CRC matches
    the stored name; otherwise cp437, as the format says (and Python's zipfile does)."""
    if flags & UTF8_FLAG:
        return raw.decode("utf-8")
    position = 0
    while position + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, position)
        body = extra[position + 4 : position + 4 + length]
        if tag == 0x7075 and len(body) > 5 and body[0] == 1:
            (crc,) = struct.unpack_from("<I", body, 1)
            if crc == zlib.crc32(raw):
                return body[5:].decode("utf-8")
        position += 4 + length
    return raw.decode("cp437")


def _zip64_extra(
    extra: bytes, size: int, compressed: int, header: int, disk: int
) -> tuple[int, int, int, int]:
    """Replace 0xFFFFFFFF (0xFFFF) fields by their values in the ZIP64 extra field, in order."""
    position = 0
    while position + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, position)
        body = extra[position + 4 : position + 4 + length]
        if tag == 0x0001:
            values, cursor = [], 0
            for value, width, maximum in (
                (size, 8, 0xFFFFFFFF),
                (compressed, 8, 0xFFFFFFFF),
                (header, 8, 0xFFFFFFFF),
                (disk, 4, 0xFFFF),
            ):
                if value == maximum:
                    if cursor + width > len(body):
                        raise ZipFormatError("ZIP64 extra field is too short")
                    value = int.from_bytes(body[cursor : cursor + width], "little")
                    cursor += width
                values.append(value)
            return values[0], values[1], values[2], values[3]
        position += 4 + length
    return size, compressed, header, disk


def _check_layout(entries: list[Entry], cd_offset: int) -> None:
    """Entries must lie before the central directory and must not overlap each other."""
    ordered = sorted(entries, key=lambda entry: entry.header_offset)
    for entry, following in zip(ordered, [*ordered[1:], None], strict=False):
        smallest_end = entry.header_offset + LOCAL_SIZE + entry.name_length + entry.compressed_size
        limit = following.header_offset if following is not None else cd_offset
        if entry.header_offset < 0 or smallest_end > limit:
            raise ZipFormatError(
                f"entry {entry.name!r} overlaps the next entry or the central directory"
            )


def local_data_offset(header: bytes, entry: Entry) -> int:
    """Offset of the entry's data from its local header's start, checked against the entry."""
    if len(header) < LOCAL_SIZE or header[:4] != LOCAL:
        raise ZipFormatError(f"bad local header signature for {entry.name!r}")
    name_length, extra_length = struct.unpack_from("<HH", header, 26)
    return LOCAL_SIZE + name_length + extra_length
