"""OpenJPEG's decoder through ctypes, for what the Python codecs leave out: a decode area.

``opj_set_decode_area`` makes OpenJPEG (≥ 2.3) decode only the code-blocks a window needs
and run the inverse wavelet transform on that window alone, so a 510 px window of a 1024 px
Sentinel-2 tile decodes about twice as fast as the whole tile and a 128 px one ten times as
fast, with the same pixels (the 5/3 wavelet is reversible). GDAL cannot give this: its JP2
driver reads whole blocks, and a block is a JP2 tile. The library is the one GDAL uses, from
the rasterio wheel, or the system's ``libopenjp2``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import importlib.util
from pathlib import Path

import numpy as np

from sentinel2_l1c.errors import ConfigError
from sentinel2_l1c.jp2.index import CodestreamError

CODEC_J2K = 0  # OPJ_CODEC_J2K: a raw codestream, no JP2 boxes
READ_CHUNK = 1 << 16
PARAMETERS_SIZE = 1 << 16  # more than sizeof(opj_dparameters_t), which only OpenJPEG fills


class _Component(ctypes.Structure):
    _fields_ = [  # opj_image_comp_t, OpenJPEG 2.3 to 2.5
        *((name, ctypes.c_uint32) for name in "dx dy w h x0 y0 prec bpp sgnd resno factor".split()),
        ("data", ctypes.POINTER(ctypes.c_int32)),
        ("alpha", ctypes.c_uint16),
    ]


class _Image(ctypes.Structure):
    _fields_ = [  # opj_image_t
        *((name, ctypes.c_uint32) for name in "x0 y0 x1 y1 numcomps".split()),
        ("color_space", ctypes.c_int),
        ("comps", ctypes.POINTER(_Component)),
        ("icc_profile_buf", ctypes.c_void_p),
        ("icc_profile_len", ctypes.c_uint32),
    ]


_READ = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p)
_SKIP = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)
_SEEK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64, ctypes.c_void_p)
_MESSAGE = ctypes.CFUNCTYPE(None, ctypes.c_char_p, ctypes.c_void_p)
_IMAGE_P = ctypes.POINTER(_Image)
_P = ctypes.c_void_p
_SIGNATURES = {
    "opj_version": (ctypes.c_char_p, []),
    "opj_create_decompress": (_P, [ctypes.c_int]),
    "opj_set_default_decoder_parameters": (None, [_P]),
    "opj_setup_decoder": (ctypes.c_int, [_P, _P]),
    "opj_set_error_handler": (ctypes.c_int, [_P, _MESSAGE, _P]),
    "opj_stream_create": (_P, [ctypes.c_size_t, ctypes.c_int]),
    "opj_stream_set_read_function": (None, [_P, _READ]),
    "opj_stream_set_skip_function": (None, [_P, _SKIP]),
    "opj_stream_set_seek_function": (None, [_P, _SEEK]),
    "opj_stream_set_user_data_length": (None, [_P, ctypes.c_uint64]),
    "opj_read_header": (ctypes.c_int, [_P, _P, ctypes.POINTER(_IMAGE_P)]),
    "opj_set_decode_area": (ctypes.c_int, [_P, _IMAGE_P, *[ctypes.c_int32] * 4]),
    "opj_decode": (ctypes.c_int, [_P, _P, _IMAGE_P]),
    "opj_image_destroy": (None, [_IMAGE_P]),
    "opj_stream_destroy": (None, [_P]),
    "opj_destroy_codec": (None, [_P]),
}


def _candidates() -> list[str]:
    """The wheel's bundled copy first (the decoder GDAL uses here), then the system's."""
    spec = importlib.util.find_spec("rasterio")
    found = []
    if spec is not None and spec.origin is not None:
        package = Path(spec.origin).parent
        for folder in (package.parent / "rasterio.libs", package / ".dylibs"):
            found += sorted(str(p) for p in folder.glob("libopenjp2*"))
    system = ctypes.util.find_library("openjp2")
    return found + ([system] if system else [])


@functools.cache
def library() -> ctypes.CDLL:
    """libopenjp2 with the signatures used here; ConfigError if there is none ≥ 2.3."""
    for path in _candidates():
        lib = ctypes.CDLL(path)
        for name, (result, arguments) in _SIGNATURES.items():
            function = getattr(lib, name)
            function.restype, function.argtypes = result, arguments
        version = tuple(int(p) for p in lib.opj_version().decode().split(".")[:2])
        if version >= (2, 3):
            return lib
    raise ConfigError(
        "no OpenJPEG ≥ 2.3 library (libopenjp2) found: install rasterio's wheel or libopenjp2-7"
    )


def decode(codestream: bytes, rows: tuple[int, int], cols: tuple[int, int]) -> np.ndarray:
    """The pixels ``[rows[0]:rows[1], cols[0]:cols[1]]`` of a one-component, unsigned
    codestream of at most 16 bits, counted from the image's top left and clipped to it;
    only that area is decoded."""
    lib = library()
    errors: list[str] = []
    position = 0

    def read(target: int, wanted: int, _: int) -> int:
        nonlocal position
        count = min(wanted, len(codestream) - position)
        if count <= 0:
            return ctypes.c_size_t(-1).value  # OpenJPEG's end of stream
        ctypes.memmove(target, codestream[position : position + count], count)
        position += count
        return count

    def skip(count: int, _: int) -> int:
        nonlocal position
        position += count
        return count

    def seek(offset: int, _: int) -> int:
        nonlocal position
        position = offset
        return 1

    def error(message: bytes, _: int) -> None:
        errors.append(message.decode(errors="replace").strip())

    callbacks = (_READ(read), _SKIP(skip), _SEEK(seek), _MESSAGE(error))  # alive until the end
    stream = lib.opj_stream_create(READ_CHUNK, 1)
    codec = lib.opj_create_decompress(CODEC_J2K)
    image = _IMAGE_P()
    try:
        lib.opj_stream_set_read_function(stream, callbacks[0])
        lib.opj_stream_set_skip_function(stream, callbacks[1])
        lib.opj_stream_set_seek_function(stream, callbacks[2])
        lib.opj_stream_set_user_data_length(stream, len(codestream))
        lib.opj_set_error_handler(codec, callbacks[3], None)
        parameters = ctypes.create_string_buffer(PARAMETERS_SIZE)
        lib.opj_set_default_decoder_parameters(parameters)

        def check(done: int, what: str) -> None:
            if not done:
                raise CodestreamError(f"OpenJPEG could not {what}: {'; '.join(errors) or '?'}")

        check(lib.opj_setup_decoder(codec, parameters), "set up a decoder")
        check(lib.opj_read_header(stream, codec, ctypes.byref(image)), "read the main header")
        header = image.contents
        left, top = header.x0, header.y0
        height, width = header.y1 - top, header.x1 - left
        if header.numcomps != 1:
            raise CodestreamError(f"{header.numcomps} components, expected 1")
        row_stop, col_stop = min(rows[1], height), min(cols[1], width)
        if rows[0] >= row_stop or cols[0] >= col_stop:
            return np.empty((max(row_stop - rows[0], 0), max(col_stop - cols[0], 0)), np.uint16)
        area = (left + cols[0], top + rows[0], left + col_stop, top + row_stop)
        check(lib.opj_set_decode_area(codec, image, *area), f"set the decode area {area}")
        check(lib.opj_decode(codec, stream, image), "decode the codestream")
        component = image.contents.comps[0]
        if component.sgnd or component.prec > 16:
            raise CodestreamError(f"{component.prec}-bit samples (signed: {component.sgnd})")
        shape = (component.h, component.w)
        return np.ctypeslib.as_array(component.data, shape).astype(np.uint16)
    finally:
        if image:
            lib.opj_image_destroy(image)
        lib.opj_destroy_codec(codec)
        lib.opj_stream_destroy(stream)
