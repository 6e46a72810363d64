from fractions import Fraction

import numpy as np
import pytest

from nvc.errors import InputError
from nvc.io import ColourMatrix, parse_raw_name, read_video, rgb_to_yuv, yuv_to_rgb
from nvc.metrics import psnr_db
from nvc.writers import write_video

from .conftest import make_video, shared_clip, y4m_of


@pytest.mark.parametrize("name, size, fps", [
    ("BasketballPass_416x240_50.yuv", (416, 240), Fraction(50)),
    ("Beauty_1920x1080_120fps_420_8bit_YUV.yuv", (1920, 1080), Fraction(120)),
    ("foreman_cif_352x288_f2_raw.yuv", (352, 288), None),
    ("BQTerrace_1920x1080_60.yuv", (1920, 1080), Fraction(60)),
    ("clip.yuv", None, None),
])
def test_raw_names(name, size, fps):
    assert parse_raw_name(name) == (size, fps)


def test_colour_round_trip_is_close():
    rng = np.random.default_rng(0)
    rgb = np.clip(rng.normal(0.5, 0.15, (32, 48, 3)), 0, 1).astype(np.float32)
    rgb = np.repeat(np.repeat(rgb[::2, ::2], 2, 0), 2, 1)  # chroma-smooth content survives 4:2:0
    for m in ColourMatrix:
        assert psnr_db(yuv_to_rgb(rgb_to_yuv(rgb, m), m), rgb) > 38


def test_bt709_reference_values():
    white, black = np.ones((2, 2, 3), np.float32), np.zeros((2, 2, 3), np.float32)
    assert rgb_to_yuv(white).y[0, 0] == 235 and rgb_to_yuv(black).y[0, 0] == 16
    red = np.zeros((2, 2, 3), np.float32)
    red[..., 0] = 1
    f = rgb_to_yuv(red)  # BT.709: Y' = 0.2126 -> 16 + 219 * 0.2126 = 62.6; Cr = 128 + 112 = 240
    assert (f.y[0, 0], f.v[0, 0]) == (63, 240)


def _rgb_to_yuv_as_written(rgb, matrix):  # the formula out of place, as nvc computed it before
    from nvc.io import _KR_KB

    kr, kb = _KR_KB[matrix]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    u, v = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    h, w = y.shape

    def sub(c):
        c = np.pad(c, ((0, h % 2), (0, w % 2)), mode="edge")
        return c.reshape((h + h % 2) // 2, 2, (w + w % 2) // 2, 2).mean(axis=(1, 3))

    def to8(x):
        return np.clip(np.round(x), 0, 255).astype(np.uint8)

    return to8(16 + 219 * y), to8(128 + 224 * sub(u)), to8(128 + 224 * sub(v))


@pytest.mark.parametrize("shape, kind", [((240, 416, 3), "8-bit"), ((31, 45, 3), "8-bit"),
                                         ((64, 64, 3), "float32"), ((33, 35, 3), "float64")])
def test_rgb_to_yuv_keeps_the_formulas_values(shape, kind):
    rng = np.random.default_rng(3)
    rgb = {"8-bit": lambda: rng.integers(0, 256, shape).astype(np.float32) / 255,
           "float32": lambda: rng.random(shape, dtype=np.float32) * 1.2 - 0.1,
           "float64": lambda: rng.random(shape)}[kind]()
    for m in ColourMatrix:
        f = rgb_to_yuv(rgb, m)
        assert all(np.array_equal(a, b) for a, b in zip((f.y, f.u, f.v), _rgb_to_yuv_as_written(rgb, m)))


@pytest.mark.parametrize("name, given, depth", [
    ("Beauty_12x10_120fps_420_10bit_YUV.yuv", None, 10),  # UVG's names
    ("clip_12x10_16bit.yuv", None, 16),
    ("clip_12x10.yuv", "yuv420p12le", 12),
    ("clip_12x10_420_8bit_YUV.yuv", None, 8),
])
def test_raw_yuv_of_more_bits_is_read_from_its_name_or_pix_fmt(tmp_path, name, given, depth):
    from nvc.sampling import pixel_format

    video = make_video(frames=2, hw=(10, 12))
    samples = b"".join((np.concatenate([p.reshape(-1) for p in (f.y, f.u, f.v)]).astype("<u2")
                        << (depth - 8)).astype("<u2" if depth > 8 else np.uint8).tobytes()
                       for f in video.frames)
    (tmp_path / name).write_bytes(samples)
    back = read_video(tmp_path / name, samples=given and pixel_format(given))
    assert len(back.frames) == 2
    for a, b in zip(video.frames, back.frames):
        assert np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)


