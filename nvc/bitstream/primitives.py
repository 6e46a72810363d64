"""The container's primitives: magic, format versions, limits, the enums a stream's fields
take, varints, and bounded readers over bytes and files (nvc.bitstream)."""
from __future__ import annotations

import select
from dataclasses import dataclass
from enum import IntEnum
from typing import BinaryIO

from ..errors import BitstreamError

__all__ = ["MAGIC", "FORMAT_VERSION", "ANY_INTRA_SINCE", "NVC_ADAPTER_CODER_SINCE", "LIVE_SINCE",
           "CYCLE_SINCE", "ASPECT_SINCE", "NUMBERED_SINCE", "FLOAT64_TABLES_SINCE", "FRAME_NUMBERS",
           "MAX_GOP_CYCLE", "HASH_PREFIX_BYTES", "Limits", "LIMITS",
           "NumericProfile", "SKIP_BELOW_INDEX", "DEFAULT_PROFILE", "Synthesis",
           "SYNTHESIS_NAMES", "FrameType", "LatentStrings", "CodedFrame", "UnitType",
           "write_varint", "ChecksumError", "Truncated", "Reader", "READ_CHUNK", "FileReader"]

MAGIC = b"NVC\x89"
# 2: adapter layers as indices into the model's layer table (format 1, names, still read).
# 3: the sequence header ends with a numeric profile and the coder tables' crc32 (formats 1 and 2
#    have neither and decode with the float profile).
# 4: the quality map names its origin (the value of ladder position 0), so positions reach below
#    the first rung (format 3 maps have origin 0).
# 5: the sequence header ends with the precision of the synthesis transforms (earlier formats:
#    float32).
# 6: numeric profile 3: y strings are substreams of nvc's own range coder (nvc.models.rans).
# 7: the sequence header ends with the GOP's quality schedule (nvc.schedule: the I-frame's lift
#    above the quality, the P-frames' drop below it and its slope over the GOP, a byte each;
#    earlier formats: flat).
# 8: a frame between the GOP's I-frames may be an I-frame (the encoder's RD choice); earlier
#    formats have I-frames at the intra period's multiples only.
# 9: the adapter unit's parameters are coded by nvc's range coder (nvc.models.rans); earlier
#    formats, by CompressAI's (the same table; it is imported only to decode them).
# 10: a live stream: the sequence header's frame count is 0 (not known when it was written, as
#    when coding a pipe) and an end unit, last, carries it.
# 11: the sequence header ends with the GOP schedule's cycle over the P-frames (nvc.schedule: a
#    byte for its length, 0 for none, then a byte a P-frame; earlier formats: none).
# 12: the sequence header ends with the sample (pixel) aspect ratio, two varints (anamorphic SD
#    video; earlier formats: square pixels, 1:1).
# 13: a frame unit's first byte numbers the frame as well as typing it: type + 2 * (index mod
#    FRAME_NUMBERS), no byte more; a reader tells whole units lost, repeated or out of order, and
#    how many frames a damaged stretch held (earlier formats: the type alone).
# 14: the range coder's tables are built in float64 (nvc.models.priors: every machine builds the
#    same ones); earlier formats' tables, in float32, as CompressAI builds them (a machine whose
#    float32 functions round otherwise builds others, and refuses the stream by its tables' crc).
FORMAT_VERSION = 14
ANY_INTRA_SINCE = 8
NVC_ADAPTER_CODER_SINCE = 9
LIVE_SINCE = 10
CYCLE_SINCE = 11
ASPECT_SINCE = 12
NUMBERED_SINCE = 13
FLOAT64_TABLES_SINCE = 14
FRAME_NUMBERS = 128  # the frame type byte's other 7 bits
MAX_GOP_CYCLE = 16  # nvc.schedule.MAX_CYCLE
HASH_PREFIX_BYTES = 8


