"""The reader's exact refusals and boundaries (issue 12: tests that fail when the feature breaks).

Users see these messages as nvc's one-line errors, so each is pinned whole, and every limit is
checked on both sides of its boundary."""
import re
import struct
import zlib
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvc.bitstream import (
    FORMAT_VERSION,
    FRAME_NUMBERS,
    LIMITS,
    MAGIC,
    NUMBERED_SINCE,
    AdapterUnit,
    CodedFrame,
    FrameType,
    LatentStrings,
    NumericProfile,
    Reader,
    SequenceHeader,
    Stream,
    Synthesis,
    UnitType,
    open_units,
    pack,
    pack_head,
    read_frame,
    unpack,
    write_frame,
    write_varint,
)
from nvc.errors import BitstreamError

HEADER = SequenceHeader(model_id=300, weights_hash=bytes(range(8)), width=416, height=240,
                        fps_num=50, fps_den=1, frame_count=2, intra_period=12, quality=2,
                        colour_matrix=1, numeric_profile=NumericProfile.EXACT_HYPER,
                        tables_crc=0xDEADBEEF)
I_FRAME = CodedFrame(FrameType.I, [LatentStrings(b"yyyy", b"zz")])
P_FRAME = CodedFrame(FrameType.P, [LatentStrings(b"m", b""), LatentStrings(b"r" * 3, b"q")])
TABLE = ("a.g_s.0", "a.g_s.2", "b.g_s.0")
UNIT = AdapterUnit(kind=1, seed=5, alpha=0.0, step=0.005, pi_spike=0.9, sigma_spike=0.001,
                   sigma_slab=0.05, layers=("a.g_s.2", "b.g_s.0"), ranks=(4, 256),
                   symbol_count=7, coded=b"abc")


def _refusal(fn, *args) -> str:
    with pytest.raises(BitstreamError) as e:
        fn(*args)
    return str(e.value)


def _truncations(fn, payload: bytes, what: str) -> list[tuple[str, int, int]]:
    """(field, bytes needed, bytes left) of the refusal at every cut of `payload`."""
    out = []
    for cut in range(len(payload)):
        m = re.fullmatch(rf"truncated {what}: (.+) needs (\d+) bytes, (\d+) left",
                         _refusal(fn, payload[:cut]))
        assert m, cut
        out.append((m[1], int(m[2]), int(m[3])))
    return out


