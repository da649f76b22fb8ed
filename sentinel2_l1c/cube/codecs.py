"""Codecs of the Zarr formats: how a chunk's uint16 pixels become stored bytes.

On the users' main routes the bytes are the limit (a link's MB/s, staging time, Allas's
quotas), so the codec is an axis of its own, measured by ``layout_sweep``. Every codec here is
lossless and named in the array metadata by a codec zarr-python opens with the package that
registers it installed (numcodecs, imagecodecs-zarr), so users' own ``xarray.open_zarr``
works. Image codecs (HTJ2K, JPEG-LS, JPEG XL) code 2-D images: their chunks hold one date of
one band and are used only inside shards (``layouts``).

A codec is defined by its family and parameters (plain data: layouts travel to Dask workers);
``array_codecs`` builds the zarr-python objects when an array is created, with a ``crc32c``
checksum after the codec when asked: then a changed byte of a stored chunk is an error, never
other pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sentinel2_l1c.errors import ConfigError

#: The families and the codec names they write into the array metadata.
FAMILY_NAMES = {
    "blosc": ("blosc",),
    "zstd": ("zstd",),
    "delta+blosc": ("numcodecs.delta", "blosc"),
    "pcodec": ("numcodecs.pcodec",),
    "htj2k": ("imagecodecs_htj2k",),
    "jpegls": ("imagecodecs_jpegls",),
    "jpegxl": ("imagecodecs_jpegxl",),
}
IMAGE_FAMILIES = ("htj2k", "jpegls", "jpegxl")


@dataclass(frozen=True)
class Codec:
    """A lossless codec: ``family`` (a key of FAMILY_NAMES) with its parameters."""

    name: str
    family: str
    description: str
    params: tuple[tuple[str, Any], ...] = ()

    @property
    def metadata_names(self) -> tuple[str, ...]:
        """The codec names it writes into the array metadata (what a reader must decode)."""
        return FAMILY_NAMES[self.family]

    @property
    def images(self) -> bool:
        """Codes 2-D images: a chunk may hold one date of one band only."""
        return self.family in IMAGE_FAMILIES

    def array_codecs(self, checksum: bool) -> dict[str, Any]:
        """``filters``, ``serializer`` and ``compressors`` of ``zarr.create_array``; with
        ``checksum``, a crc32c of the coded bytes follows the codec."""
        from zarr.codecs import Crc32cCodec

        codecs = self._codecs(dict(self.params))
        if checksum:
            codecs["compressors"] = [*(codecs.get("compressors") or ()), Crc32cCodec()]
        return codecs

    def _codecs(self, params: dict[str, Any]) -> dict[str, Any]:
        if self.family in ("blosc", "delta+blosc"):
            from zarr.codecs import BloscCodec

            codecs: dict[str, Any] = {"compressors": [BloscCodec(**params)]}
            if self.family == "delta+blosc":
                from zarr.codecs.numcodecs import Delta

                codecs["filters"] = [Delta(dtype="<u2")]
            return codecs
        if self.family == "zstd":
            from zarr.codecs import ZstdCodec

            return {"compressors": [ZstdCodec(**params)]}
        if self.family == "pcodec":
            from zarr.codecs.numcodecs import PCodec

            return {"serializer": PCodec(**params), "compressors": None}
        import imagecodecs.zarr

        classes = {"htj2k": "Htj2k", "jpegls": "Jpegls", "jpegxl": "Jpegxl"}
        serializer = getattr(imagecodecs.zarr, classes[self.family])(**params)
        return {"serializer": serializer, "compressors": None}

    def __str__(self) -> str:
        return self.name


def _blosc(cname: str, clevel: int, shuffle: str = "bitshuffle") -> tuple[tuple[str, Any], ...]:
    return (("cname", cname), ("clevel", clevel), ("shuffle", shuffle))


#: Every codec candidate; ``zstd5`` is the first version's. Blosc's levels are its own
#: (0–9): it runs zstd at level 2·clevel − 1 below 9, and at zstd's highest (22) at 9.
CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec("zstd5", "blosc", "Blosc zstd clevel 5 (zstd 9), bitshuffle", _blosc("zstd", 5)),
        Codec("zstd1", "blosc", "Blosc zstd clevel 1 (zstd 1), bitshuffle", _blosc("zstd", 1)),
        Codec("zstd3", "blosc", "Blosc zstd clevel 3 (zstd 5), bitshuffle", _blosc("zstd", 3)),
        Codec("zstd9", "blosc", "Blosc zstd clevel 9 (zstd 22), bitshuffle", _blosc("zstd", 9)),
        Codec("zstd19", "zstd", "zstd level 19, no shuffle (zarr's zstd codec)",
              (("level", 19),)),
        Codec("lz4", "blosc", "Blosc lz4 clevel 5, bitshuffle", _blosc("lz4", 5)),
        Codec(
            "zstd5_noshuffle", "blosc", "Blosc zstd clevel 5 (zstd 9) without shuffle",
            _blosc("zstd", 5, "noshuffle"),
        ),
        Codec(
            "delta_zstd5", "delta+blosc", "differences of neighbouring pixels, then Blosc "
            "zstd clevel 5, bitshuffle", _blosc("zstd", 5),
        ),
        Codec("pcodec", "pcodec", "pcodec level 8 (numcodecs)", (("level", 8),)),
        Codec("htj2k", "htj2k", "lossless High-Throughput JPEG 2000 (imagecodecs)",
              (("reversible", True),)),
        Codec("jpegls", "jpegls", "lossless JPEG-LS (imagecodecs)", (("level", 0),)),
        Codec("jpegxl", "jpegxl", "lossless JPEG XL, effort 1 (imagecodecs)",
              (("lossless", True), ("effort", 1))),
    )
}  # fmt: skip


def get(name: str) -> Codec:
    """The codec called ``name``; ConfigError naming the choices otherwise."""
    try:
        return CODECS[name]
    except KeyError:
        raise ConfigError(f"unknown codec {name!r}; choose from {', '.join(CODECS)}") from None
