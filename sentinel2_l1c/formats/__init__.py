"""The format registry: every format the tool converts, publishes, stages and benchmarks.

A format is defined in one place, its module here (names, packaging, the command that makes
it, conversion, readers), and listed once in ``FORMATS``. Everything else (converters'
defaults, storages, publish_s3, stage, the benchmark, throughput, report, the demo) asks this
registry. Reader variants are keyed ``format@reader`` (``zipzarr@zipstore``) and appear in
results as formats of their own.

To add a format: its module (a ``Format`` and at least one ``Reader``), one line in
``FORMATS``, its variables in ``.env.example`` (the lab's values follow from the registry).
"""

from __future__ import annotations

from dataclasses import dataclass

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.formats.base import Format, Packaging, Reader
from sentinel2_l1c.formats.cog import COG
from sentinel2_l1c.formats.icechunk import ICECHUNK
from sentinel2_l1c.formats.safe import SAFE
from sentinel2_l1c.formats.safe_virtual import SAFE_VIRTUAL
from sentinel2_l1c.formats.zarr import ZARR, ZARR_SHARDED
from sentinel2_l1c.formats.zipzarr import ZIPZARR

__all__ = [
    "COG", "FORMATS", "ICECHUNK", "SAFE", "SAFE_VIRTUAL", "ZARR", "ZARR_SHARDED", "ZIPZARR",
    "Format", "Packaging", "Reader", "Variant", "archive_formats", "get", "label", "reader_keys",
    "variant",
]  # fmt: skip

#: Every format, in the order of results, tables and conversions (a format after the one it
#: is made from).
FORMATS: dict[str, Format] = {
    fmt.name: fmt for fmt in (SAFE, COG, ZARR, ZIPZARR, ZARR_SHARDED, ICECHUNK, SAFE_VIRTUAL)
}


def get(name: str) -> Format:
    """The format called ``name``; ConfigError naming the choices otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}") from None


def archive_formats() -> list[Format]:
    """The formats stored as one archive of another format's tree (``stage --unzip``)."""
    return [fmt for fmt in FORMATS.values() if fmt.unpacks_to is not None]


def reader_keys() -> list[str]:
    """Every results key: each format (its default reader), then each ``format@reader``."""
    keys = list(FORMATS)
    for fmt in FORMATS.values():
        keys += [fmt.key(reader) for reader in fmt.readers[1:]]
    return keys


@dataclass(frozen=True)
class Variant:
    """A results key parsed once: a format and the reader it is read with."""

    fmt: Format
    reader: Reader

    @property
    def key(self) -> str:
        """``zarr`` (the default reader), ``zipzarr@zipstore`` (another)."""
        return self.fmt.key(self.reader)

    @property
    def label(self) -> str:
        """As people read it: ``zipped Zarr (ZipStore)``."""
        if self.reader is self.fmt.readers[0]:
            return self.fmt.label
        return f"{self.fmt.label} ({self.reader.label})"


def variant(key: str) -> Variant:
    """The format and reader of a results key (``zarr``, ``zipzarr@zipstore``); ConfigError
    naming the choices otherwise."""
    name, _, reader_name = key.partition("@")
    fmt = get(name)
    try:
        return Variant(fmt, fmt.reader(reader_name) if reader_name else fmt.readers[0])
    except KeyError:
        raise ConfigError(
            f"unknown reader {key!r}; choose from {', '.join(reader_keys())}"
        ) from None


def label(key: str) -> str:
    """A results key as people read it; keys of no (longer) known format as they are."""
    try:
        return variant(key).label
    except ConfigError:
        return key
