"""The .nvc container: the only module that packs bytes (STYLE 1, 2).

    stream  = MAGIC, FORMAT_VERSION (u8), unit*
    unit    = type (u8), length (varint), payload, crc32(type || payload) (u32 little endian)

Unit order: one SEQUENCE_HEADER, at most one ADAPTERS unit, at most one QUALITY_MAP unit (format 3),
then one FRAME unit per frame.
A frame payload is its type (u8), a latent count (u8), then per latent the y and z strings, each
a varint length and bytes; latent shapes follow from the header's frame size.
"""
from __future__ import annotations

import itertools
import select
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import BinaryIO

import numpy as np

from .errors import BitstreamError, StreamCut

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
FORMAT_VERSION = 11
ANY_INTRA_SINCE = 8
NVC_ADAPTER_CODER_SINCE = 9
LIVE_SINCE = 10
CYCLE_SINCE = 11
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


def _blob(b: bytes) -> bytes:
    return write_varint(len(b)) + b


# -- units ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SequenceHeader:
    model_id: int
    weights_hash: bytes  # first HASH_PREFIX_BYTES of the weights file's sha256
    width: int
    height: int
    fps_num: int
    fps_den: int
    frame_count: int
    intra_period: int
    quality: int  # 1 = lowest rate
    colour_matrix: int  # nvc.io.ColourMatrix code
    numeric_profile: int = DEFAULT_PROFILE  # format 3
    tables_crc: int = 0  # crc32 of the encoder's range-coder tables (format 3)
    synthesis: int = Synthesis.FLOAT32  # format 5
    gop_lift: int = 0  # format 7, in 1 / QUALITY_MAP_STEPS of a rung (nvc.schedule)
    gop_drop: int = 0
    gop_slope: int = 0
    gop_cycle: tuple[int, ...] = ()  # format 11, in the same steps, at most MAX_GOP_CYCLE

    def write(self, version: int = FORMAT_VERSION) -> bytes:
        """The payload in format `version` (older formats drop the fields they lack)."""
        if len(self.weights_hash) != HASH_PREFIX_BYTES:
            raise ValueError("weights_hash has the wrong length")
        if version < 5 and self.synthesis != Synthesis.FLOAT32:
            raise ValueError(f"format {version} has no synthesis precision (float32 only)")
        if version < 7 and (self.gop_lift or self.gop_drop or self.gop_slope):
            raise ValueError(f"format {version} has no GOP quality schedule (flat only)")
        if version < CYCLE_SINCE and self.gop_cycle:
            raise ValueError(f"format {version} has no GOP quality cycle")
        if len(self.gop_cycle) > MAX_GOP_CYCLE:
            raise ValueError(f"a GOP cycle has at most {MAX_GOP_CYCLE} P-frames")
        if version >= 3 and version < NumericProfile(self.numeric_profile).since:
            raise ValueError(f"format {version} cannot carry numeric profile {self.numeric_profile}")
        tail = bytes([self.numeric_profile]) + struct.pack("<I", self.tables_crc) \
            if version >= 3 else b""
        if version >= 5:
            tail += bytes([self.synthesis])
        if version >= 7:
            tail += bytes([self.gop_lift, self.gop_drop, self.gop_slope])
        if version >= CYCLE_SINCE:
            tail += bytes([len(self.gop_cycle), *self.gop_cycle])
        return b"".join([
            write_varint(self.model_id), self.weights_hash,
            *(write_varint(v) for v in (self.width, self.height, self.fps_num, self.fps_den,
                                        self.frame_count, self.intra_period)),
            bytes([self.quality, self.colour_matrix]), tail,
        ])

    @classmethod
    def read(cls, payload: bytes, version: int = FORMAT_VERSION) -> SequenceHeader:
        r = Reader(payload, "sequence header")
        model_id, weights = r.varint("model id"), r.take(HASH_PREFIX_BYTES, "weights hash")
        width, height, fps_num, fps_den, frame_count, intra_period = (
            r.varint(n) for n in ("width", "height", "fps numerator", "fps denominator",
                                  "frame count", "intra period"))
        quality, matrix = r.u8("quality"), r.u8("colour matrix")
        profile, crc = int(NumericProfile.FLOAT), 0
        if version >= 3:
            profile = r.u8("numeric profile")
            (crc,) = struct.unpack("<I", r.take(4, "tables crc"))
            if profile not in NumericProfile._value2member_map_ or \
                    version < NumericProfile(profile).since:
                raise BitstreamError(f"unsupported stream: unknown numeric profile {profile} in "
                                     f"format {version}")
        synth = r.u8("synthesis precision") if version >= 5 else int(Synthesis.FLOAT32)
        if synth not in Synthesis._value2member_map_:
            raise BitstreamError(f"unsupported stream: unknown synthesis precision {synth}")
        lift, drop, slope = (r.u8(f"GOP {f}") for f in ("lift", "drop", "slope")) \
            if version >= 7 else (0, 0, 0)
        cycle: tuple[int, ...] = ()
        if version >= CYCLE_SINCE:
            length = r.u8("GOP cycle length")
            if length > MAX_GOP_CYCLE:
                raise BitstreamError(f"damaged stream: a GOP cycle of {length} P-frames (at most "
                                     f"{MAX_GOP_CYCLE})")
            cycle = tuple(r.take(length, "GOP cycle"))
        if not r.done:  # the format version byte lies outside every checksum: a header of another
            # format's length says it was damaged
            raise BitstreamError(f"damaged stream: the sequence header has {len(payload) - r.pos} "
                                 f"bytes more than format {version}'s")
        header = cls(model_id, weights, width, height, fps_num, fps_den, frame_count,
                     intra_period, quality, matrix, profile, crc, synth, lift, drop, slope, cycle)
        if header.width == 0 or header.height == 0 or (
                header.frame_count == 0 and version < LIVE_SINCE):
            raise BitstreamError("damaged sequence header: zero width, height or frame count")
        if header.fps_den == 0 or header.intra_period == 0 or header.fps_num == 0:
            raise BitstreamError("damaged sequence header: zero frame rate or intra period")
        header.check(LIMITS)
        return header

    def check(self, limits: Limits) -> None:
        """Refuse declared sizes beyond the format's limits (one line naming the field)."""
        if max(self.width, self.height) > limits.max_side or \
                self.width * self.height > limits.max_pixels:
            raise BitstreamError(f"damaged or unsupported stream: frame size {self.width}x"
                                 f"{self.height} exceeds the format's limit ({limits.max_side} "
                                 f"per side, {limits.max_pixels} pixels)")
        if self.frame_count > limits.max_frames:
            raise BitstreamError(f"damaged stream: {self.frame_count} frames exceeds the format's "
                                 f"limit of {limits.max_frames}")
        if self.fps_num > limits.max_fps * self.fps_den:
            raise BitstreamError(f"damaged stream: frame rate {self.fps_num}/{self.fps_den} "
                                 f"exceeds {limits.max_fps} fps")
        if self.colour_matrix not in limits.colour_matrices:
            raise BitstreamError(f"damaged or unsupported stream: unknown colour matrix "
                                 f"{self.colour_matrix}")