def test_every_header_truncation_names_its_field():
    cycled = replace(HEADER, gop_cycle=(16, 8, 0), sample_aspect=(32, 200))
    payload = cycled.write()
    seen = _truncations(SequenceHeader.read, payload, "sequence header")
    assert [f for i, (f, _, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != f] == [
        "model id", "weights hash", "width", "height", "fps numerator", "fps denominator",
        "frame count", "intra period", "quality", "colour matrix", "numeric profile",
        "tables crc", "synthesis precision", "GOP lift", "GOP drop", "GOP slope",
        "GOP cycle length", "GOP cycle", "aspect numerator", "aspect denominator"]
    assert seen[2] == ("weights hash", 8, 0) and seen[5] == ("weights hash", 8, 3)
    assert seen[-11] == ("synthesis precision", 1, 0) and seen[-8] == ("GOP slope", 1, 0)
    assert seen[-7] == ("GOP cycle length", 1, 0) and seen[-4] == ("GOP cycle", 3, 2)
    assert seen[-3] == ("aspect numerator", 1, 0) and seen[-1] == ("aspect denominator", 1, 0)
    assert SequenceHeader.read(payload) == cycled


def test_the_sample_aspect_ratio_is_format_12s():
    """Format 12 carries a sample aspect ratio, each term 1 to 65535; earlier formats are square
    (read as 1:1, and cannot write another)."""
    wide = replace(HEADER, sample_aspect=(32, 27))
    assert SequenceHeader.read(wide.write()) == wide
    assert SequenceHeader.read(HEADER.write(11), 11).sample_aspect == (1, 1)
    assert HEADER.write(11) == HEADER.write()[:-2]
    with pytest.raises(ValueError, match="^format 11 has no sample aspect ratio"):
        wide.write(11)
    for bad in ((0, 1), (1, 0), (65536, 1)):
        assert _refusal(SequenceHeader.read, replace(HEADER, sample_aspect=bad).write()) == \
            f"damaged stream: sample aspect ratio {bad[0]}:{bad[1]} (each term 1 to 65535)"
    assert SequenceHeader.read(replace(HEADER, sample_aspect=(65535, 1)).write()).sample_aspect \
        == (65535, 1)


def test_older_formats_have_no_profile_fields():
    old = HEADER.write(2)
    assert old == HEADER.write(6)[:-6] and HEADER.write(4) == HEADER.write(6)[:-1]
    assert HEADER.write(6) == HEADER.write(10)[:-3] and HEADER.write(10) == HEADER.write(11)[:-1]
    back = SequenceHeader.read(old, 2)
    assert back == replace(HEADER, numeric_profile=NumericProfile.FLOAT, tables_crc=0)
    assert _refusal(SequenceHeader.read, old) == \
        "truncated sequence header: numeric profile needs 1 bytes, 0 left"


def test_unknown_numeric_profile():
    payload = HEADER.write()[:-12] + bytes([7]) + struct.pack("<I", 0) + bytes(5) + b"\x01\x01"
    assert _refusal(SequenceHeader.read, payload) == \
        f"unsupported stream: unknown numeric profile 7 in format {FORMAT_VERSION}"


def test_the_substream_profile_needs_format_6():
    """Profile 3 (nvc's own coder) came with format 6: an older format cannot carry it."""
    new = replace(HEADER, numeric_profile=NumericProfile.SUBSTREAMS)
    assert SequenceHeader.read(new.write()) == new
    with pytest.raises(ValueError, match="^format 5 cannot carry numeric profile 3"):
        new.write(5)
    payload = HEADER.write(5)[:-6] + bytes([3]) + HEADER.write(5)[-5:]
    assert SequenceHeader.read(payload[:-6] + bytes([2]) + payload[-5:], 5).numeric_profile == 2
    assert _refusal(SequenceHeader.read, payload, 5) == \
        "unsupported stream: unknown numeric profile 3 in format 5"


def test_synthesis_precision_field():
    bf16 = replace(HEADER, synthesis=Synthesis.BFLOAT16)
    assert SequenceHeader.read(bf16.write()) == bf16 and bf16.write(6)[-1] == 1
    assert SequenceHeader.read(HEADER.write(4), 4).synthesis == Synthesis.FLOAT32
    assert _refusal(SequenceHeader.read, HEADER.write(6)[:-1] + bytes([9]), 6) == \
        "unsupported stream: unknown synthesis precision 9"
    with pytest.raises(ValueError, match="^format 4 has no synthesis precision"):
        bf16.write(4)


def test_gop_schedule_fields():
    """Format 7 ends the header with the GOP schedule's lift, drop and slope; older formats are flat
    and cannot carry one."""
    sloped = replace(HEADER, gop_lift=24, gop_drop=8, gop_slope=16)
    assert sloped.write(10)[-3:] == bytes([24, 8, 16])
    assert SequenceHeader.read(sloped.write()) == sloped
    back = SequenceHeader.read(HEADER.write(6), 6)
    assert (back.gop_lift, back.gop_drop, back.gop_slope) == (0, 0, 0)
    with pytest.raises(ValueError, match="^format 6 has no GOP quality schedule"):
        replace(HEADER, gop_lift=1).write(6)
    with pytest.raises(ValueError, match="^format 6 has no GOP quality schedule"):
        sloped.write(6)


def test_gop_cycle_field():
    """Format 11 ends the header with the GOP schedule's cycle: its length (0: none), then a byte a
    P-frame; older formats have none and cannot carry one; a longer cycle than the format's
    limit is refused on both sides."""
    cycled = replace(HEADER, gop_drop=8, gop_cycle=(16, 16, 16, 0))
    assert cycled.write(11)[-5:] == bytes([4, 16, 16, 16, 0]) and HEADER.write(11)[-1] == 0
    assert SequenceHeader.read(cycled.write()) == cycled
    assert SequenceHeader.read(HEADER.write(10), 10).gop_cycle == ()
    with pytest.raises(ValueError, match="^format 10 has no GOP quality cycle"):
        cycled.write(10)
    with pytest.raises(ValueError, match="at most 16 P-frames"):
        replace(HEADER, gop_cycle=(1,) * 17).write()
    assert _refusal(SequenceHeader.read, HEADER.write(11)[:-1] + bytes([17]) + bytes(17), 11) == \
        "damaged stream: a GOP cycle of 17 P-frames (at most 16)"


@pytest.mark.parametrize("field", ["width", "height", "frame_count"])
def test_zero_sizes(field):
    """A frame count of 0 is a live stream's (format 10); before, like a zero size, damage."""
    version = 9 if field == "frame_count" else FORMAT_VERSION
    payload = replace(HEADER, **{field: 0}).write(version)
    assert _refusal(SequenceHeader.read, payload, version) == \
        "damaged sequence header: zero width, height or frame count"
    assert SequenceHeader.read(replace(HEADER, **{field: 1}).write()).__dict__[field] == 1
    if field == "frame_count":
        assert SequenceHeader.read(replace(HEADER, frame_count=0).write()).frame_count == 0


@pytest.mark.parametrize("field", ["fps_num", "fps_den", "intra_period"])
def test_zero_rates(field):
    assert _refusal(SequenceHeader.read, replace(HEADER, **{field: 0}).write()) == \
        "damaged sequence header: zero frame rate or intra period"
    assert SequenceHeader.read(replace(HEADER, **{field: 1}).write()).__dict__[field] == 1


@pytest.mark.parametrize("fields, message", [
    ({"width": LIMITS.max_side + 1, "height": 16},
     f"damaged or unsupported stream: frame size {LIMITS.max_side + 1}x16 exceeds the format's "
     f"limit ({LIMITS.max_side} per side, {LIMITS.max_pixels} pixels)"),
    ({"width": 16, "height": LIMITS.max_side + 1}, None),
    ({"width": 7681, "height": 4320}, None),
    ({"frame_count": LIMITS.max_frames + 1},
     f"damaged stream: {LIMITS.max_frames + 1} frames exceeds the format's limit of "
     f"{LIMITS.max_frames}"),
    ({"fps_num": 1001, "fps_den": 1}, "damaged stream: frame rate 1001/1 exceeds 1000 fps"),
    ({"fps_num": 2001, "fps_den": 2}, None),
    ({"colour_matrix": 2}, "damaged or unsupported stream: unknown colour matrix 2"),
])
def test_limits_refused(fields, message):
    got = _refusal(SequenceHeader.read, replace(HEADER, **fields).write())
    assert got == message if message else "exceeds" in got


@pytest.mark.parametrize("fields", [
    {"width": LIMITS.max_side, "height": 16}, {"width": 16, "height": LIMITS.max_side},
    {"width": 7680, "height": 4320}, {"frame_count": LIMITS.max_frames},
    {"fps_num": 1000, "fps_den": 1}, {"fps_num": 1500, "fps_den": 2}, {"colour_matrix": 6},
])
def test_limits_reached_are_accepted(fields):
    header = replace(HEADER, **fields)
    assert SequenceHeader.read(header.write()) == header


def test_header_writer_checks_the_hash_length():
    with pytest.raises(ValueError, match="^weights_hash has the wrong length$"):
        replace(HEADER, weights_hash=b"1234567").write()


def test_varint_writer_and_reader_bounds():
    with pytest.raises(ValueError, match="^varint must be non-negative$"):
        write_varint(-1)
    assert write_varint(0) == b"\x00" and write_varint(128) == b"\x80\x01"
    longest = b"\xff" * 9 + b"\x01"  # shift reaches 63: the last byte a 64-bit value can have
    assert Reader(longest).varint("v") == 2 ** 64 - 1
    assert _refusal(Reader(b"\xff" * 10 + b"\x01", "frame 3").varint, "seed") == \
        "damaged frame 3: seed is not a valid varint"


def test_reader_counts_what_is_left():
    r = Reader(b"abcdef", "unit")
    assert r.take(2, "x") == b"ab" and r.u8("y") == ord("c") and not r.done
    assert _refusal(r.take, 4, "z") == "truncated unit: z needs 4 bytes, 3 left"
    assert Reader(b"\x02hi").blob("name") == b"hi"
    assert _refusal(Reader(b"\x05hi").blob, "name") == "truncated stream: name needs 5 bytes, 2 left"
    assert _refusal(Reader(b"").blob, "name") == \
        "truncated stream: name length needs 1 bytes, 0 left"
    r = Reader(b"ab")
    r.take(2, "all")
    assert r.done


def test_every_frame_truncation_names_its_field():
    payload = write_frame(P_FRAME)
    seen = _truncations(lambda p: read_frame(p, 4), payload, "frame 4")
    assert [f for i, (f, _, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != f] == [
        "frame type", "latent count", "y string length", "y string", "z string length",
        "y string length", "y string", "z string length", "z string"]
    assert read_frame(payload, 4) == P_FRAME


@pytest.mark.parametrize("payload, message", [
    (bytes([2, 1]), "damaged frame 4: unknown frame type 2"),
    (bytes([0, 2]), "damaged frame 4: I-frame with 2 latents"),
    (bytes([1, 1]), "damaged frame 4: P-frame with 1 latents"),
    (write_frame(I_FRAME) + b"..", "damaged frame 4: 2 trailing bytes"),
])
def test_frame_refusals(payload, message):
    assert _refusal(read_frame, payload, 4) == message


def test_every_adapter_unit_truncation_names_its_field():
    payload = UNIT.write(TABLE)
    seen = _truncations(lambda p: AdapterUnit.read(p, TABLE), payload, "adapter unit")
    assert [f for i, (f, _, _) in enumerate(seen) if i == 0 or seen[i - 1][0] != f] == [
        "adapter type", "seed", "adapter prior", "layer count", "layer index", "rank",
        "layer index", "rank", "symbol count", "coded parameters length", "coded parameters"]
    back = AdapterUnit.read(payload, TABLE)
    assert back.layers == UNIT.layers and back.ranks == UNIT.ranks and back.coded == b"abc"
    assert back.step == pytest.approx(0.005) and back.seed == 5 and back.symbol_count == 7


def _unit_bytes(**fields) -> bytes:
    return replace(UNIT, **fields).write(TABLE)


@pytest.mark.parametrize("payload, message", [
    (_unit_bytes() + b"x", "damaged adapter unit: trailing bytes"),
    (_unit_bytes(ranks=(4, 0)), f"damaged adapter unit: rank 0 outside 1..{LIMITS.max_rank}"),
    (_unit_bytes(ranks=(LIMITS.max_rank + 1, 1)),
     f"damaged adapter unit: rank {LIMITS.max_rank + 1} outside 1..{LIMITS.max_rank}"),
    (_unit_bytes(symbol_count=LIMITS.max_adapter_symbols + 1),
     f"damaged adapter unit: {LIMITS.max_adapter_symbols + 1} values (limit "
     f"{LIMITS.max_adapter_symbols})"),
    (_unit_bytes(step=0.0), "damaged adapter unit: invalid quantisation step or prior"),
    (_unit_bytes(sigma_slab=float("inf")), "damaged adapter unit: invalid quantisation step or prior"),
    (_unit_bytes(pi_spike=float("nan")), "damaged adapter unit: invalid quantisation step or prior"),
])
def test_adapter_unit_refusals(payload, message):
    assert _refusal(AdapterUnit.read, payload, TABLE) == message


def test_adapter_unit_bounds_reached_are_accepted():
    unit = replace(UNIT, ranks=(1, LIMITS.max_rank), symbol_count=LIMITS.max_adapter_symbols,
                   step=1e-30)
    back = AdapterUnit.read(unit.write(TABLE), TABLE)
    assert back.ranks == (1, LIMITS.max_rank) and back.symbol_count == LIMITS.max_adapter_symbols


def test_adapter_unit_layer_count_and_index_limits():
    head = bytes([1]) + write_varint(5) + struct.pack("<5f", 0, 0.005, 0.9, 0.001, 0.05)
    many = head + write_varint(LIMITS.max_layers + 1)
    assert _refusal(AdapterUnit.read, many, TABLE) == \
        f"damaged adapter unit: {LIMITS.max_layers + 1} layers (limit {LIMITS.max_layers})"
    at_limit = head + write_varint(LIMITS.max_layers) + (write_varint(0) + write_varint(1)) * \
        LIMITS.max_layers + write_varint(0) + write_varint(0)
    assert len(AdapterUnit.read(at_limit, TABLE).layers) == LIMITS.max_layers
    bad_index = head + write_varint(1) + write_varint(3) + write_varint(1)
    assert _refusal(AdapterUnit.read, bad_index, TABLE) == \
        "damaged adapter unit: layer index 3 (the model has 3)"
    last = head + write_varint(1) + write_varint(2) + write_varint(1) + write_varint(0) + b"\x00"
    assert AdapterUnit.read(last, TABLE).layers == ("b.g_s.0",)


def test_adapter_unit_format_1_spells_names():
    head = bytes([1]) + write_varint(5) + struct.pack("<5f", 0, 0.005, 0.9, 0.001, 0.05)
    name = b"a.g_s.2"
    payload = head + write_varint(1) + write_varint(len(name)) + name + write_varint(3) + \
        write_varint(0) + b"\x00"
    assert AdapterUnit.read(payload, TABLE, version=1).layers == ("a.g_s.2",)
    bad = head + write_varint(1) + write_varint(2) + b"\xff\xfe" + write_varint(3) + b"\x00\x00"
    assert _refusal(AdapterUnit.read, bad, TABLE, 1) == \
        "damaged adapter unit: layer name is not ASCII"
    truncated = head + write_varint(1) + write_varint(9) + b"ab"
    assert _refusal(AdapterUnit.read, truncated, TABLE, 1) == \
        "truncated adapter unit: layer name needs 9 bytes, 2 left"


def test_adapter_unit_writer_refusals():
    with pytest.raises(ValueError, match=r"^layer 'c\.g_s\.0' cannot be adapted \(not in the "
                                         r"layer table\)$"):
        replace(UNIT, layers=("c.g_s.0", "a.g_s.0")).write(TABLE)
    with pytest.raises(ValueError):
        replace(UNIT, ranks=(4,)).write(TABLE)  # one rank per layer


def _unit(kind: int, payload: bytes) -> bytes:
    return bytes([kind]) + write_varint(len(payload)) + payload + \
        struct.pack("<I", zlib.crc32(bytes([kind]) + payload))


def _stream(*units: bytes, version: int = FORMAT_VERSION) -> bytes:
    return MAGIC + bytes([version]) + b"".join(units)


SEQ = _unit(UnitType.SEQUENCE_HEADER, HEADER.write())
def _f(frame: CodedFrame, number: int | None) -> bytes:
    """A frame unit; `number`: the frame's index (format 13 on), None: an older format's."""
    return _unit(UnitType.FRAME, write_frame(frame, number))


FRAME_I, FRAME_P = _f(I_FRAME, 0), _f(P_FRAME, 1)  # frames 0 and 1


@pytest.mark.parametrize("data, message", [
    (b"NVC", "not an nvc stream (bad magic bytes)"),
    (b"NVCX\x03", "not an nvc stream (bad magic bytes)"),
    (MAGIC, "truncated stream: format version needs 1 bytes, 0 left"),
    (_stream(version=FORMAT_VERSION + 1),
     f"stream format version {FORMAT_VERSION + 1} is newer than this nvc reads ({FORMAT_VERSION}); "
     "upgrade nvc"),
    (_stream(version=0), "damaged stream: format version 0"),
    (_stream(), "truncated stream: no sequence header"),
    (_stream(b"\x01"), "truncated stream: unit 0 length needs 1 bytes, 0 left"),
    (_stream(bytes([1]) + write_varint(LIMITS.max_unit_bytes + 1)),
     f"damaged stream: unit 0 declares {LIMITS.max_unit_bytes + 1} bytes (limit "
     f"{LIMITS.max_unit_bytes})"),
    (_stream(SEQ[:-1]), "truncated stream: unit 0 checksum needs 4 bytes, 3 left"),
    (_stream(bytes([1]) + write_varint(LIMITS.max_unit_bytes)),
     f"truncated stream: unit 0 payload needs {LIMITS.max_unit_bytes} bytes, 0 left"),
    (_stream(SEQ, FRAME_I, _unit(UnitType.FRAME, bytes([2, 1])), version=12),
     "damaged frame 1: unknown frame type 2"),
    (_stream(SEQ, FRAME_I, _unit(UnitType.FRAME, bytes([3, 1]))),  # P, numbered 1
     "damaged frame 1: P-frame with 1 latents"),
    (_stream(SEQ, FRAME_I, _unit(UnitType.FRAME, b"")),
     "truncated frame 1: frame type needs 1 bytes, 0 left"),
    (_stream(SEQ, FRAME_I[:-4] + b"\x00\x00\x00\x00"), "damaged stream: checksum mismatch in unit 1"),
    (_stream(SEQ, _unit(9, b"x")), "damaged stream: unknown unit type 9 in unit 1"),
    (_stream(SEQ, SEQ), "damaged stream: two sequence headers"),
    (_stream(FRAME_I), "damaged stream: first unit is not the sequence header"),
    (_stream(SEQ, FRAME_I, _unit(UnitType.ADAPTERS, b"a")), "damaged stream: adapter unit out of place"),
    (_stream(SEQ, _unit(UnitType.ADAPTERS, b"a"), _unit(UnitType.ADAPTERS, b"a")),
     "damaged stream: adapter unit out of place"),
    (_stream(SEQ, FRAME_I, FRAME_P, _f(P_FRAME, 2)), "damaged stream: more frames than the header's 2"),
    (_stream(SEQ, _f(P_FRAME, 0), FRAME_P), "damaged stream: first frame is a P-frame"),
    (_stream(SEQ, FRAME_I, FRAME_I), "damaged stream: frame 1's place holds frame 0's unit (repeated "
                                     "or out of order)"),
    (_stream(SEQ, FRAME_P), "damaged stream: frame 0 is missing (no unit)"),
    (_stream(_unit(UnitType.SEQUENCE_HEADER, replace(HEADER, frame_count=5).write()), FRAME_I,
             _f(P_FRAME, 4)), "damaged stream: frames 1-3 are missing (no unit)"),
    (_stream(SEQ, FRAME_I), "truncated stream: 1 of 2 frames present"),
])
def test_stream_refusals(data, message):
    assert _refusal(unpack, data) == message


def test_unit_bytes_account_for_every_byte():
    data = _stream(SEQ, _unit(UnitType.ADAPTERS, b"ad"), FRAME_I, FRAME_P)
    s = unpack(data)
    assert s.unit_bytes == {"container": 5, "sequence_header": len(SEQ), "adapters": 8,
                            "frame_I": len(FRAME_I), "frame_P": len(FRAME_P)}
    assert s.adapters == b"ad" and s.frames == [I_FRAME, P_FRAME] and s.version == FORMAT_VERSION
    assert pack(s) == data
    assert pack_head(HEADER) == MAGIC + bytes([FORMAT_VERSION]) + SEQ


def test_two_i_frames_and_unit_order():
    header = replace(HEADER, frame_count=3, intra_period=1)
    seq = _unit(UnitType.SEQUENCE_HEADER, header.write())
    s = unpack(_stream(seq, *(_f(I_FRAME, k) for k in range(3))))
    assert [f.kind for f in s.frames] == [FrameType.I] * 3 and s.unit_bytes["frame_I"] == 3 * len(FRAME_I)


def test_format_2_stream_round_trips():
    data = pack(Stream(HEADER, [I_FRAME, P_FRAME], version=2))
    s = unpack(data)
    assert s.version == 2 and s.header.numeric_profile == NumericProfile.FLOAT
    assert data[len(MAGIC)] == 2 and pack(s) == data


def test_quality_map_unit():
    from nvc.bitstream import QualityMap

    qm = QualityMap(2, 3, bytes([0, 32, 64, 96, 32, 0]))
    assert QualityMap.read(qm.write(), (2, 3)) == qm
    assert _refusal(QualityMap.read, qm.write(), (3, 2)) == \
        "damaged quality map: 2x3 for a 3x2 latent grid"
    assert _refusal(QualityMap.read, qm.write() + b"x", (2, 3)) == \
        "damaged quality map: trailing bytes"
    grid = write_varint(2) + write_varint(3) + b"\x40"  # origin 64
    bad = grid + write_varint(3) + b"abc"
    assert _refusal(QualityMap.read, bad, (2, 3)) == "damaged quality map: bad deflate data"
    short = grid + _blob_of(zlib.compress(b"12345"))
    assert _refusal(QualityMap.read, short, (2, 3)) == \
        "damaged quality map: 5 values for 6 positions"
    bomb = grid + _blob_of(zlib.compress(bytes(10 ** 6)))
    assert _refusal(QualityMap.read, bomb, (2, 3)) == \
        "damaged quality map: 7 values for 6 positions"
    with pytest.raises(ValueError, match="^quality map values do not fill the grid$"):
        QualityMap(2, 2, b"abc").write()
    assert _refusal(QualityMap.read, write_varint(2) + write_varint(3), (2, 3)) == \
        "truncated quality map: origin needs 1 bytes, 0 left"
    qmap = _unit(UnitType.QUALITY_MAP, qm.write())
    s = unpack(_stream(SEQ, _unit(UnitType.ADAPTERS, b"a"), qmap, FRAME_I, FRAME_P))
    assert s.quality_map == qm.write() and s.unit_bytes["quality_map"] == len(qmap)
    assert pack(s) == _stream(SEQ, _unit(UnitType.ADAPTERS, b"a"), qmap, FRAME_I, FRAME_P)
    for units in ((SEQ, qmap, qmap), (SEQ, FRAME_I, qmap)):
        assert _refusal(unpack, _stream(*units)) == "damaged stream: quality map out of place"
    assert _refusal(unpack, _stream(SEQ, qmap, _unit(UnitType.ADAPTERS, b"a"))) == \
        "damaged stream: adapter unit out of place"


def test_quality_map_origin_and_format_3_maps():
    from nvc.bitstream import QualityMap

    below = QualityMap(1, 2, bytes([0, 200]), origin=64)
    assert QualityMap.read(below.write(), (1, 2)) == below
    assert below.write()[2] == 64  # after the two varints of the grid
    old = QualityMap(1, 2, bytes([0, 32]))  # format 3: no origin field, position = value / 32
    assert QualityMap.read(old.write(version=3), (1, 2), version=3) == old
    assert len(old.write(version=3)) == len(old.write()) - 1
    with pytest.raises(ValueError, match="^quality map origin 64 cannot be written in format 3$"):
        below.write(version=3)
    with pytest.raises(ValueError, match=f"^quality map origin 256 cannot be written in format "
                                         f"{FORMAT_VERSION}$"):
        QualityMap(1, 2, bytes(2), origin=256).write()


def _blob_of(b: bytes) -> bytes:
    return write_varint(len(b)) + b


# -- live streams (format 10): frame count 0 in the header, an end unit after the last frame -----
LIVE = _unit(UnitType.SEQUENCE_HEADER, replace(HEADER, frame_count=0).write())


def _end(count: int) -> bytes:
    return _unit(UnitType.END, write_varint(count))


def test_a_live_stream_reads_with_its_count_from_the_end_unit():
    data = _stream(LIVE, FRAME_I, FRAME_P, _end(2))
    s = unpack(data)
    assert s.live and s.header == HEADER and s.frames == [I_FRAME, P_FRAME]
    assert s.unit_bytes["end"] == len(_end(2)) and pack(s) == data
    assert pack(replace(s, live=False)) == _stream(SEQ, FRAME_I, FRAME_P)


@pytest.mark.parametrize("units, message", [
    ((LIVE, FRAME_I, FRAME_P), "truncated stream: no end unit after 2 frames (a live stream cut "
                               "short)"),
    ((LIVE,), "truncated stream: no end unit after 0 frames (a live stream cut short)"),
    ((LIVE, FRAME_I, _end(3)), "damaged stream: an end unit after 1 frames that does not count "
                               "them"),
    ((LIVE, _end(0)), "damaged stream: an end unit after 0 frames that does not count them"),
    ((SEQ, FRAME_I, FRAME_P, _end(2)), "damaged stream: an end unit after 2 frames in a stream of "
                                       "known length"),
    ((LIVE, FRAME_I, _end(1), FRAME_P), "damaged stream: a unit after the end unit"),
    ((LIVE, FRAME_I, _end(1), _end(1)), "damaged stream: a unit after the end unit"),
    ((LIVE, FRAME_I, _unit(UnitType.END, write_varint(1) + b"x")),
     "damaged stream: an end unit after 1 frames that does not count them"),
])
def test_live_stream_refusals(units, message):
    assert _refusal(unpack, _stream(*units)) == message


def test_formats_before_10_have_no_live_streams():
    old = _unit(UnitType.SEQUENCE_HEADER, HEADER.write(9))
    assert _refusal(unpack, _stream(old, FRAME_I, _f(P_FRAME, None), _end(2), version=9)) == \
        "damaged stream: unknown unit type 5 in unit 3"
    with pytest.raises(ValueError, match="^format 9 has no live streams"):
        pack_head(replace(HEADER, frame_count=0), version=9)


def test_a_stream_read_from_a_pipe_as_it_arrives():
    """FileReader over an unbuffered pipe: the head and each frame are read when their bytes are
    in, `ready` says whether the next frame's bytes have begun to arrive."""
    import os

    from nvc.bitstream import FileReader, open_units

    data = _stream(LIVE, FRAME_I, FRAME_P, _end(2))
    head = len(MAGIC) + 1 + len(LIVE)
    r, w = os.pipe()
    with os.fdopen(r, "rb", buffering=0) as reader, os.fdopen(w, "wb", buffering=0) as writer:
        writer.write(data[:head + len(FRAME_I)])
        stream, frames = open_units(FileReader(reader))
        assert stream.live and stream.header.frame_count == 0
        assert next(frames) == I_FRAME and not frames.ready()
        writer.write(data[head + len(FRAME_I):])
        assert frames.ready() and next(frames) == P_FRAME
        writer.close()
        assert list(frames) == [] and stream.header == HEADER


def test_a_file_declaring_a_huge_unit_allocates_nothing_for_it(tmp_path):
    """A 30-byte stream whose unit claims the limit's 256 MiB: read a MiB at most at a time, it is
    refused as truncated without a 256 MiB buffer."""
    import tracemalloc

    from nvc.bitstream import FileReader, open_units

    path = tmp_path / "claim.nvc"
    path.write_bytes(_stream(SEQ) + bytes([UnitType.FRAME]) + write_varint(LIMITS.max_unit_bytes)
                     + b"x" * 10)
    tracemalloc.start()
    with open(path, "rb") as f, pytest.raises(BitstreamError, match="^truncated stream: unit 1 "
                                                                     "payload needs 268435456"):
        list(open_units(FileReader(f))[1])
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40), st.integers(0, 200), st.booleans())
def test_a_file_reads_as_its_bytes_do(noise, at, live):
    """The same stream (mangled anywhere) read from a file, unit by unit, and from its bytes in
    memory: the same frames, or the same one-line refusal."""
    import io

    from nvc.bitstream import FileReader, open_units

    data = _stream(LIVE, FRAME_I, FRAME_P, _end(2)) if live else _stream(SEQ, FRAME_I, FRAME_P)
    data = data[:at] + noise + data[at + len(noise):]

    def read(reader):
        try:
            stream, frames = open_units(reader)
            return stream.header, list(frames), stream.unit_bytes
        except BitstreamError as e:
            return str(e)
    assert read(FileReader(io.BytesIO(data))) == read(Reader(data))


