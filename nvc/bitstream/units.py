"""The stream: units framed and checksummed, packed, and read back as they arrive, a damaged
one passed over where the reader salvages (nvc.bitstream)."""
from __future__ import annotations

import itertools
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

from ..errors import BitstreamError, StreamCut
from .headers import SequenceHeader, Unreadable, frame_number, read_frame, write_frame
from .primitives import (
    FORMAT_VERSION,
    FRAME_NUMBERS,
    LIMITS,
    LIVE_SINCE,
    MAGIC,
    NUMBERED_SINCE,
    ChecksumError,
    CodedFrame,
    FrameType,
    Reader,
    Truncated,
    UnitType,
    write_varint,
)

__all__ = ["Stream", "pack_head", "pack_frame", "pack_end", "pack", "Damage", "LOST",
           "FrameUnits", "open_units", "unpack", "Misnumbered", "Unreadable"]


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


def pack_frame(frame: CodedFrame, number: int | None = None) -> bytes:
    """One frame unit, framing included: a stream is pack_head + pack_frame for every frame;
    `number`: the frame's index (format 13 on; None: an older format's unit)."""
    return _unit(UnitType.FRAME, write_frame(frame, number))


def pack_end(frame_count: int) -> bytes:
    """The end unit of a live stream: how many frames it holds."""
    return _unit(UnitType.END, write_varint(frame_count))


def pack(stream: Stream) -> bytes:
    numbered = stream.version >= NUMBERED_SINCE
    frames = b"".join(pack_frame(f, i if numbered else None) for i, f in enumerate(stream.frames))
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
    r = Reader(buf, "candidate unit")
    r.pos = at + 1
    try:
        size = r.varint("length")
    except Truncated:
        return False if ended else None
    except BitstreamError:  # not a varint
        return False
    i = r.pos
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
    """What a reader with `salvage` on passed over: the frames lost, their units damaged or (a
    numbered stream's) missing (each comes out as None: bitstream.LOST), the first such error, a
    damaged adapter unit, and what the decoder made of them (decoding.iter_decoded): the frames it
    concealed (those before the first it decoded, too, `filled`), and the P-frames it decoded from
    a concealed one, up to the next whole I-frame (drift)."""

    salvage: bool = False
    lost: list[int] = field(default_factory=list)
    first: BitstreamError | None = None
    concealed: list[int] = field(default_factory=list)
    drift: list[int] = field(default_factory=list)
    adapters: BitstreamError | None = None  # the adapter unit's damage: decoded without them
    filled: list[int] = field(default_factory=list)  # concealed before any frame was decoded,
    # with the first that was


LOST = None  # a frame whose unit failed its checksum, from a reader that salvages


class FrameUnits(Iterator[CodedFrame | None]):
    """The frames of a stream as they are read (open_units), how many so far (`count`), and
    whether the next one's bytes have begun to arrive (`ready`: Reader.ready). With `keep_cut`,
    a live stream cut short ends at the cut instead of raising. With `salvage`, a frame unit
    whose checksum fails, or whose bytes are not a frame's (Unreadable), comes out as LOST
    (`damage` lists them), and any stream ends at its first unit that cannot be read after a
    whole one (a file of known length cut short) instead of raising; `cut` is that unit's error,
    raised or not."""

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


def open_units(r: Reader, salvage: bool = False) -> tuple[Stream, FrameUnits]:
    """Read a stream's head (everything before its first frame) and return it (with no frames)
    and an iterator over its frames, each read and checked only when drawn (a pipe's as it
    arrives); the iterator counts each unit into the stream's `unit_bytes` and raises
    BitstreamError where the stream is damaged or ends early. With `salvage` (FrameUnits), an
    adapter unit that fails its checksum is passed over (`damage.adapters`: the frames decode
    with the base decoder) and a unit after the head that cannot be read is frame 0, lost; the
    sequence header's or the quality map's damage still raises (no frame decodes without)."""
    damage = Damage(salvage)
    units = _read_units(r, damage)
    version: int = next(units)
    stream: Stream | None = None
    rest: Iterator = iter(())  # the frame units and what follows them
    for kind, payload, size in units:
        if kind is None:  # salvaging
            if stream is None or _kind_code(payload) in (UnitType.SEQUENCE_HEADER,
                                                         UnitType.QUALITY_MAP):
                what = "quality map" if _kind_code(payload) == UnitType.QUALITY_MAP and \
                    stream is not None else "sequence header"
                raise BitstreamError(f"{payload}, the {what}: no frame decodes without it")
            if _kind_code(payload) == UnitType.ADAPTERS and stream.adapters is None and \
                    stream.quality_map is None and damage.adapters is None:
                damage.adapters = payload
                _count(stream, "lost", size)
                continue
            rest = itertools.chain([(kind, payload, size)], units)
            break
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


def _kind_code(error: BitstreamError) -> int | None:
    """The type byte of a unit that failed its checksum (as read), else None."""
    return error.kind_code if isinstance(error, ChecksumError) else None


