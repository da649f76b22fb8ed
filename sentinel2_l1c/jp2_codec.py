"""The Zarr v3 codec of a virtual chunk that is one tile of a JPEG 2000 file.

A chunk's bytes are the tile's tile-part as it lies in the file (SOT marker on); the codec's
configuration holds the main header the file's tiles share (``jp2_index.MainHeader.template``).
Decoding joins the two into a codestream of that tile alone and decodes it with OpenJPEG
(imagecodecs), in a worker thread so the chunks of a read decode on every core. Tiles at the
right and bottom edge are smaller than the chunk: the rest is the fill value, as Zarr pads.

Registered with zarr through the ``zarr.codecs`` entry point (``pyproject.toml``), so any
zarr-python reads the virtual store by name. Read-only: encoding is refused.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

import imagecodecs
import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.buffer import Buffer, NDBuffer
from zarr.core.common import JSON, parse_named_configuration

from .jp2_index import tile_codestream

if TYPE_CHECKING:
    from typing import Self

    from zarr.core.array_spec import ArraySpec

NAME = "sentinel2_l1c.jp2_tile"


@dataclass(frozen=True)
class Jp2TileCodec(ArrayBytesCodec):
    """Decodes one JPEG 2000 tile-part, given the main header its file's tiles share."""

    header: bytes
    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        _, configuration = parse_named_configuration(data, NAME)
        return cls(header=base64.b64decode(str(configuration["header"])))

    def to_dict(self) -> dict[str, JSON]:
        return {"name": NAME, "configuration": {"header": base64.b64encode(self.header).decode()}}

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        tile = imagecodecs.jpeg2k_decode(tile_codestream(self.header, chunk_bytes.to_bytes()))
        dtype = chunk_spec.dtype.to_native_dtype()
        height, width = chunk_spec.shape[-2:]
        if tile.shape != (height, width):  # an edge tile: pad as Zarr pads edge chunks
            padded = np.full((height, width), chunk_spec.fill_value, dtype=dtype)
            padded[: tile.shape[0], : tile.shape[1]] = tile
            tile = padded
        pixels = tile.astype(dtype, copy=False).reshape(chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(pixels)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        raise NotImplementedError(f"{NAME} is read-only: its chunks are tiles of JP2 files")

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"{NAME} chunks have no fixed size")