def test_raw_yuv_in_another_layout_needs_pix_fmt(tmp_path):
    from nvc.sampling import pixel_format

    path = tmp_path / "c_10x10.yuv"  # 4:2:2: 100 luma + 2 x 50 chroma samples a frame, two
    planes = np.random.default_rng(5).integers(0, 256, (2, 200), dtype=np.uint8)
    path.write_bytes(planes.tobytes())
    with pytest.raises(InputError, match="not a whole number of 10x10 8-bit 4:2:0 frames"):
        read_video(path)
    frames = read_video(path, samples=pixel_format("yuv422p")).frames
    u = planes[1, 100:150].reshape(10, 5).astype(int)
    assert len(frames) == 2 and frames[1].u.tolist() == ((u[0::2] + u[1::2] + 1) // 2).tolist()
    with pytest.raises(InputError, match="--pix-fmt is for raw .yuv input"):
        read_video(y4m_of(tmp_path / "c.y4m", "420", 2, 2, [np.zeros(6)]),
                   samples=pixel_format("yuv420p"))


def test_a_range_of_raw_frames_and_the_ranges_refused(tmp_path):
    path = tmp_path / "c.yuv"  # three 4:2:0 frames of 4x2 (12 bytes), each its own value
    path.write_bytes(bytes(np.repeat(np.arange(3, dtype=np.uint8), 12)))
    frames = read_video(path, (4, 2), start=1, frames=5).frames  # all there are after the start
    assert [int(f.y[0, 0]) for f in frames] == [1, 2]
    for start, count, message in ((3, None, r"no frames to read \(file has 3, start 3\)"),
                                  (-1, None, "start frame must be >= 0, got -1"),
                                  (0, 0, "frame count must be positive, got 0")):
        with pytest.raises(InputError, match=message):
            read_video(path, (4, 2), start=start, frames=count)
    (tmp_path / "c_00x16.yuv").write_bytes(bytes(24))  # a size from the name that no frame has
    with pytest.raises(InputError, match="invalid frame size 0x16"):
        read_video(tmp_path / "c_00x16.yuv")




@pytest.mark.parametrize("suffix", [".y4m", ".yuv"])
def test_lossless_round_trip(tmp_path, suffix):
    video = make_video(frames=3, hw=(30, 42))
    path = tmp_path / f"clip_42x30_25{suffix}"
    write_video(path, video)
    back = read_video(path)
    assert len(back.frames) == 3 and back.fps == 25
    for a, b in zip(video.frames, back.frames):
        assert np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)




def test_frame_range(tmp_path):
    video = make_video(frames=4, hw=(16, 16))
    write_video(tmp_path / "c.y4m", video)
    back = read_video(tmp_path / "c.y4m", start=1, frames=2)
    assert len(back.frames) == 2 and np.array_equal(back.frames[0].y, video.frames[1].y)


@pytest.mark.parametrize("setup, message", [
    (lambda d: d / "missing.y4m", "no such file"),
    (lambda d: d, "directory"),
    (lambda d: _write(d / "empty_16x16_25.yuv", b""), "empty file, no video"),
    (lambda d: _write(d / "empty.mp4", b""), "empty file, no video"),
    (lambda d: _write(d / "noname.yuv", b"\0" * 100), "frame size"),
    (lambda d: _write(d / "c_16x16_25.yuv", b"\0" * 100), "not a whole number"),
    (lambda d: _write(d / "junk.mp4", b"not a video at all" * 10), "cannot decode"),
    (lambda d: _write(d / "bad.y4m", b"P6 something\n"), "not a y4m"),
])
@pytest.mark.parametrize("lazy", [False, True])
def test_bad_inputs(tmp_path, setup, message, lazy):
    with pytest.raises(InputError, match=message):
        read_video(setup(tmp_path), lazy=lazy)


def test_size_of_a_sized_input_must_match(tmp_path):
    write_video(tmp_path / "c.y4m", make_video(frames=1, hw=(16, 24)))
    assert read_video(tmp_path / "c.y4m", size=(24, 16)).width == 24  # the same size: accepted
    with pytest.raises(InputError, match="24x16, not the 32x16 given"):
        read_video(tmp_path / "c.y4m", size=(32, 16))