def write_frame(frame: CodedFrame) -> bytes:
    parts = [bytes([int(frame.kind), len(frame.latents)])]
    for latent in frame.latents:
        parts += [_blob(latent.y), _blob(latent.z)]
    return b"".join(parts)


def read_frame(payload: bytes, index: int) -> CodedFrame:
    r = Reader(payload, f"frame {index}")
    kind_code = r.u8("frame type")
    if kind_code not in FrameType._value2member_map_:
        raise BitstreamError(f"damaged frame {index}: unknown frame type {kind_code}")
    kind = FrameType(kind_code)
    count = r.u8("latent count")
    expected = 1 if kind == FrameType.I else 2
    if count != expected:
        raise BitstreamError(f"damaged frame {index}: {kind.name}-frame with {count} latents")
    latents = [LatentStrings(r.blob("y string"), r.blob("z string")) for _ in range(count)]
    if not r.done:
        raise BitstreamError(f"damaged frame {index}: {len(payload) - r.pos} trailing bytes")
    return CodedFrame(kind, latents)


def join_substreams(runs: Sequence[bytes]) -> bytes:
    """A y string of profile 3: the byte length of every run but the last (varints), then the
    runs. Their number is not written: both sides derive it from the count of coded elements."""
    return b"".join(write_varint(len(r)) for r in runs[:-1]) + b"".join(runs)