# -- salvage: reading on at the next whole unit after damaged framing ------------------------------
def _frame(k: int, size: int) -> CodedFrame:
    if k % 3 == 0:
        return CodedFrame(FrameType.I, [LatentStrings(bytes([k]) * size, b"z")])
    return CodedFrame(FrameType.P, [LatentStrings(b"m", b""), LatentStrings(bytes([k]) * size, b"")])


CLIP = [_frame(k, size) for k, size in enumerate((40, 300, 90, 20, 200))]  # I P P I P
UNITS = [_f(f, k) for k, f in enumerate(CLIP)]


def _clip(live: bool = False, version: int = FORMAT_VERSION) -> bytearray:
    head = LIVE if live else _unit(UnitType.SEQUENCE_HEADER, replace(HEADER, frame_count=5).write())
    units = UNITS if version >= NUMBERED_SINCE else [_f(f, None) for f in CLIP]
    return bytearray(_stream(head, *units, *([_end(5)] if live else []), version=version))


def _at(k: int, live: bool = False) -> int:
    """Where frame k's unit begins."""
    return len(_clip(live)) - sum(map(len, UNITS[k:])) - (len(_end(5)) if live else 0)


def _length(data: bytearray, k: int, delta: int) -> bytearray:
    """Frame k's unit with its length field moved by `delta` (the field's byte count kept)."""
    at = _at(k) + 1
    size = len(write_frame(CLIP[k]))
    field = write_varint(size + delta)
    assert len(field) == len(write_varint(size))
    data[at:at + len(field)] = field
    return data