def test_zero_frames_after_start(tmp_path):
    write_video(tmp_path / "c.y4m", make_video(frames=2, hw=(16, 16)))
    with pytest.raises(InputError, match="no frames"):
        read_video(tmp_path / "c.y4m", start=5)




def _write(path, data):
    path.write_bytes(data)
    return path


def test_reads_shared_raw_clip():
    v = read_video(shared_clip("BasketballPass_416x240_50fps_f2_raw.yuv"))
    assert (v.width, v.height, len(v.frames), v.fps) == (416, 240, 2, 50)


def test_reads_shared_full_range_h264():
    v = read_video(shared_clip("street_1920x1080_f54_h264.264"), frames=2)
    assert (v.width, v.height, len(v.frames)) == (1920, 1080, 2)
    assert 16 <= v.frames[0].y.min() and v.frames[0].y.max() <= 235  # full range mapped to limited
    lazy = read_video(shared_clip("street_1920x1080_f54_h264.264"), frames=2, lazy=True)
    assert (lazy.width, lazy.height, len(lazy.frames)) == (1920, 1080, 2)
    assert all(np.array_equal(a.y, b.y) for a, b in zip(lazy.frames, v.frames, strict=True))


@pytest.mark.parametrize("suffix", ["y4m", "yuv", "mp4"])
def test_lazy_reading_gives_the_same_frames(suffix, tmp_path):
    from nvc.io import LazyFrames, read_video
    from nvc.writers import write_video

    from .conftest import make_video

    path = tmp_path / f"clip_70x50_25.{suffix}"
    write_video(path, make_video(frames=5))
    eager = read_video(path, start=1, frames=3)
    lazy = read_video(path, start=1, frames=3, lazy=True)
    assert isinstance(lazy.frames, LazyFrames) and len(lazy.frames) == 3
    assert (lazy.width, lazy.height) == (eager.width, eager.height) == (70, 50)
    for _ in range(2):  # every iteration is a fresh pass over the file
        assert all(np.array_equal(a.y, b.y) and np.array_equal(a.v, b.v)
                   for a, b in zip(lazy.frames, eager.frames, strict=True))
    assert np.array_equal(lazy.frames[2].u, eager.frames[2].u)


@pytest.mark.parametrize("suffix", ["y4m", "yuv", "mp4"])
def test_random_access_reads_any_frame_alone(suffix, tmp_path, monkeypatch):
    """y4m and raw .yuv are read in place; what FFmpeg decodes is spooled to an unnamed file."""
    import tempfile

    from nvc.io import random_access, read_video
    from nvc.writers import write_video

    from .conftest import make_video

    path = tmp_path / "in" / f"clip_70x50_25.{suffix}"
    path.parent.mkdir()
    write_video(path, make_video(frames=5))
    eager = read_video(path, start=1, frames=4)
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    video = random_access(read_video(path, start=1, frames=4, lazy=True))
    assert video.frames.read_at is not None and (video.width, video.height) == (70, 50)
    assert list(spool_dir.iterdir()) == []  # nothing named is left behind
    for i in (3, 0, 2, 1, 3):
        assert all(np.array_equal(getattr(video.frames[i], p), getattr(eager.frames[i], p))
                   for p in "yuv")
    assert all(np.array_equal(a.y, b.y) for a, b in zip(video.frames, eager.frames, strict=True))
    assert random_access(eager) is eager  # a list already is
    if suffix == "mp4":  # a spool that cannot be written: one line, no traceback
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
        with pytest.raises(InputError, match=r"cannot spool .*mp4's 4 frames \(0 MiB\) to .*missing"):
            random_access(read_video(path, start=1, frames=4, lazy=True))


def _tagged(path, planes, colorspace: int, color_range: int) -> None:
    """An FFV1 file of 4:2:0 frames with these planes, tagged as asked."""
    import av

    with av.open(str(path), "w", format="matroska") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = planes[0].shape[1], planes[0].shape[0], "yuv420p"
        s.codec_context.colorspace, s.codec_context.color_range = colorspace, color_range
        w = planes[0].shape[1]
        stacked = np.concatenate([planes[0]] + [c.reshape(-1, w) for c in planes[1:]])
        for _ in range(2):
            f = av.VideoFrame.from_ndarray(stacked, format="yuv420p")
            f.colorspace, f.color_range = colorspace, color_range
            out.mux(s.encode(f))
        out.mux(s.encode())


