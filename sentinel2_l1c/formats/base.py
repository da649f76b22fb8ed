"""What every format is: its names, how it is made, packaged and read."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, ClassVar

from sentinel2_l1c.errors import ConfigError

if TYPE_CHECKING:
    from sentinel2_l1c.loaders.base import Catalogue, Loader
    from sentinel2_l1c.storage.places import Place


class Packaging(Enum):
    """How a format is stored, published (to S3) and staged (to temp)."""

    TREE = "a folder of files, or the objects of a bucket"
    ARCHIVE = "one file, or one object"


class Reader(ABC):
    """One way of reading a format in the benchmark: a library stack, named by ``key``.

    A format's first reader is its default, keyed by the format's name; the others are keyed
    ``format@name`` and appear in results as formats of their own.
    """

    name: str  # "" for the default reader
    label: str
    #: the codecs it decodes, as Zarr metadata names them; None: every codec zarr-python has
    #: an implementation of (registered by numcodecs, imagecodecs-zarr… when installed)
    codecs: ClassVar[frozenset[str] | None] = None
    #: reads through another reader's store (xarray over zarr-python): timed by the benchmark,
    #: left out of ``layout_sweep``, which compares the Zarr libraries a layout is read with
    layered: ClassVar[bool] = False
    #: asks a coverage service for the patch (the storage cuts it: ``cuts_patches``) instead
    #: of reading stored files; read on such storages only, and only such readers there (so
    #: left out of ``layout_sweep`` too)
    asks_service: ClassVar[bool] = False

    def decodes(self, codec_name: str) -> bool:
        if self.codecs is not None:
            return codec_name in self.codecs
        import zarr.registry

        try:
            zarr.registry.get_codec_class(codec_name)
        except Exception:  # zarr raises its own error types for unknown codecs
            return False
        return True

    def check_codecs(self, layout: str, codec_names: list[str]) -> None:
        """Refuse, in one line naming both, a layout whose codecs (as its array metadata
        names them) it cannot decode: no silent fallback to another reader."""
        missing = [name for name in codec_names if not self.decodes(name)]
        if missing:
            raise ConfigError(
                f"the {self.label} reader cannot decode layout {layout} (codec "
                f"{', '.join(missing)}); read it with another reader of the format"
            )

    @abstractmethod
    def open(
        self, place: Place, catalogue: Catalogue, made_by: str, referenced: Place | None = None
    ) -> Loader:
        """A loader of the tile-year on ``place`` (``made_by`` names the command that writes
        it, for errors; ``referenced``: the place of the format whose files a virtual format's
        chunks are in, on the same storage); ConfigError when it cannot read that place."""


@dataclass(frozen=True)
class Format:
    name: str  # key in results and variable names
    label: str  # in tables and charts
    packaging: Packaging
    #: the command that makes it on the network drive (python -m sentinel2_l1c.<maker>); a
    #: converter command has ``make(fmt, source, target, show_progress) -> list[str]``
    maker: str
    maker_args: tuple[str, ...] = ()
    #: the format it is made from by ``convert`` (None: not converted, e.g. fetched by intake)
    made_from: str | None = None
    #: for an archive: the format its unpacked entries form
    unpacks_to: str | None = None
    #: its objects are the chunks or shards of a Zarr store (object-size histograms)
    chunk_objects: bool = False
    #: the benchmark times the ideal reference (its chunks fetched and decompressed) beside
    #: it, fetching through this reader's client (the fastest); None: no ideal
    ideal_reader: str | None = None
    #: a virtual format: the format whose files hold its chunks (read on the same storage)
    references: str | None = None
    readers: tuple[Reader, ...] = field(default=(), repr=False)

    @property
    def step(self) -> str:
        """The command that makes this format on the network drive."""
        return " ".join(("python -m", f"sentinel2_l1c.{self.maker}", *self.maker_args))

    @property
    def is_archive(self) -> bool:
        return self.packaging is Packaging.ARCHIVE

    @property
    def file_name(self) -> str:
        """Default name of its folder (or file) on a storage."""
        return f"sentinel2_l1c_{self.name}{'.zip' if self.is_archive else ''}"

    def object_sizes(self, place: Place) -> dict[str, int]:
        """Size of every object of the tree at ``place``, keyed as its Zarr store names them
        (``…/{band_group}/data/c/…`` for chunks; object-size histograms)."""
        return place.files()

    def reader(self, name: str = "") -> Reader:
        for reader in self.readers:
            if reader.name == name:
                return reader
        raise KeyError(name)

    def key(self, reader: Reader) -> str:
        """The results key of this format read by ``reader``."""
        return self.name if reader is self.readers[0] else f"{self.name}@{reader.name}"