def split_substreams(data: bytes, count: int, what: str = "y string") -> list[bytes]:
    """The `count` runs of a profile-3 string."""
    r = Reader(data, what)
    sizes = [r.varint("substream length") for _ in range(count - 1)]
    return [r.take(size, f"substream {i}") for i, size in enumerate(sizes)] + [data[r.pos:]]


@dataclass(frozen=True)
class AdapterUnit:
    """Instance adapters: which layers, how, the prior and the entropy-coded parameters."""

    kind: int  # nvc.adapters.AdapterKind
    seed: int  # A matrices are regenerated from it, never sent
    alpha: float
    step: float
    pi_spike: float
    sigma_spike: float
    sigma_slab: float
    layers: tuple[str, ...]  # module paths; on the wire (format 2) their index in the layer table
    ranks: tuple[int, ...]
    symbol_count: int
    coded: bytes
    legacy_coder: bool = False  # `coded` is CompressAI's rANS (formats before 9)

    def write(self, layer_table: Sequence[str]) -> bytes:
        """`layer_table`: every layer the model can adapt, in a fixed order (nvc.adapters)."""
        parts = [bytes([self.kind]), write_varint(self.seed),
                 struct.pack("<5f", self.alpha, self.step, self.pi_spike, self.sigma_spike,
                             self.sigma_slab), write_varint(len(self.layers))]
        for name, rank in zip(self.layers, self.ranks, strict=True):
            if name not in layer_table:
                raise ValueError(f"layer {name!r} cannot be adapted (not in the layer table)")
            parts += [write_varint(layer_table.index(name)), write_varint(rank)]
        parts += [write_varint(self.symbol_count), _blob(self.coded)]
        return b"".join(parts)

    @staticmethod
    def _layer(r: Reader, layer_table: Sequence[str], version: int) -> str:
        if version == 1:  # format 1 spelled the module path out
            try:
                return r.blob("layer name").decode("ascii")
            except UnicodeDecodeError:
                raise BitstreamError("damaged adapter unit: layer name is not ASCII") from None
        index = r.varint("layer index")
        if index >= len(layer_table):
            raise BitstreamError(f"damaged adapter unit: layer index {index} (the model has "
                                 f"{len(layer_table)})")
        return layer_table[index]

    @classmethod
    def read(cls, payload: bytes, layer_table: Sequence[str],
             version: int = FORMAT_VERSION) -> AdapterUnit:
        r = Reader(payload, "adapter unit")
        kind, seed = r.u8("adapter type"), r.varint("seed")
        floats = struct.unpack("<5f", r.take(20, "adapter prior"))
        count = r.varint("layer count")
        if count > LIMITS.max_layers:
            raise BitstreamError(f"damaged adapter unit: {count} layers (limit {LIMITS.max_layers})")
        layers, ranks = [], []
        for _ in range(count):
            layers.append(cls._layer(r, layer_table, version))
            ranks.append(r.varint("rank"))
            if not 1 <= ranks[-1] <= LIMITS.max_rank:
                raise BitstreamError(f"damaged adapter unit: rank {ranks[-1]} outside "
                                     f"1..{LIMITS.max_rank}")
        alpha, step, pi_spike, sigma_spike, sigma_slab = floats
        unit = cls(kind, seed, alpha, step, pi_spike, sigma_spike, sigma_slab, tuple(layers),
                   tuple(ranks), r.varint("symbol count"), r.blob("coded parameters"),
                   legacy_coder=version < NVC_ADAPTER_CODER_SINCE)
        if not r.done:
            raise BitstreamError("damaged adapter unit: trailing bytes")
        if unit.symbol_count > LIMITS.max_adapter_symbols:
            raise BitstreamError(f"damaged adapter unit: {unit.symbol_count} values (limit "
                                 f"{LIMITS.max_adapter_symbols})")
        if not all(np.isfinite(floats)) or unit.step <= 0:
            raise BitstreamError("damaged adapter unit: invalid quantisation step or prior")
        return unit