@pytest.mark.parametrize("colorspace, matrix", [(2, None), (1, "BT709"), (5, "BT601"),
                                                (6, "BT601"), (9, None)])
def test_a_files_colour_matrix_tag_is_read(tmp_path, colorspace, matrix, caplog):
    """FFmpeg's matrix codes 1 (BT.709), 5 and 6 (BT.601) are read; unspecified (2) is None; one
    nvc does not code (9, BT.2020) is None with a warning."""
    from nvc.io import ColourMatrix

    rng = np.random.default_rng(3)
    planes = [rng.integers(16, 236, (16, 24), np.uint8)] + \
        [rng.integers(16, 241, (8, 12), np.uint8) for _ in range(2)]
    _tagged(tmp_path / "c.mkv", planes, colorspace, 1)
    for lazy in (False, True):
        caplog.clear()
        v = read_video(tmp_path / "c.mkv", lazy=lazy)
        assert v.fps == 25 and v.source == str(tmp_path / "c.mkv")
        assert v.matrix == (None if matrix is None else ColourMatrix[matrix])
        assert np.array_equal(v.frames[0].y, planes[0]) and np.array_equal(v.frames[1].v, planes[2])
        assert len(caplog.messages) == (colorspace == 9)


@pytest.mark.parametrize("pix_fmt, codec, suffix", [("rgb24", "png", "mov"),
                                                    ("rgb48le", "ffv1", "mkv"),
                                                    ("rgba", "png", "mov")])
def test_an_rgb_file_reads_as_nvc_converts_rgb(tmp_path, pix_fmt, codec, suffix, caplog):
    """RGB sources (a PNG sequence's, an RGB FFV1's) are converted to 4:2:0 as nvc converts RGB
    (rgb_to_yuv at BT.709) and tagged with that matrix, so that the RGB the model is given, and
    the decoder's RGB output, are the source's colours (before: FFmpeg's BT.601 conversion, read
    back at BT.709, moved a saturated colour by 26 code values; and a warning about
    'colour matrix 0')."""
    import av

    rgb = np.zeros((16, 24, 3), np.float32)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 0.8, 0.15, 0.35  # a saturated colour, flat
    rgb[4:, 8:] = (0.1, 0.7, 0.9)  # and a second one, on whole chroma blocks
    rgb[:2, :2] = (0.30001, 0.5, 0.69999)  # a block apart from 8-bit values only in 16 bits
    deep = pix_fmt == "rgb48le"
    samples = np.round(rgb * (65535 if deep else 255)).astype(np.uint16 if deep else np.uint8)
    if pix_fmt == "rgba":  # opaque
        samples = np.concatenate([samples, np.full_like(samples[..., :1], 255)], axis=-1)
    path = tmp_path / f"c.{suffix}"
    with av.open(str(path), "w") as out:
        s = out.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 24, 16, pix_fmt
        out.mux(s.encode(av.VideoFrame.from_ndarray(samples, format=pix_fmt)))
        out.mux(s.encode())
    for lazy in (False, True):
        caplog.clear()
        v = read_video(path, lazy=lazy)
        assert not caplog.messages
        got = yuv_to_rgb(v.frames[0], v.matrix)
        stored = samples[..., :3].astype(np.float32) / (65535 if deep else 255)
        error = np.abs(got - stored).max() * 255  # 8-bit 4:2:0 of flat 2x2 blocks: rounding only
        assert error < 1.5 and v.matrix == ColourMatrix.BT709, error
        want = rgb_to_yuv(stored)  # exactly nvc's conversion of the samples, at their own depth
        assert all(np.array_equal(getattr(v.frames[0], n), getattr(want, n)) for n in "yuv")


def test_a_grey_file_reads_without_a_matrix_warning(tmp_path, caplog):
    """A grey PNG's samples (full range) read as limited-range luma with neutral chroma, and its
    'colour matrix 0' tag draws no warning: no matrix applies to grey."""
    import av

    grey = np.repeat(np.array([[0, 128, 255]], np.uint8), 8, axis=1).repeat(16, axis=0)
    with av.open(str(tmp_path / "g.mov"), "w") as out:
        s = out.add_stream("png", rate=25)
        s.width, s.height, s.pix_fmt = 24, 16, "gray"
        out.mux(s.encode(av.VideoFrame.from_ndarray(grey, format="gray")))
        out.mux(s.encode())
    f = read_video(tmp_path / "g.mov").frames[0]
    assert f.y[0, ::8].tolist() == [16, 126, 235] and (f.u == 128).all() and (f.v == 128).all()
    assert not caplog.messages