def _salvaged(data: bytes, reader) -> tuple:
    stream, frames = open_units(reader(data))
    frames.salvage = True
    got = list(frames)
    return got, frames.damage.lost, str(frames.damage.first), str(frames.cut), stream.unit_bytes


@pytest.mark.parametrize("damage, ks, passed", [
    ("length +1", [2], 0), ("length -1", [2], 0), ("length +100", [1], 0),
    ("length -100", [1], 0), ("length 127", [2], 0), ("length -1", [4], 0),
    ("3 bytes lost", [2], -3), ("5 bytes repeated", [2], 5), ("length +1", [1, 3], 0),
    ("length -1", [1, 3], 0),
])
def test_salvage_reads_on_at_the_next_whole_unit(damage, ks, passed):
    """A unit whose length or framing is damaged (or whose bytes were lost or repeated) makes
    every unit after it unreadable as its length says; a salvaging reader finds the next whole
    unit (its checksum sound, a unit or the end after it) and goes on there: the damaged unit is
    one lost frame, its bytes counted, the frames after it whole (the last one's: the bytes to the
    end). Read from a file, the same."""
    import io

    from nvc.bitstream import FileReader

    data = _clip()
    for k in ks:
        if damage == "length 127":
            data[_at(k) + 1] = 0x7F  # a one-byte length field: 127 bytes, past its unit
        elif damage.endswith("lost"):
            del data[_at(k) + 20:_at(k) + 23]
        elif damage.endswith("repeated"):
            data[_at(k) + 20:_at(k) + 20] = data[_at(k) + 20:_at(k) + 25]
        else:
            data = _length(data, k, int(damage.split()[-1]))
    data = bytes(data)
    with pytest.raises(BitstreamError, match="^damaged stream|^truncated stream"):
        unpack(data)
    frames, lost, first, cut, unit_bytes = got = _salvaged(data, Reader)
    assert got == _salvaged(data, lambda d: FileReader(io.BytesIO(d)))
    assert frames == [None if k in ks else f for k, f in enumerate(CLIP)] and lost == ks
    assert cut == "None" and sum(unit_bytes.values()) == len(data)
    assert unit_bytes["lost"] == sum(len(UNITS[k]) for k in ks) + passed
    if ks[0] < 4:
        assert first == f"damaged stream: unit {ks[0] + 1}'s length or framing is damaged " \
                        f"({len(UNITS[ks[0]]) + passed} bytes passed over to the next whole unit)"
    else:
        assert first == "damaged stream: checksum mismatch in unit 5"


