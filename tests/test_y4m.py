"""y4m in (nvc.y4m): files and pipes, full range, other sample layouts, damaged streams."""
import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nvc.errors import InputError
from nvc.io import read_video
from nvc.writers import write_video
from nvc.y4m import read_pipe

from .conftest import make_video, y4m_of


def test_full_range_y4m_is_read_in_the_limited_range(tmp_path):
    y = np.array([[0, 255], [128, 64]], np.uint8)
    u, v = np.array([[0]], np.uint8), np.array([[255]], np.uint8)
    path = tmp_path / "full.y4m"
    for header, want in ((b"C420jpeg XCOLORRANGE=FULL", ([[16, 235], [126, 71]], 16, 240)),
                         (b"C420jpeg", (y, 0, 255))):
        path.write_bytes(b"YUV4MPEG2 W2 H2 F25:1 " + header + b"\nFRAME\n" + y.tobytes()
                         + u.tobytes() + v.tobytes())
        for f in (read_video(path).frames[0],
                  read_pipe(io.BytesIO(path.read_bytes())).frames[0]):  # a file, a pipe
            assert np.array_equal(f.y, want[0]) and (f.u[0, 0], f.v[0, 0]) == want[1:]


def test_an_interlaced_y4m_is_read_with_a_warning(tmp_path, caplog):
    path = tmp_path / "i.y4m"
    frame = b"FRAME\n" + bytes(2 * 2 + 2)
    for tag, warned in ((b" It", True), (b" Ip", False)):
        path.write_bytes(b"YUV4MPEG2 W2 H2 F25:1" + tag + b"\n" + frame)
        for read in (read_video, lambda p: read_pipe(io.BytesIO(p.read_bytes()))):
            caplog.clear()
            assert len(read(path).frames) == 1
            assert caplog.text.count(": interlaced;") == warned  # once


def _both_readers(path):
    """The frames of a y4m file read from the file and from a pipe."""
    return (read_video(path).frames, list(read_pipe(io.BytesIO(path.read_bytes())).frames),
            list(read_pipe(io.BytesIO(path.read_bytes()), live=True).frames))