@dataclass(frozen=True)
class QualityMap:
    """Where the clip is coded at which quality: one ladder position per latent position of the
    padded frame (16x16 pixels), in steps of 1 / QUALITY_MAP_STEPS of a rung, deflated. Position
    = (value - origin) / QUALITY_MAP_STEPS: 0 is the first rung (quality 1), negative positions lie
    below it (format 4; format 3 has no origin field and means 0)."""

    height: int  # latent grid
    width: int
    values: bytes  # height * width bytes, row-major
    origin: int = 0  # the value of position 0, 0..255

    def write(self, version: int = FORMAT_VERSION) -> bytes:
        if len(self.values) != self.height * self.width:
            raise ValueError("quality map values do not fill the grid")
        if not 0 <= self.origin <= 255 or (version < 4 and self.origin):
            raise ValueError(f"quality map origin {self.origin} cannot be written in format "
                             f"{version}")
        origin = bytes([self.origin]) if version >= 4 else b""
        return write_varint(self.height) + write_varint(self.width) + origin + _blob(
            zlib.compress(self.values, 9))

    @classmethod
    def read(cls, payload: bytes, grid: tuple[int, int], version: int = FORMAT_VERSION
             ) -> QualityMap:
        """`grid`: the latent grid the sequence header implies; anything else is refused."""
        r = Reader(payload, "quality map")
        height, width = r.varint("height"), r.varint("width")
        if (height, width) != grid:
            raise BitstreamError(f"damaged quality map: {height}x{width} for a {grid[0]}x{grid[1]} "
                                 f"latent grid")
        origin = r.u8("origin") if version >= 4 else 0
        packed = r.blob("values")
        if not r.done:
            raise BitstreamError("damaged quality map: trailing bytes")
        inflate = zlib.decompressobj()
        try:  # never inflate more than the grid holds (a deflate bomb stops here)
            values = inflate.decompress(packed, height * width + 1)
        except zlib.error:
            raise BitstreamError("damaged quality map: bad deflate data") from None
        if len(values) != height * width or not inflate.eof:
            raise BitstreamError(f"damaged quality map: {len(values)} values for {height * width} "
                                 f"positions")
        return cls(height, width, values, origin)


QUALITY_MAP_STEPS = 32


# -- the stream -----------------------------------------------------------------------------------
@dataclass
class Stream:
    header: SequenceHeader
    frames: list[CodedFrame]
    adapters: bytes | None = None
    unit_bytes: dict[str, int] = field(default_factory=dict)  # bytes per unit kind, framing included
    version: int = FORMAT_VERSION
    quality_map: bytes | None = None  # a QualityMap payload (read it with the header's grid)
    # written live (format 10): the header's count was 0 and an end unit carried it; `header` has
    # the count once the end unit is read
    live: bool = False


def _unit(kind: UnitType, payload: bytes) -> bytes:
    crc = zlib.crc32(bytes([kind]) + payload)
    return bytes([kind]) + write_varint(len(payload)) + payload + struct.pack("<I", crc)


def pack_head(header: SequenceHeader, adapters: bytes | None = None,
              version: int = FORMAT_VERSION, quality_map: bytes | None = None) -> bytes:
    """Everything before the first frame: magic, version, sequence header, adapter unit, quality
    map (an older `version`, 2 or 3, writes that format's header). A header with frame count 0
    starts a live stream (`pack_end` closes it)."""
    if header.frame_count == 0 and version < LIVE_SINCE:
        raise ValueError(f"format {version} has no live streams (a frame count of 0)")
    out = [MAGIC, bytes([version]), _unit(UnitType.SEQUENCE_HEADER, header.write(version))]
    if adapters is not None:
        out.append(_unit(UnitType.ADAPTERS, adapters))
    if quality_map is not None:
        out.append(_unit(UnitType.QUALITY_MAP, quality_map))
    return b"".join(out)


def pack_frame(frame: CodedFrame) -> bytes:
    """One frame unit, framing included: a stream is pack_head + pack_frame for every frame."""
    return _unit(UnitType.FRAME, write_frame(frame))


def pack_end(frame_count: int) -> bytes:
    """The end unit of a live stream: how many frames it holds."""
    return _unit(UnitType.END, write_varint(frame_count))