def test_a_full_range_file_is_rescaled_as_a_full_range_y4m_is(tmp_path):
    """Full-range 4:2:0 from FFmpeg: its samples rescaled to the limited range in YUV (as a y4m's
    with XCOLORRANGE=FULL), not through FFmpeg's RGB, whose matrix is not nvc's."""
    from nvc.io import YUVFrame, limited_range

    rng = np.random.default_rng(4)
    planes = [rng.integers(0, 256, (16, 24), np.uint8)] + \
        [rng.integers(0, 256, (8, 12), np.uint8) for _ in range(2)]
    _tagged(tmp_path / "full.mkv", planes, 2, 2)
    want = limited_range(YUVFrame(*planes))
    head = b"YUV4MPEG2 W24 H16 F25:1 Ip A1:1 C420jpeg XCOLORRANGE=FULL\n"
    body = b"".join(b"FRAME\n" + b"".join(p.tobytes() for p in planes) for _ in range(2))
    (tmp_path / "full.y4m").write_bytes(head + body)
    for path in ("full.mkv", "full.y4m"):
        got = read_video(tmp_path / path).frames[1]
        assert all(np.array_equal(getattr(got, n), getattr(want, n)) for n in "yuv"), path


@pytest.mark.parametrize("lazy", [False, True])
def test_a_file_too_wide_is_refused_before_its_frames_are_read(tmp_path, lazy):
    """nvc's limit on a side (8192), from the first frame FFmpeg decodes, however it is read
    (before: read whole without lazy)."""
    import av

    with av.open(str(tmp_path / "wide.mkv"), "w") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 8200, 16, "yuv420p"
        out.mux(s.encode(av.VideoFrame.from_ndarray(np.zeros((24, 8200), np.uint8), "yuv420p")))
        out.mux(s.encode())
    with pytest.raises(InputError, match="frame size 8200x16 exceeds nvc's limit"):
        read_video(tmp_path / "wide.mkv", lazy=lazy)


def test_a_full_range_file_not_in_420_is_rescaled_too(tmp_path):
    """Full-range 4:2:2 (a camera's MJPEG as FFV1, say): FFmpeg's conversion to 4:2:0 keeps the
    range, then the samples are rescaled as a full-range 4:2:0 file's (chroma the same down each
    column, so that 4:2:0 loses nothing and the expected frame is exact)."""
    import av

    from nvc.io import YUVFrame, limited_range

    rng = np.random.default_rng(5)
    y = rng.integers(0, 256, (16, 24), np.uint8)
    u, v = (np.repeat(rng.integers(0, 256, (1, 12), np.uint8), 16, axis=0) for _ in range(2))
    with av.open(str(tmp_path / "full422.mkv"), "w", format="matroska") as out:
        s = out.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = 24, 16, "yuv422p"
        s.codec_context.color_range = 2
        f = av.VideoFrame(24, 16, "yuv422p")
        for plane, data in zip(f.planes, (y, u, v)):
            rows = np.zeros((plane.height, plane.line_size), np.uint8)
            rows[:, :data.shape[1]] = data
            plane.update(rows.tobytes())
        f.color_range = 2
        out.mux(s.encode(f))
        out.mux(s.encode())
    got = read_video(tmp_path / "full422.mkv").frames[0]
    want = limited_range(YUVFrame(y, u[::2], v[::2]))
    assert all(np.array_equal(getattr(got, n), getattr(want, n)) for n in "yuv")