@dataclass(frozen=True)
class Limits:
    """What a stream may declare; a reader refuses anything beyond, before allocating (DESIGN:
    Bitstream). Frame sizes cover 8K UHD; frame counts a day of 60 fps video."""

    max_side: int = 8192  # width and height, pixels
    max_pixels: int = 7680 * 4320  # width * height
    max_frames: int = 60 * 60 * 60 * 24
    max_fps: int = 1000  # frames per second, numerator / denominator
    max_unit_bytes: int = 1 << 28  # one unit's payload
    max_layers: int = 256  # adapter unit
    max_rank: int = 256
    max_adapter_symbols: int = 1 << 24
    colour_matrices: tuple[int, ...] = (1, 6)  # nvc.io.ColourMatrix codes
    max_aspect_term: int = 65535  # either term of the sample aspect ratio (H.264's VUI: 16 bits)


LIMITS = Limits()


class NumericProfile(IntEnum):
    """How the entropy parameters (scale indexes, means) were computed, and which elements of y
    the stream carries."""

    FLOAT = 0  # the float hyper-synthesis: exact only on the encoder's kind of device and threads
    EXACT_HYPER = 1  # nvc.models.exact: integer arithmetic, the same on every device
    EXACT_SKIP = 2  # EXACT_HYPER; elements below SKIP_BELOW_INDEX are not coded (decoded as the mean)
    SUBSTREAMS = 3  # EXACT_SKIP; y coded by nvc's rANS in substreams (nvc.models.rans; format 6)

    @property
    def skip_below(self) -> int:
        """Elements whose scale index is below this are not coded (nvc.models.range_coder)."""
        return SKIP_BELOW_INDEX if self >= NumericProfile.EXACT_SKIP else 0

    @property
    def substreams(self) -> bool:
        """y strings are substreams of nvc's coder, not CompressAI's single stream."""
        return self == NumericProfile.SUBSTREAMS

    @property
    def since(self) -> int:
        """The first format version that can carry this profile."""
        return 6 if self.substreams else 3


# Scale index 6 = scales <= 0.2035, where a symbol other than 0 has probability <= 1.4%: skipping
# them measured -2.3% BD-rate on the evaluation clips (index 1: -0.2%, 3: -1.3%, 9: +0.6%; RESULTS).
SKIP_BELOW_INDEX = 6
DEFAULT_PROFILE = NumericProfile.SUBSTREAMS


class Synthesis(IntEnum):
    """The precision the synthesis transforms run in, on both sides (format 5): the encoder builds
    its references the way the decoder will. BFLOAT16 (autocast; the entropy stage and the warp stay
    float32) decodes faster where the device has bf16 units, and reproduces the encoder's frames
    bit-exactly only on the encoder's kind of device; FLOAT32 is portable within 1 code value."""

    FLOAT32 = 0
    BFLOAT16 = 1


SYNTHESIS_NAMES = {"fp32": Synthesis.FLOAT32, "bf16": Synthesis.BFLOAT16}  # as the CLI spells them


class FrameType(IntEnum):
    I = 0  # noqa: E741 - the field's own name
    P = 1


@dataclass
class LatentStrings:
    """Coded form of one latent: y and z strings for a batch of one."""

    y: bytes
    z: bytes


@dataclass
class CodedFrame:
    kind: FrameType
    latents: list[LatentStrings]  # I: [image]; P: [motion, residual]


class UnitType(IntEnum):
    SEQUENCE_HEADER = 1
    ADAPTERS = 2  # reserved in format 1 for instance adapters
    FRAME = 3
    QUALITY_MAP = 4  # format 3: a quality per latent position (regions of interest)
    END = 5  # format 10: the frame count of a live stream, after its last frame


# -- primitive readers / writers ------------------------------------------------------------------
def write_varint(value: int) -> bytes:
    if value < 0:
        raise ValueError("varint must be non-negative")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


class ChecksumError(BitstreamError):
    """A unit's bytes do not match its checksum; `kind_code`: its type byte as read."""

    def __init__(self, message: str, kind_code: int = 0):
        super().__init__(message)
        self.kind_code = kind_code