def pack(stream: Stream) -> bytes:
    frames = b"".join(pack_frame(f) for f in stream.frames)
    if not stream.live:
        return pack_head(stream.header, stream.adapters, stream.version, stream.quality_map) \
            + frames
    head = pack_head(replace(stream.header, frame_count=0), stream.adapters, stream.version,
                     stream.quality_map)
    return head + frames + pack_end(len(stream.frames))


def _read_units(r: Reader, damage: Damage):
    """(type, payload, bytes with framing) of every unit, each checked, as they are read. Damage
    raises, unless `damage.salvage`: then a unit that cannot be read comes as (None, the error,
    the bytes passed over) and reading goes on at the next whole unit (_pass_over)."""
    try:
        magic = r.take(len(MAGIC), "magic")
    except BitstreamError:  # shorter than the magic
        magic = b""
    if magic != MAGIC:
        raise BitstreamError("not an nvc stream (bad magic bytes)")
    version = r.u8("format version")
    if version > FORMAT_VERSION:
        raise BitstreamError(f"stream format version {version} is newer than this nvc reads "
                             f"({FORMAT_VERSION}); upgrade nvc")
    if version == 0:
        raise BitstreamError("damaged stream: format version 0")
    yield version
    index = 0
    while not r.done:
        start = r.pos
        r.mark()
        try:
            kind_code, payload = _take_unit(r, index)
        except BitstreamError as e:
            if not damage.salvage:
                raise
            yield None, *_pass_over(r, start, e, index)
            index += 1
            continue
        if kind_code not in UnitType._value2member_map_ or (
                kind_code == UnitType.END and version < LIVE_SINCE):
            raise BitstreamError(f"damaged stream: unknown unit type {kind_code} in unit {index}")
        yield UnitType(kind_code), payload, r.pos - start
        index += 1


def _take_unit(r: Reader, index: int) -> tuple[int, bytes]:
    """The type code and payload of the unit here, its checksum checked."""
    kind_code = r.u8(f"unit {index} type")
    size = r.varint(f"unit {index} length")
    if size > LIMITS.max_unit_bytes:
        raise BitstreamError(f"damaged stream: unit {index} declares {size} bytes (limit "
                             f"{LIMITS.max_unit_bytes})")
    payload = r.take(size, f"unit {index} payload")
    (crc,) = struct.unpack("<I", r.take(4, f"unit {index} checksum"))
    if zlib.crc32(bytes([kind_code]) + payload) != crc:
        raise ChecksumError(f"damaged stream: checksum mismatch in unit {index}", kind_code)
    return kind_code, payload


def _pass_over(r: Reader, start: int, error: BitstreamError, index: int
               ) -> tuple[BitstreamError, int]:
    """After the unit at `start` failed to read with `error`, the reader at the next whole unit
    (or the end) and (what to report, the bytes passed over). A unit read to its checksum is
    passed over as its length says when the end or a unit's framing follows (its checksum is its
    own reader's matter); otherwise its length or framing is damaged (or bytes were lost or
    repeated), and the first whole unit after its type byte is searched for. Where none comes,
    `error` is raised (a cut), or, for a unit read whole, the rest is that unit's."""
    end = r.pos
    whole = isinstance(error, ChecksumError)
    if whole and (r.done or _next_whole_unit(r, here=True) == 0):
        return error, end - start
    r.rewind(start + 1)
    skip = _next_whole_unit(r)
    if skip is None:  # the bytes end first: the rest is the damaged unit's
        if not whole:
            raise error
        r.take(len(r.peek(LIMITS.max_unit_bytes)), "damaged unit")  # (what the search read)
        return error, r.pos - start
    r.take(skip, "damaged bytes")
    return BitstreamError(f"damaged stream: unit {index}'s length or framing is damaged "
                          f"({r.pos - start} bytes passed over to the next whole unit)"), \
        r.pos - start


_RESYNC_TYPES = (UnitType.FRAME, UnitType.END)  # what may follow a frame unit
_RESYNC_WINDOW = 1 << 16