@pytest.mark.parametrize("w, h", [(8, 6), (7, 5)])
@pytest.mark.parametrize("tag, sub", [("422", (2, 1)), ("444", (1, 1)), ("420", (2, 2))])
@pytest.mark.parametrize("depth", [8, 10, 16])
def test_y4m_of_other_layouts_is_read_as_8_bit_420(tmp_path, caplog, w, h, tag, sub, depth):
    rng = np.random.default_rng(depth + w)
    ch, cw = (h + 1) // 2, (w + 1) // 2
    want = [rng.integers(0, 256, s, dtype=np.uint8) for s in ((h, w), (ch, cw), (ch, cw))]
    # the 4:2:0 chroma repeated over the samples it covers, every value scaled to `depth` bits
    # with its low bits filled below the half-way point: the mean rounds back to `want`
    low = (1 << (depth - 8)) // 2 - 1 if depth > 8 else 0
    up = [want[0]] + [np.repeat(np.repeat(c, 3 - sub[1], 0)[:-(-h // sub[1])], 3 - sub[0], 1)
                      [:, :-(-w // sub[0])] for c in want[1:]]
    planes = [(p.astype(np.int64) << (depth - 8)) + low for p in up]
    path = y4m_of(tmp_path / "c.y4m", tag + (f"p{depth}" if depth > 8 else ""), w, h, planes,
                   depth)
    for frames in _both_readers(path):
        assert len(frames) == 2
        for f in frames:
            assert all(np.array_equal(a, b) for a, b in zip((f.y, f.u, f.v), want))
    assert (": 8-bit 4:2:0 samples" not in caplog.text
            and (tag == "420" and depth == 8) == ("converted" not in caplog.text))


def test_y4m_conversion_rounds_each_mean_once(tmp_path):
    # 10-bit 4:4:4, 2x2: luma 1 (0.25 -> 0), 2 (0.5 -> 1, halves up), 1021 (255.25), 1023 (clipped);
    # chroma means (1 + 1 + 2 + 2) / 16 = 0.375 -> 0 and (2 + 2 + 2 + 2) / 16 = 0.5 -> 1: rounding
    # each sample to 8 bits first would give 0 + 0 + 1 + 1 -> 0.5 -> 1 and 1
    planes = [[[1, 2], [1021, 1023]], [[1, 1], [2, 2]], [[2, 2], [2, 2]]]
    for f in _both_readers(y4m_of(tmp_path / "r.y4m", "444p10", 2, 2, planes, 10, frames=1)):
        assert f[0].y.tolist() == [[0, 1], [255, 255]] and (f[0].u[0, 0], f[0].v[0, 0]) == (0, 1)


def test_mono_and_411_and_alpha_y4m(tmp_path):
    y = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    mono = y4m_of(tmp_path / "m.y4m", "mono", 4, 3, [y], full=True)  # FFmpeg marks gray full
    for frames in _both_readers(mono):
        f = frames[0]
        assert np.array_equal(f.y, np.round(16 + y * (219 / 255)))
        assert f.u.shape == (2, 2) and (f.u == 128).all() and (f.v == 128).all()
    c = np.array([[10, 50], [30, 70], [90, 90]], np.uint8)  # 4:1:1 chroma of 8 x 3: 2 x 3
    for frames in _both_readers(y4m_of(tmp_path / "s.y4m", "411", 8, 3, [y.repeat(2, 1), c, c])):
        assert frames[0].u.tolist() == [[20, 20, 60, 60], [90, 90, 90, 90]]  # pairs of rows
    alpha = np.full((3, 4), 255, np.uint8)
    for frames in _both_readers(y4m_of(tmp_path / "a.y4m", "444alpha", 4, 3,
                                        [y, np.full((3, 4), 9), np.full((3, 4), 7), alpha])):
        assert np.array_equal(frames[0].y, y) and (frames[0].u == 9).all()
        assert (frames[0].v == 7).all()


@pytest.mark.parametrize("tag", ["410", "420p8", "422p17", "420alpha", "444p10alpha", "yuv"])
def test_unknown_y4m_layouts_are_refused(tmp_path, tag):
    path = y4m_of(tmp_path / "u.y4m", tag, 2, 2, [np.zeros(6)])
    with pytest.raises(InputError, match=f"y4m samples C{tag} are not supported"):
        read_video(path)


def test_a_y4m_frame_shorter_than_its_layout_is_truncated(tmp_path):
    path = tmp_path / "t.y4m"  # a 4:4:4 header, then a frame of 4:2:0's size
    path.write_bytes(b"YUV4MPEG2 W4 H4 F25:1 C444\nFRAME\n" + bytes(24))
    with pytest.raises(InputError, match="truncated"):
        read_video(path)


def test_odd_size_y4m(tmp_path):
    video = make_video(frames=2, hw=(25, 37))
    write_video(tmp_path / "odd.y4m", video)
    back = read_video(tmp_path / "odd.y4m")
    assert back.frames[0].u.shape == (13, 19)






@settings(max_examples=150, deadline=None)
@given(edits=st.lists(st.tuples(st.integers(0, 10**4), st.integers(0, 255)), max_size=4),
       cut=st.integers(0, 10**4))
def test_a_mangled_y4m_pipe_is_read_or_refused_in_one_line(edits, cut):
    """A y4m stream cut short or with bytes changed (header fields, frame tags, samples): frames
    that read back intact, or an InputError; nothing else, and no read past what a frame needs."""
    good = b"YUV4MPEG2 W6 H4 F25:1 Ip C420jpeg\n" + (b"FRAME\n" + bytes(range(36))) * 3
    data = bytearray(good[: len(good) - cut % len(good)])
    for pos, value in edits:
        if data:
            data[pos % len(data)] = value
    try:
        video = read_pipe(io.BytesIO(bytes(data)))
    except InputError as e:
        assert "\n" not in str(e)
        return
    for frame in video.frames:
        assert frame.y.shape == (video.height, video.width)


@pytest.mark.parametrize("field, aspect", [("A32:27", (32, 27)), ("A0:0", None), ("A1:1", None),
                                           ("A8:9", (8, 9)), ("A64:54", (32, 27)), ("Ax:y", None),
                                           ("A3", None), ("A-4:3", None)])
def test_the_a_field_is_the_sample_aspect_ratio(tmp_path, field, aspect):
    from fractions import Fraction

    from nvc.io import read_video

    head = f"YUV4MPEG2 W4 H2 F25:1 Ip {field} C420jpeg\n".encode()
    (tmp_path / "c.y4m").write_bytes(head + b"FRAME\n" + bytes(12))
    assert read_video(tmp_path / "c.y4m").aspect == (None if aspect is None else Fraction(*aspect))


@pytest.mark.parametrize("fields, expect", [
    ("W4 H2", (4, 2, 30, False)),  # no F: 30 frames a second
    ("W1 H1 F1:1", (1, 1, 1, False)),  # the smallest size and rate there are
    ("Ib W4 H2 F25:1", (4, 2, 25, True)),  # an interlace field first
    ("W4 H2 F25:1 It", (4, 2, 25, True)), ("W4 H2 F25:1 Im", (4, 2, 25, True)),
    ("W4 H2 F25:1 Ip", (4, 2, 25, False)), ("W4 H2 F25:1 ib", (4, 2, 25, False)),
    ("W0 H2", "has no valid size"), ("W4 H0", "has no valid size"), ("H2", "has no valid size"),
    ("W4 H2 F0:1", "frame rate 0 is not positive"), ("W4 H2 F-1:1", "is not positive"),
    ("W4 H2 F25:0", "malformed y4m header field 'F25:0'"),
])
def test_a_y4m_headers_fields(tmp_path, caplog, fields, expect):
    """Each field of the stream header read as the y4m format says, or refused naming it; an
    interlaced one ('It', 'Ib', 'Im', in any place) read with a warning, a progressive one ('Ip')
    without."""
    path = tmp_path / "h.y4m"
    w, h = (4, 2) if isinstance(expect, str) else expect[:2]
    samples = w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2)
    path.write_bytes(f"YUV4MPEG2 {fields}\n".encode() + b"FRAME\n" + bytes(samples))
    if isinstance(expect, str):
        with pytest.raises(InputError, match=expect):
            read_video(path)
        return
    fps, interlaced = expect[2:]
    v = read_video(path)
    assert (v.width, v.height, v.fps, v.source) == (w, h, fps, str(path))
    assert ("interlaced" in caplog.text) == interlaced


def test_a_damaged_frame_header_in_a_file_is_refused_naming_the_frame(tmp_path):
    path = tmp_path / "d.y4m"
    frame = bytes(6 * 4 * 3 // 2)
    path.write_bytes(b"YUV4MPEG2 W4 H4 F25:1\nFRAME\n" + frame[:24] + b"GARBAGE\n" + frame[:24])
    with pytest.raises(InputError, match="damaged y4m frame header at frame 1"):
        read_video(path)
