import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nvc.bitstream import (
    FORMAT_VERSION,
    LIMITS,
    MAGIC,
    CodedFrame,
    FrameType,
    LatentStrings,
    Reader,
    SequenceHeader,
    Stream,
    UnitType,
    pack,
    unpack,
    write_varint,
)
from nvc.codec import encode
from nvc.errors import BitstreamError

HEADER = SequenceHeader(model_id=1, weights_hash=bytes(range(8)), width=416, height=240,
                        fps_num=50, fps_den=1, frame_count=2, intra_period=12, quality=2,
                        colour_matrix=1)
FRAMES = [CodedFrame(FrameType.I, [LatentStrings(b"yyyy", b"zz")]),
          CodedFrame(FrameType.P, [LatentStrings(b"m", b""), LatentStrings(b"r" * 300, b"q")])]


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**31, 2**56])
def test_varint_round_trip(value):
    assert Reader(write_varint(value)).varint("v") == value


def test_header_round_trip():
    assert SequenceHeader.read(HEADER.write()) == HEADER


def test_stream_round_trip_and_unit_bytes():
    data = pack(Stream(HEADER, FRAMES))
    s = unpack(data)
    assert s.header == HEADER and s.frames == FRAMES and s.adapters is None
    assert sum(s.unit_bytes.values()) == len(data)
    assert set(s.unit_bytes) == {"container", "sequence_header", "frame_I", "frame_P"}


def test_adapter_unit_is_carried():
    s = unpack(pack(Stream(HEADER, FRAMES, adapters=b"adapters")))
    assert s.adapters == b"adapters" and s.unit_bytes["adapters"] > 8


@pytest.mark.parametrize("mutate, message", [
    (lambda d: b"XXXX" + d[4:], "not an nvc stream"),
    (lambda d: d[:4] + bytes([FORMAT_VERSION + 1]) + d[5:], "newer than this nvc"),
    (lambda d: d[:-1], "truncated"),
    (lambda d: d[:-30], "truncated"),
    (lambda d: d[:20] + bytes([d[20] ^ 0x40]) + d[21:], "checksum"),
    (lambda d: d[:5], "no sequence header"),
    (lambda d: b"", "not an nvc stream"),
])
def test_bad_streams_are_refused_with_a_reason(mutate, message):
    with pytest.raises(BitstreamError, match=message):
        unpack(mutate(pack(Stream(HEADER, FRAMES))))


def test_frame_count_is_enforced():
    data = pack(Stream(HEADER, FRAMES[:1]))
    with pytest.raises(BitstreamError, match="1 of 2 frames"):
        unpack(data)


def test_unknown_unit_type_is_refused():
    payload = b"x"
    unit = bytes([9]) + write_varint(1) + payload + struct.pack("<I", zlib.crc32(bytes([9]) + payload))
    data = pack(Stream(HEADER, FRAMES)) + unit
    with pytest.raises(BitstreamError, match="unknown unit type 9"):
        unpack(data)


def test_magic_and_version_lead_the_stream():
    data = pack(Stream(HEADER, FRAMES))
    assert data[:4] == MAGIC and data[4] == FORMAT_VERSION and data[5] == UnitType.SEQUENCE_HEADER


# -- property-based: real streams, truncated and mutated --------------------------------------------
@pytest.fixture(scope="module")
def real_stream(tiny_model, small_video):
    model, entry = tiny_model
    return encode(small_video, model, entry, quality=2, intra_period=2)


def _decode_or_error(data, tiny_model, expected):
    from nvc.decoding import decode_stream

    model, entry = tiny_model
    try:
        out = decode_stream(unpack(data), model, entry)
    except BitstreamError:
        return
    assert all((a == b).all() for a, b in zip(out.frames, expected.reconstruction))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cut=st.integers(min_value=0, max_value=10**6))
def test_truncated_real_streams_fail_cleanly(real_stream, tiny_model, cut):
    data = real_stream.data[: cut % len(real_stream.data)]
    with pytest.raises(BitstreamError):
        unpack(data)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=4))
def test_mutated_real_streams_decode_or_fail_cleanly(real_stream, tiny_model, edits):
    data = bytearray(real_stream.data)
    for pos, value in edits:
        data[pos % len(data)] = value
    _decode_or_error(bytes(data), tiny_model, real_stream)


@settings(max_examples=40, deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash(blob):
    try:
        unpack(MAGIC + bytes([FORMAT_VERSION]) + blob)
    except BitstreamError:
        pass


# -- property-based: headers that lie within valid checksums ------------------------------------
_FIELD = st.one_of(st.integers(0, 300), st.integers(0, 2**40))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.fixed_dictionaries({
    "width": _FIELD, "height": _FIELD, "fps_num": _FIELD, "fps_den": _FIELD,
    "frame_count": _FIELD, "intra_period": _FIELD, "quality": st.integers(0, 255),
    "colour_matrix": st.integers(0, 255)}))
def test_lying_headers_are_refused_or_within_limits(real_stream, tiny_model, fields):
    """Any header, checksums right: unpack refuses it with a reason or every declared size is
    within LIMITS; what unpacks then decodes or fails with a BitstreamError, fast."""
    import dataclasses
    import time

    stream = unpack(real_stream.data)
    stream.header = dataclasses.replace(stream.header, **fields)
    try:
        s = unpack(pack(stream))
    except BitstreamError:
        return
    h = s.header
    assert h.width * h.height <= LIMITS.max_pixels and max(h.width, h.height) <= LIMITS.max_side
    assert h.frame_count <= LIMITS.max_frames and h.colour_matrix in LIMITS.colour_matrices
    if h.width * h.height <= 256 * 256:
        from nvc.decoding import decode_stream

        t0 = time.perf_counter()
        try:
            out = decode_stream(s, *tiny_model)
            assert len(out.frames) == h.frame_count
            assert out.frames[0].shape == (h.height, h.width, 3)
        except BitstreamError:
            pass
        assert time.perf_counter() - t0 < 5


@pytest.mark.parametrize("version", range(1, 7))
def test_a_stream_whose_version_byte_changed_is_refused(version):
    """The version byte lies outside every checksum; read as an older format, the sequence header
    is too long (or names what that format lacks). Format 7's header is format 8's: read as format
    7, a format-8 stream decodes to the same frames, or refuses an I-frame between the periods."""
    data = bytearray(pack(Stream(HEADER, FRAMES)))
    data[len(MAGIC)] = version
    with pytest.raises(BitstreamError, match="more than format|unsupported stream"):
        unpack(bytes(data))