def _next_whole_unit(r: Reader, here: bool = False) -> int | None:
    """How many bytes from the reader's position (which stays) the first whole frame or end unit
    begins (its checksum sound, followed by the end or another such unit's type byte); None where
    the bytes end first. With `here`: 0 where a frame or end unit's framing begins here (its
    checksum not checked), else None. Reads ahead as far as a candidate's length asks (LIMITS
    bounds it); a pipe blocks until the bytes come."""
    want, at = _RESYNC_WINDOW, 0
    while True:
        buf = r.peek(want)
        ended = len(buf) < want
        seen = {t: buf.find(t, at) for t in _RESYNC_TYPES}  # each type byte's next place, or -1
        while True:
            hits = [k for k in seen.values() if k >= 0]
            if not hits or here and min(hits) > 0:
                if ended or here:
                    return None
                at, want = len(buf), 2 * want
                break
            at = min(hits)
            found = _whole_unit(buf, at, ended, checksum=not here)
            if found:
                return at
            if found is None:  # a candidate longer than the bytes at hand
                want *= 2
                break
            if here:
                return None
            at += 1
            seen = {t: k if k >= at or k < 0 else buf.find(t, at) for t, k in seen.items()}


def _whole_unit(buf: bytes, at: int, ended: bool, checksum: bool = True) -> bool | None:
    """Whether a whole frame or end unit begins at buf[at] (see _next_whole_unit; its framing
    alone without `checksum`); None where `buf` stops too soon to say and more may come (not
    `ended`)."""
    size = shift = 0
    i = at + 1
    while True:
        if i >= len(buf):
            return False if ended else None
        byte = buf[i]
        i += 1
        size |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift > 63:
            return False
    if size > LIMITS.max_unit_bytes:
        return False
    end = i + size + 4
    if end >= len(buf) and not ended:
        return None
    if end > len(buf) or end < len(buf) and buf[end] not in _RESYNC_TYPES:
        return False
    if not checksum:
        return True
    view = memoryview(buf)
    (crc,) = struct.unpack_from("<I", buf, i + size)
    return zlib.crc32(view[i:i + size], zlib.crc32(view[at:at + 1])) == crc


@dataclass
class Damage:
    """What a reader with `salvage` on passed over: the frames whose units could not be read
    (each comes out as None: bitstream.LOST), the first such error, and what the decoder made of
    them (codec.iter_decoded): the frames it concealed, and the P-frames it decoded from a
    concealed one, up to the next whole I-frame (drift)."""

    salvage: bool = False
    lost: list[int] = field(default_factory=list)
    first: BitstreamError | None = None
    concealed: list[int] = field(default_factory=list)
    drift: list[int] = field(default_factory=list)


LOST = None  # a frame whose unit failed its checksum, from a reader that salvages


class FrameUnits(Iterator[CodedFrame | None]):
    """The frames of a stream as they are read (open_units), how many so far (`count`), and
    whether the next one's bytes have begun to arrive (`ready`: Reader.ready). With `keep_cut`,
    a live stream cut short ends at the cut instead of raising. With `salvage`, a frame unit
    whose checksum fails comes out as LOST (`damage` lists them), and any stream ends at its first
    unit that cannot be read after a whole one (a file of known length cut short) instead of
    raising; `cut` is that unit's error, raised or not."""

    def __init__(self, frames: Iterator[CodedFrame | None], r: Reader, damage: Damage):
        """`damage`: the one `frames` reports to (and reads `salvage` from)."""
        self._frames, self._reader, self.damage = frames, r, damage
        self.count, self.keep_cut = 0, False
        self.cut: BitstreamError | None = None

    @property
    def salvage(self) -> bool:
        return self.damage.salvage

    @salvage.setter
    def salvage(self, on: bool) -> None:
        self.damage.salvage = on

    def __next__(self) -> CodedFrame | None:
        try:
            frame = next(self._frames)
        except BitstreamError as e:
            self.cut = e
            if not (self.salvage and self.count or self.keep_cut and isinstance(e, StreamCut)):
                raise
            raise StopIteration from None
        self.count += 1
        return frame

    def ready(self) -> bool:
        return self._reader.ready()


