"""The .nvc container: the only package that packs bytes (STYLE 1, 2), in three modules:
`primitives` (magic, versions, limits, enums, varints, readers), `headers` (each unit's payload,
written and read side by side) and `units` (framing, packing, reading as the bytes arrive, and
salvage). Everything is imported from here: `from nvc.bitstream import pack`.

    stream  = MAGIC, FORMAT_VERSION (u8), unit*
    unit    = type (u8), length (varint), payload, crc32(type || payload) (u32 little endian)

Unit order: one SEQUENCE_HEADER, at most one ADAPTERS unit, at most one QUALITY_MAP unit (format 3),
then one FRAME unit per frame (format 10: a live stream ends with an END unit).
A frame payload is its type (u8), a latent count (u8), then per latent the y and z strings, each
a varint length and bytes; latent shapes follow from the header's frame size.
"""
from . import units as units  # its private parts, for tests
from .headers import *  # noqa: F403
from .primitives import *  # noqa: F403
from .units import *  # noqa: F403