class Truncated(BitstreamError):
    """The bytes end before what is being read (Reader), or before the frames a header declares."""


class Reader:
    """Bounds-checked cursor; every overrun is a Truncated error naming what was being read."""

    def __init__(self, data: bytes, what: str = "stream"):
        self.data, self.pos, self.what = data, 0, what

    def take(self, n: int, field_name: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Truncated(f"truncated {self.what}: {field_name} needs {n} bytes, "
                                 f"{len(self.data) - self.pos} left")
        out = self.data[self.pos: self.pos + n]
        self.pos += n
        return out

    def u8(self, field_name: str) -> int:
        return self.take(1, field_name)[0]

    def varint(self, field_name: str) -> int:
        value = shift = 0
        while True:
            byte = self.u8(field_name)
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 63:
                raise BitstreamError(f"damaged {self.what}: {field_name} is not a valid varint")

    def blob(self, field_name: str) -> bytes:
        return self.take(self.varint(field_name + " length"), field_name)

    @property
    def done(self) -> bool:
        return self.pos == len(self.data)

    def ready(self) -> bool:
        """Whether reading on would find bytes waiting (in memory: always)."""
        return True

    def peek(self, n: int) -> bytes:
        """Up to `n` bytes from here, not taken (fewer only where the bytes end)."""
        return self.data[self.pos: self.pos + n]

    def mark(self) -> None:
        """Where `rewind` may go back to (a unit's start)."""

    def rewind(self, pos: int) -> None:
        """Back to `pos`, no further than the last `mark`."""
        self.pos = pos


READ_CHUNK = 1 << 20


class FileReader(Reader):
    """A Reader over a binary file read as it arrives (a pipe): `take` blocks until its bytes
    are there or the file ends; `done` once it has ended; `ready` says whether a read would find
    bytes waiting. Give it an unbuffered file (`sys.stdin.buffer.raw`) for `ready` to see every
    byte that has arrived."""

    def __init__(self, f: BinaryIO, what: str = "stream"):
        super().__init__(b"", what)  # `data`: the bytes read and not yet taken
        self.f = f
        self._taken: bytearray | None = None  # since the mark, for rewind

    def _fill(self, n: int) -> None:
        """Read until `n` bytes wait or the file ends. An unbuffered pipe returns what has
        arrived: read on, a MiB at most at a time, so that a length the bytes cannot back
        allocates nothing."""
        parts, got = [self.data], len(self.data)
        while got < n:
            chunk = self.f.read(min(n - got, READ_CHUNK))
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        self.data = b"".join(parts)

    def take(self, n: int, field_name: str) -> bytes:
        self._fill(n)
        if n < 0 or len(self.data) < n:  # what came stays to be read (peek, a salvaging reader)
            raise Truncated(f"truncated {self.what}: {field_name} needs {n} bytes, "
                                 f"{len(self.data)} left")
        out, self.data = self.data[:n], self.data[n:]
        self.pos += n
        if self._taken is not None:
            self._taken += out
        return out

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self.data[:n]

    def mark(self) -> None:
        self._taken = bytearray()

    def rewind(self, pos: int) -> None:
        back = self.pos - pos
        if self._taken is None or not 0 <= back <= len(self._taken):
            raise ValueError(f"cannot rewind {back} bytes")
        self.data = bytes(self._taken[len(self._taken) - back:]) + self.data
        del self._taken[len(self._taken) - back:]
        self.pos = pos

    @property
    def done(self) -> bool:
        if not self.data:
            self.data = self.f.read(1)
        return not self.data

    def ready(self) -> bool:
        """Whether bytes are waiting (always, for a regular file or one that cannot say)."""
        if self.data:
            return True
        try:
            return bool(select.select([self.f.fileno()], [], [], 0)[0])
        except (AttributeError, OSError, ValueError):  # no descriptor (BytesIO), or none to poll
            return True

    def take_all(self) -> bytes:
        """Everything left, to the end of the file."""
        out, self.data = self.data + self.f.read(), b""
        self.pos += len(out)
        return out