def open_units(r: Reader) -> tuple[Stream, FrameUnits]:
    """Read a stream's head (everything before its first frame) and return it (with no frames)
    and an iterator over its frames, each read and checked only when drawn (a pipe's as it
    arrives); the iterator counts each unit into the stream's `unit_bytes` and raises
    BitstreamError where the stream is damaged or ends early."""
    damage = Damage()  # its `salvage` is off while the head is read: damage there raises
    units = _read_units(r, damage)
    version: int = next(units)
    stream: Stream | None = None
    rest: Iterator = iter(())  # the frame units and what follows them
    for kind, payload, size in units:  # no frame decodes without the head: salvage is off here
        if kind == UnitType.SEQUENCE_HEADER:
            if stream is not None:
                raise BitstreamError("damaged stream: two sequence headers")
            header = SequenceHeader.read(payload, version)
            stream = Stream(header, [], version=version, live=header.frame_count == 0,
                            unit_bytes={"container": len(MAGIC) + 1})
        elif stream is None:
            raise BitstreamError("damaged stream: first unit is not the sequence header")
        elif kind == UnitType.ADAPTERS:
            if stream.adapters is not None or stream.quality_map is not None:
                raise BitstreamError("damaged stream: adapter unit out of place")
            stream.adapters = payload
        elif kind == UnitType.QUALITY_MAP:
            if stream.quality_map is not None:
                raise BitstreamError("damaged stream: quality map out of place")
            stream.quality_map = payload
        else:
            rest = itertools.chain([(kind, payload, size)], units)
            break
        _count(stream, kind.name.lower(), size)
    if stream is None:
        raise BitstreamError("truncated stream: no sequence header")
    return stream, FrameUnits(_frames(stream, rest, damage), r, damage)


def _count(stream: Stream, name: str, size: int) -> None:
    stream.unit_bytes[name] = stream.unit_bytes.get(name, 0) + size


_MISPLACED = {UnitType.SEQUENCE_HEADER: "two sequence headers",
              UnitType.ADAPTERS: "adapter unit out of place",
              UnitType.QUALITY_MAP: "quality map out of place"}


def _frames(stream: Stream, units, damage: Damage) -> Iterator[CodedFrame | None]:
    count, declared, ended = 0, stream.header.frame_count, False
    for kind, payload, size in _cut_short(stream, units):
        if ended:
            raise BitstreamError("damaged stream: a unit after the end unit")
        if kind is None:  # taken for a frame's, where one may still come
            if stream.live and isinstance(payload, ChecksumError) and \
                    payload.kind_code == UnitType.END:  # the frames before it are whole
                raise ChecksumError(f"{payload} (the end unit: the frame count unread)",
                                    payload.kind_code)
            if count >= declared and not stream.live:
                raise payload
            damage.first = damage.first or payload
            damage.lost.append(count)
            _count(stream, "lost", size)
            count += 1
            yield LOST
            continue
        if kind == UnitType.FRAME:
            if count >= declared and not stream.live:
                raise BitstreamError(f"damaged stream: more frames than the header's {declared}")
            frame = read_frame(payload, count)
            if frame.kind == FrameType.P and count == 0:
                raise BitstreamError("damaged stream: first frame is a P-frame")
            _count(stream, f"frame_{frame.kind.name}", size)
            count += 1
            yield frame
        elif kind == UnitType.END:
            r = Reader(payload, "end unit")
            ended = r.varint("frame count") == count and r.done and stream.live and count > 0
            if not ended:
                why = "that does not count them" if stream.live else "in a stream of known length"
                raise BitstreamError(f"damaged stream: an end unit after {count} frames {why}")
            _count(stream, "end", size)
            stream.header = replace(stream.header, frame_count=count)
        else:
            raise BitstreamError("damaged stream: " + _MISPLACED[kind])
    if stream.live and not ended:
        raise StreamCut(f"truncated stream: no end unit after {count} frames (a live stream cut "
                        "short)")
    if count < declared:
        raise Truncated(f"truncated stream: {count} of {declared} frames present")


def _cut_short(stream: Stream, units):
    """The units; a live stream that stops inside a unit is cut short there (StreamCut)."""
    try:
        yield from units
    except Truncated as e:
        if stream.live:
            raise StreamCut(f"{e} (a live stream cut short)") from e
        raise


def unpack(data: bytes, keep_cut: bool = False) -> Stream:
    """The whole stream; with `keep_cut`, a live stream cut short holds the frames before the cut
    (its header's frame count stays 0, `len(stream.frames)` counts them)."""
    stream, frames = open_units(Reader(data))
    frames.keep_cut = keep_cut
    stream.frames = [f for f in frames if f is not None]  # none is LOST: no salvage here
    return stream