@pytest.mark.parametrize("version", [NUMBERED_SINCE - 1, NUMBERED_SINCE])
def test_salvage_counts_a_damaged_stretch_by_the_next_frames_number(version):
    """Two adjacent units with damaged lengths: the search finds the unit after both. Its number
    (format 13) says two frames were lost; before, the stretch counted as one lost frame and a
    stream of known length ended a frame short (a cut)."""
    data = bytes(_length(_length(_clip(version=version), 1, 1), 2, 1))
    frames, lost, _, cut, unit_bytes = _salvaged(data, Reader)
    if version >= NUMBERED_SINCE:
        assert frames == [CLIP[0], None, None, CLIP[3], CLIP[4]] and lost == [1, 2]
        assert cut == "None"
    else:
        assert frames == [CLIP[0], None, CLIP[3], CLIP[4]] and lost == [1]
        assert cut == "truncated stream: 4 of 5 frames present"
    assert unit_bytes["lost"] == len(UNITS[1]) + len(UNITS[2])


def _units_edited(live: bool, edit) -> bytes:
    """The clip with its frame units (a list) edited in place by `edit`."""
    units = list(UNITS)
    edit(units)
    head = LIVE if live else _unit(UnitType.SEQUENCE_HEADER, replace(HEADER, frame_count=5).write())
    return _stream(head, *units, *([_end(5)] if live else []))


