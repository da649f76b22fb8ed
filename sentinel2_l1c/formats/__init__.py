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

from ..errors import ConfigError
from .base import Format, Packaging, Reader
from .cog import COG
from .icechunk import ICECHUNK
from .safe import SAFE
from .safe_virtual import SAFE_VIRTUAL
from .zarr import ZARR, ZARR_SHARDED
from .zipzarr import ZIPZARR

__all__ = [
    "COG", "FORMATS", "ICECHUNK", "SAFE", "SAFE_VIRTUAL", "ZARR", "ZARR_SHARDED", "ZIPZARR",
    "Format", "Packaging", "Reader", "get", "label", "reader", "reader_keys",
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


def reader_keys() -> list[str]:
    """Every results key: each format (its default reader), then each ``format@reader``."""
    keys = list(FORMATS)
    for fmt in FORMATS.values():
        keys += [fmt.key(reader) for reader in fmt.readers[1:]]
    return keys


def reader(key: str) -> tuple[Format, Reader]:
    """The format and reader of a results key (``zarr``, ``zipzarr@zipstore``)."""
    name, _, variant = key.partition("@")
    fmt = get(name)
    try:
        return fmt, fmt.reader(variant) if variant else fmt.readers[0]
    except KeyError:
        raise ConfigError(
            f"unknown reader {key!r}; choose from {', '.join(reader_keys())}"
        ) from None


def label(key: str) -> str:
    """A results key as people read it (``zipped Zarr (ZipStore)``); unknown keys as they are."""
    try:
        fmt, chosen = reader(key)
    except ConfigError:
        return key
    return fmt.label if chosen is fmt.readers[0] else f"{fmt.label} ({chosen.label})"
