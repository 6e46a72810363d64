"""The payloads of the sequence header, frame, adapter and quality-map units, each with its
write and read side by side (nvc.bitstream)."""
from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import BitstreamError
from .primitives import (
    ASPECT_SINCE,
    CYCLE_SINCE,
    DEFAULT_PROFILE,
    FORMAT_VERSION,
    FRAME_NUMBERS,
    HASH_PREFIX_BYTES,
    LIMITS,
    LIVE_SINCE,
    MAX_GOP_CYCLE,
    NVC_ADAPTER_CODER_SINCE,
    CodedFrame,
    FrameType,
    LatentStrings,
    Limits,
    NumericProfile,
    Reader,
    Synthesis,
    write_varint,
)

__all__ = ["SequenceHeader", "write_frame", "read_frame", "frame_number", "Unreadable", "join_substreams",
           "split_substreams", "AdapterUnit", "QualityMap", "QUALITY_MAP_STEPS"]


def _blob(b: bytes) -> bytes:
    return write_varint(len(b)) + b


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
    sample_aspect: tuple[int, int] = (1, 1)  # format 12: a pixel's width : height, reduced

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
        if version < ASPECT_SINCE and self.sample_aspect != (1, 1):
            raise ValueError(f"format {version} has no sample aspect ratio (square pixels only)")
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
        if version >= ASPECT_SINCE:
            tail += b"".join(map(write_varint, self.sample_aspect))
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
        aspect = (r.varint("aspect numerator"), r.varint("aspect denominator")) \
            if version >= ASPECT_SINCE else (1, 1)
        if not r.done:  # the format version byte lies outside every checksum: a header of another
            # format's length says it was damaged
            raise BitstreamError(f"damaged stream: the sequence header has {len(payload) - r.pos} "
                                 f"bytes more than format {version}'s")
        header = cls(model_id, weights, width, height, fps_num, fps_den, frame_count,
                     intra_period, quality, matrix, profile, crc, synth, lift, drop, slope, cycle,
                     aspect)
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
        if not all(1 <= t <= limits.max_aspect_term for t in self.sample_aspect):
            raise BitstreamError(f"damaged stream: sample aspect ratio "
                                 f"{self.sample_aspect[0]}:{self.sample_aspect[1]} (each term 1 to "
                                 f"{limits.max_aspect_term})")


def write_frame(frame: CodedFrame, number: int | None = None) -> bytes:
    """A frame unit's payload; `number` (format 13 on: the frame's index) shares the type byte."""
    first = int(frame.kind) if number is None else int(frame.kind) + 2 * (number % FRAME_NUMBERS)
    parts = [bytes([first, len(frame.latents)])]
    for latent in frame.latents:
        parts += [_blob(latent.y), _blob(latent.z)]
    return b"".join(parts)


class Unreadable(BitstreamError):
    """A frame unit whose bytes are whole (its checksum holds) but not a frame's: an encoder's
    fault, or damage the checksum missed. A salvaging reader takes its frame for lost."""


def read_frame(payload: bytes, index: int, numbered: bool = False) -> CodedFrame:
    """A frame unit's payload (`numbered`: of format 13 on, whose type byte also numbers it:
    frame_number); Unreadable where it is not one."""
    try:
        return _frame(Reader(payload, f"frame {index}"), index, numbered)
    except BitstreamError as e:
        raise Unreadable(str(e)) from None


def _frame(r: Reader, index: int, numbered: bool) -> CodedFrame:
    kind_code = r.u8("frame type") % (2 if numbered else 256)
    if kind_code not in FrameType._value2member_map_:
        raise BitstreamError(f"damaged frame {index}: unknown frame type {kind_code}")
    kind = FrameType(kind_code)
    count = r.u8("latent count")
    expected = 1 if kind == FrameType.I else 2
    if count != expected:
        raise BitstreamError(f"damaged frame {index}: {kind.name}-frame with {count} latents")
    latents = [LatentStrings(r.blob("y string"), r.blob("z string")) for _ in range(count)]
    if not r.done:
        raise BitstreamError(f"damaged frame {index}: {len(r.data) - r.pos} trailing bytes")
    return CodedFrame(kind, latents)


def frame_number(payload: bytes) -> int:
    """The index, modulo FRAME_NUMBERS, that a numbered frame unit's payload gives its frame (one
    read_frame has read)."""
    return payload[0] // 2


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