@pytest.mark.parametrize("live", [False, True])
@pytest.mark.parametrize("edit, frames, lost, first", [
    (lambda u: u.pop(2), [0, 1, None, 3, 4], [2], "frame 2 is missing (no unit)"),
    (lambda u: [u.pop(1), u.pop(1)], [0, None, None, 3, 4], [1, 2], "frames 1-2 are missing (no unit)"),
    (lambda u: u.insert(3, u[2]), [0, 1, 2, 3, 4], [], "frame 3's place holds frame 2's unit (repeated or "
                                                      "out of order)"),
    (lambda u: u.insert(3, b"\x03junk" * 5), [0, 1, 2, 3, 4], [],
     "unit 4's length or framing is damaged (25 bytes passed over to the next whole unit)"),
    (lambda u: u.insert(3, b"\x03junk" + u[2]), [0, 1, 2, 3, 4], [],
     "unit 4's length or framing is damaged (5 bytes passed over to the next whole unit)"),
    (lambda u: u.pop(4), [0, 1, 2, 3, None], [4], None),
])
def test_numbered_frames_tell_units_lost_repeated_or_inserted(live, edit, frames, lost, first):
    """A transport that loses, repeats or inserts whole units (format 13): the frames' numbers put
    every frame that comes in its place. Without salvage each is a one-line error."""
    data = _units_edited(live, edit)
    got, got_lost, got_first, cut, _ = _salvaged(data, Reader)
    if frames[-1] is None and not live:  # the last unit lost from a file: a cut, as ever
        assert got == CLIP[:4] and got_lost == [] and cut == "truncated stream: 4 of 5 frames present"
        return
    assert got == [None if k is None else CLIP[k] for k in frames] and got_lost == lost
    if first is not None:
        assert got_first == f"damaged stream: {first}" and cut == "None"
        with pytest.raises(BitstreamError, match="^damaged stream: "):
            unpack(data)