def _count(stream: Stream, name: str, size: int) -> None:
    stream.unit_bytes[name] = stream.unit_bytes.get(name, 0) + size


_MISPLACED = {UnitType.SEQUENCE_HEADER: "two sequence headers",
              UnitType.ADAPTERS: "adapter unit out of place",
              UnitType.QUALITY_MAP: "quality map out of place"}


def _frames(stream: Stream, units, damage: Damage) -> Iterator[CodedFrame | None]:
    """The frames of the units after the head, LOST for each that a salvaging reader could not
    read. A numbered stream (format 13) says how many those are: the next frame's number (or a
    live stream's end unit) counts the frames a damaged stretch held (none for bytes inserted
    between units), and finds whole units lost (their frames LOST) or repeated (passed over)
    where no unit was damaged; an older stream's damaged stretch counts as one frame."""
    count, declared, ended = 0, stream.header.frame_count, False
    numbered = stream.version >= NUMBERED_SINCE
    passed = 0  # damaged stretches since the last whole unit, whose frames a number will count
    for kind, payload, size in _cut_short(stream, units):
        if ended:
            raise BitstreamError("damaged stream: a unit after the end unit")
        if kind == UnitType.FRAME:
            try:
                frame = read_frame(payload, count, numbered)
            except Unreadable as e:  # whole, but not a frame: lost, as a damaged unit is
                if not damage.salvage:
                    raise
                kind, payload = None, e
        if kind is None:  # taken for a frame's, where one may still come
            if stream.live and _kind_code(payload) == UnitType.END:  # the frames before it
                # are whole
                raise ChecksumError(f"{payload} (the end unit: the frame count unread)",
                                    payload.kind_code)
            if count >= declared and not stream.live:
                raise payload
            damage.first = damage.first or payload
            _count(stream, "lost", size)
            if numbered:
                passed += 1
            else:
                yield from _lose(damage, count, 1)
                count += 1
            continue
        if kind == UnitType.FRAME:
            missing = (frame_number(payload) - count) % FRAME_NUMBERS if numbered else 0
            behind = missing >= FRAME_NUMBERS // 2  # a unit repeated (or late): passed over
            if missing and (behind or not passed):  # whole units lost, repeated or out of order
                error = _misnumbered(count, missing)
                if not damage.salvage:
                    raise error
                damage.first = damage.first or error
                if behind:
                    _count(stream, "lost", size)
                    continue
            if count + missing >= declared and not stream.live:
                raise BitstreamError(f"damaged stream: more frames than the header's {declared}")
            yield from _lose(damage, count, missing)
            count, passed = count + missing, 0
            if frame.kind == FrameType.P and count == 0:
                raise BitstreamError("damaged stream: first frame is a P-frame")
            _count(stream, f"frame_{frame.kind.name}", size)
            count += 1
            yield frame
        elif kind == UnitType.END:
            r = Reader(payload, "end unit")
            total = r.varint("frame count")
            missing = total - count if numbered and stream.live and r.done and (
                passed or damage.salvage) and 0 < total - count <= FRAME_NUMBERS else 0
            if missing and not passed:
                damage.first = damage.first or _misnumbered(count, missing)
            yield from _lose(damage, count, missing)
            count, passed = count + missing, 0
            ended = total == count and r.done and stream.live and count > 0
            if not ended:
                why = "that does not count them" if stream.live else "in a stream of known length"
                raise BitstreamError(f"damaged stream: an end unit after {count} frames {why}")
            _count(stream, "end", size)
            stream.header = replace(stream.header, frame_count=count)
        else:
            raise BitstreamError("damaged stream: " + _MISPLACED[kind])
    if passed:  # a numbered stream damaged at its end: a frame each stretch, as before format 13
        lost = passed if stream.live else min(passed, declared - count)
        yield from _lose(damage, count, lost)
        count += lost
    if stream.live and not ended:
        raise StreamCut(f"truncated stream: no end unit after {count} frames (a live stream cut "
                        "short)")
    if count < declared:
        raise Truncated(f"truncated stream: {count} of {declared} frames present")


def _lose(damage: Damage, count: int, frames: int) -> Iterator[None]:
    """LOST for frames `count` .. `count` + `frames` - 1."""
    for i in range(count, count + frames):
        damage.lost.append(i)
        yield LOST


class Misnumbered(BitstreamError):
    """A numbered frame unit out of its place: frames before it lost whole, or it repeated."""


def _misnumbered(count: int, missing: int) -> Misnumbered:
    """What a numbered frame unit `missing` (mod FRAME_NUMBERS) frames ahead of frame `count`
    means: frames lost whole, or (half the numbers or more ahead: behind) a unit repeated."""
    if missing >= FRAME_NUMBERS // 2:
        return Misnumbered(f"damaged stream: frame {count}'s place holds frame "
                           f"{count - FRAME_NUMBERS + missing}'s unit (repeated or out of order)")
    lost = f"frame {count} is" if missing == 1 else f"frames {count}-{count + missing - 1} are"
    return Misnumbered(f"damaged stream: {lost} missing (no unit)")


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
