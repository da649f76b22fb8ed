"""The Zarr v3 codec of a virtual chunk that is one tile of a JPEG 2000 file.

A chunk's bytes are the tile's tile-part as it lies in the file (SOT marker on); the codec's
configuration holds the main header the file's tiles share (``jp2.index.MainHeader.template``).
Decoding joins the two into a codestream of that tile alone and decodes it with OpenJPEG, in a
worker thread so the chunks of a read decode on every core. The codec decodes partially: zarr
hands it the part of the chunk a read selects, and OpenJPEG decodes only that area
(``openjpeg.decode``), which is most of the time of a patch load. From a ``VirtualStore`` it
asks for only the leading bytes that area needs (``jp2.packets``) and completes them with
empty packets. Tiles at the right and bottom edge are smaller than the chunk: the rest is the
fill value, as Zarr pads.

Registered with zarr through the ``zarr.codecs`` entry point (``pyproject.toml``), so any
zarr-python reads the virtual store by name. Read-only: encoding is refused.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from zarr.abc.codec import ArrayBytesCodec, ArrayBytesCodecPartialDecodeMixin
from zarr.core.buffer import Buffer, NDBuffer
from zarr.core.common import JSON, parse_named_configuration
from zarr.storage import StorePath

from sentinel2_l1c.jp2 import openjpeg
from sentinel2_l1c.jp2.index import tile_codestream
from sentinel2_l1c.jp2.packets import completed
from sentinel2_l1c.jp2.virtual_store import VirtualStore

if TYPE_CHECKING:
    from typing import Self

    from zarr.abc.store import ByteGetter
    from zarr.core.array_spec import ArraySpec
    from zarr.core.indexing import Selector, SelectorTuple

NAME = "sentinel2_l1c.jp2_tile"


@dataclass(frozen=True)
class Jp2TileCodec(ArrayBytesCodecPartialDecodeMixin, ArrayBytesCodec):
    """Decodes one JPEG 2000 tile-part, given the main header its file's tiles share."""

    header: bytes
    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, JSON]) -> Self:
        _, configuration = parse_named_configuration(data, NAME)
        return cls(header=base64.b64decode(str(configuration["header"])))

    def to_dict(self) -> dict[str, JSON]:
        return {"name": NAME, "configuration": {"header": base64.b64encode(self.header).decode()}}

    def _decoded(
        self, tile_part: bytes, chunk_spec: ArraySpec, rows: tuple[int, int], cols: tuple[int, int]
    ) -> np.ndarray:
        chunk = np.full(
            chunk_spec.shape[-2:], chunk_spec.fill_value, chunk_spec.dtype.to_native_dtype()
        )
        codestream = tile_codestream(self.header, completed(tile_part))
        pixels = openjpeg.decode(codestream, rows, cols)
        chunk[rows[0] : rows[0] + pixels.shape[0], cols[0] : cols[0] + pixels.shape[1]] = pixels
        return chunk.reshape(chunk_spec.shape)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        height, width = chunk_spec.shape[-2:]
        return await self._decode_area(chunk_bytes, chunk_spec, ..., (0, height), (0, width))

    async def _decode_partial_single(
        self, byte_getter: ByteGetter, selection: SelectorTuple, chunk_spec: ArraySpec
    ) -> NDBuffer | None:
        height, width = chunk_spec.shape[-2:]
        rows, cols = (0, height), (0, width)
        if isinstance(selection, tuple) and len(selection) == len(chunk_spec.shape):
            rows, cols = span(selection[-2], height), span(selection[-1], width)
        prototype = chunk_spec.prototype
        if isinstance(byte_getter, StorePath) and isinstance(byte_getter.store, VirtualStore):
            chunk_bytes = await byte_getter.store.get_area(byte_getter.path, prototype, rows, cols)
        else:
            chunk_bytes = await byte_getter.get(prototype=prototype)
        if chunk_bytes is None:
            return None
        return await self._decode_area(chunk_bytes, chunk_spec, selection, rows, cols)

    async def _decode_area(
        self,
        chunk_bytes: Buffer,
        chunk_spec: ArraySpec,
        selection: SelectorTuple,
        rows: tuple[int, int],
        cols: tuple[int, int],
    ) -> NDBuffer:
        """``chunk[selection]`` with only ``[rows) × [cols)`` decoded, the rest (never read)
        the fill value; on a worker thread (OpenJPEG runs without the GIL)."""
        chunk = await asyncio.to_thread(
            self._decoded, chunk_bytes.to_bytes(), chunk_spec, rows, cols
        )
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(chunk[selection])

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        raise NotImplementedError(f"{NAME} is read-only: its chunks are tiles of JP2 files")

    def compute_encoded_size(self, input_byte_length: int, _chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"{NAME} chunks have no fixed size")


def span(selector: Selector, length: int) -> tuple[int, int]:
    """The ``[start, stop)`` a selector of one chunk axis of ``length`` touches (all of it for
    a selector that is not a slice or an index)."""
    if isinstance(selector, slice):
        start, stop, _ = selector.indices(length)  # zarr refuses steps below 1
        return start, max(start, stop)
    if isinstance(selector, int | np.integer):
        return int(selector), int(selector) + 1
    return 0, length