def test_a_numbered_unit_far_ahead_is_counted_modulo_the_numbers():
    """Frame numbers wrap at FRAME_NUMBERS: frame 130's unit is numbered 2."""
    header = _unit(UnitType.SEQUENCE_HEADER, replace(HEADER, frame_count=FRAME_NUMBERS + 3,
                                                     intra_period=1).write())
    units = [_f(I_FRAME, k) for k in range(FRAME_NUMBERS + 3)]
    assert units[FRAME_NUMBERS + 2] == units[2]
    s = unpack(_stream(header, *units))
    assert len(s.frames) == FRAME_NUMBERS + 3


def test_damage_in_frame_0_stays_an_error():
    """The head and frame 0 are read before salvage can be asked for: their damage raises."""
    with pytest.raises(BitstreamError, match="^damaged stream: checksum mismatch in unit 1$"):
        open_units(Reader(bytes(_length(_clip(), 0, 1))))


def test_salvage_passes_a_unit_read_whole_as_its_length_says():
    """A payload bit flipped (the length sound): the unit, as long as it says, is the lost frame."""
    data = _clip()
    data[_at(2) + 30] ^= 4
    frames, lost, first, cut, unit_bytes = _salvaged(bytes(data), Reader)
    assert frames == [None if k == 2 else f for k, f in enumerate(CLIP)] and lost == [2]
    assert first == "damaged stream: checksum mismatch in unit 3" and cut == "None"
    assert unit_bytes["lost"] == len(UNITS[2])