@pytest.mark.parametrize("rotation", [90, -90, 180])
@pytest.mark.parametrize("lazy", [False, True])
def test_a_rotated_file_is_read_upright_as_ffmpeg_shows_it(tmp_path, rotation, lazy):
    """A file whose display matrix asks for a rotation (a phone's portrait video) reads as the
    FFmpeg command line (imageio-ffmpeg's binary) shows it: turned, the sides swapped (and the
    pixels' aspect ratio with them)."""
    import subprocess

    import av
    import imageio_ffmpeg

    y = np.full((32, 64), 60, np.uint8)
    y[:8, :16] = 230  # a bright corner: which way it turned shows
    path = tmp_path / "r.mp4"
    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 64, 32, "yuv420p"
        s.set_display_rotation(rotation)
        s.codec_context.sample_aspect_ratio = Fraction(2, 1)  # pixels twice as wide as high
        for _ in range(2):
            out.mux(s.encode(av.VideoFrame.from_ndarray(
                np.concatenate([y, np.full((16, 64), 128, np.uint8)]), format="yuv420p")))
        out.mux(s.encode())
    shown = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path),
                            "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-"],
                           capture_output=True, check=True).stdout
    v = read_video(path, lazy=lazy)
    w, h = (32, 64) if rotation % 180 else (64, 32)
    assert (v.width, v.height) == (w, h) and v.frames[1].u.shape == (h // 2, w // 2)
    assert v.aspect == (Fraction(1, 2) if rotation % 180 else 2)  # on their side: twice as high
    luma = np.frombuffer(shown, np.uint8)[:h * w].reshape(h, w)
    assert np.abs(v.frames[0].y.astype(int) - luma).max() <= 8


@pytest.mark.parametrize("lazy", [False, True])
def test_a_stream_whose_frame_size_changes_is_refused_in_one_line(tmp_path, lazy):
    """Two raw H.264 streams of other sizes one after the other (as a broadcast capture can
    change resolution): one InputError naming the frame and what to do, not an internal error
    inside the coder."""
    import av

    parts = []
    for w, h in ((64, 48), (96, 64)):
        path = tmp_path / f"{w}.264"
        with av.open(str(path), "w", format="h264") as out:
            s = out.add_stream("libx264", rate=25)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for _ in range(2):
                out.mux(s.encode(av.VideoFrame.from_ndarray(np.full((h * 3 // 2, w), 90, np.uint8),
                                                            format="yuv420p")))
            out.mux(s.encode())
        parts.append(path.read_bytes())
    (tmp_path / "both.264").write_bytes(b"".join(parts))
    with pytest.raises(InputError, match=r"both\.264: frame 2 is 96x64, the first 64x48: an nvc "
                                         r"stream has one size \(scale it first"):
        list(read_video(tmp_path / "both.264", lazy=lazy).frames)
    assert len(read_video(tmp_path / "both.264", frames=2, lazy=lazy).frames) == 2


@pytest.mark.parametrize("tag, warned", [({}, None), ({"interlaced_frame": True}, "interlaced"),
                                         ({"color_trc": 16}, "HDR (PQ transfer)"),
                                         ({"color_trc": 18}, "HDR (HLG transfer)")])
def test_interlaced_and_hdr_sources_are_coded_with_a_warning(tmp_path, monkeypatch, caplog, tag,
                                                             warned):
    """What nvc codes otherwise than the source is (progressive pictures, 8-bit SDR) is said once,
    when the first frame's tags say so."""
    import av

    video = make_video(frames=1, hw=(16, 16))
    write_video(tmp_path / "c.mkv", video)

    class Tagged:  # the first decoded frame, tagged as asked
        def __init__(self, frame):
            self._frame = frame

        def __getattr__(self, name):
            return tag.get(name, getattr(self._frame, name))
    decode = av.container.InputContainer.decode
    monkeypatch.setattr(av.container.InputContainer, "decode",
                        lambda self, *a, **k: (Tagged(f) for f in decode(self, *a, **k)))
    caplog.clear()
    read_video(tmp_path / "c.mkv")
    assert [m for m in caplog.messages if "c.mkv" in m] == ([] if warned is None else [
        next(m for m in caplog.messages if warned in m)])


def test_until_ends_a_pass_once_asked_and_keeps_the_count(small_video):
    """nvc.io.Until (the first Ctrl-C of encode and decode): the count stays the clip's, a pass
    ends before drawing the frame after the stop, and a stop before any frame is handed on is an
    interrupt (nothing to keep)."""
    from nvc.io import LazyFrames, Until

    drawn = []

    def frames():
        for f in small_video.frames:
            drawn.append(f)
            yield f
    cut = Until(LazyFrames(len(small_video.frames), frames), lambda: len(drawn) >= 2)
    assert len(cut) == len(small_video.frames)
    got = list(cut)
    assert cut.handed == 2 and len(drawn) == 2  # the third never drawn
    assert all(a is b for a, b in zip(got, small_video.frames))
    with pytest.raises(KeyboardInterrupt):
        list(Until(small_video.frames, lambda: True))