@pytest.mark.parametrize("where", ["payload", "checksum"])
def test_a_live_streams_damaged_end_unit_ends_it_after_every_frame(where):
    """A live stream whose end unit fails its checksum: every frame is read whole and none is
    taken for lost; the stream ends there, as damage (its count unread). Without salvage the
    checksum error, as before."""
    data = _clip(live=True)
    data[-5 if where == "payload" else -1] ^= 1
    frames, lost, first, cut, _ = _salvaged(bytes(data), Reader)
    assert frames == CLIP and lost == [] and first == "None"
    assert cut == "damaged stream: checksum mismatch in unit 6 (the end unit: the frame count " \
                  "unread)"
    assert _refusal(unpack, bytes(data)) == "damaged stream: checksum mismatch in unit 6"


def test_a_lost_live_stream_end_is_a_cut_not_a_lost_frame():
    """The end unit's length damaged past the end, or the stream cut inside the last frame: what
    came whole is kept, nothing after it searched into a lost frame."""
    from nvc.errors import StreamCut

    data = _clip(live=True)
    data[-6] = 0x7F  # the end unit's length
    frames, lost, _, cut, _ = _salvaged(bytes(data), Reader)
    assert frames == CLIP and lost == [] and "end unit" not in cut
    data = _clip(live=True)[:_at(4, live=True) + 30]
    stream, units = open_units(Reader(bytes(data)))
    units.salvage = True
    assert list(units) == CLIP[:4] and isinstance(units.cut, StreamCut)


@pytest.mark.parametrize("version", [NUMBERED_SINCE - 1, NUMBERED_SINCE])
def test_a_live_streams_end_unit_counts_the_frames_lost_before_it(version):
    """A live stream whose last two frame units fail their checksums: their frames are lost
    before the end unit, whose count (5) the numbered stream checks them against; two adjacent
    units with damaged framing there: two frames lost where frames are numbered, one before
    (and then the end unit's count no longer matches: the stream ends as damaged)."""
    data = _clip(live=True, version=version)
    for k in (3, 4):
        data[_at(k, live=True) + 10] ^= 8
    frames, lost, _, cut, _ = _salvaged(bytes(data), Reader)
    assert frames == [*CLIP[:3], None, None] and lost == [3, 4] and cut == "None"
    data = _clip(live=True, version=version)
    for k in (3, 4):  # each length one too large: both framings damaged, searched past
        at, size = _at(k, live=True) + 1, len(write_frame(CLIP[k]))
        data[at:at + len(write_varint(size))] = write_varint(size + 1)
    frames, lost, _, cut, _ = _salvaged(bytes(data), Reader)
    if version >= NUMBERED_SINCE:
        assert frames == [*CLIP[:3], None, None] and lost == [3, 4] and cut == "None"
    else:
        assert frames == [*CLIP[:3], None] and lost == [3]
        assert cut == "damaged stream: an end unit after 4 frames that does not count them"


def test_salvage_passes_a_damaged_adapter_unit_and_takes_a_damaged_frame_0_for_lost():
    """The head salvaged: an adapter unit that fails its checksum is passed over (the frames
    decode with the base; `damage.adapters` says so), a first frame unit that fails its checksum
    is frame 0, lost. The sequence header's and the quality map's damage raise, salvage or not."""
    seq = _unit(UnitType.SEQUENCE_HEADER, replace(HEADER, frame_count=5).write())
    adapters = _unit(UnitType.ADAPTERS, b"a" * 30)
    data = bytearray(_stream(seq, adapters, *UNITS))
    data[len(MAGIC) + 1 + len(seq) + 10] ^= 8
    stream, units = open_units(Reader(bytes(data)), salvage=True)
    assert list(units) == CLIP and stream.adapters is None and units.damage.lost == []
    assert str(units.damage.adapters) == "damaged stream: checksum mismatch in unit 1"
    assert stream.unit_bytes["lost"] == len(adapters) and sum(stream.unit_bytes.values()) == \
        len(data)
    assert _refusal(open_units, Reader(bytes(data))) == "damaged stream: checksum mismatch in unit 1"
    data = _clip()
    data[_at(0) + 10] ^= 8
    stream, units = open_units(Reader(bytes(data)), salvage=True)
    assert list(units) == [None, *CLIP[1:]] and units.damage.lost == [0]
    for damaged, what in ((_stream(seq[:-1] + bytes([seq[-1] ^ 1]), *UNITS), "0, the sequence header"),
                          (_stream(seq, _unit(UnitType.QUALITY_MAP, b"q" * 9)[:-1] + b"\x00", *UNITS),
                           "1, the quality map")):
        with pytest.raises(BitstreamError, match=f"checksum mismatch in unit {what}: no frame "
                                                 "decodes without it$"):
            list(open_units(Reader(damaged), salvage=True)[1])
        with pytest.raises(BitstreamError, match=f"checksum mismatch in unit {what[0]}$"):
            list(open_units(Reader(damaged))[1])
