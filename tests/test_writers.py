from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from nvc.errors import InputError
from nvc.io import Video, read_video
from nvc.metrics import psnr_db
from nvc.writers import write_video

from .conftest import make_video


@pytest.mark.parametrize("hw", [(24, 32), (25, 37)])
def test_mkv_is_lossless_and_containers_of_odd_sizes_are_read(tmp_path, hw):
    video = make_video(frames=3, hw=hw)
    for suffix in (".mkv", ".mp4"):  # mp4 (H.264 4:2:0) grows odd sides by one
        write_video(tmp_path / f"c{suffix}", video)
        back = read_video(tmp_path / f"c{suffix}")
        even = suffix == ".mp4"
        assert len(back.frames) == 3
        assert (back.width, back.height) == (hw[1] + hw[1] % 2 * even, hw[0] + hw[0] % 2 * even)
    for a, b in zip(video.frames, read_video(tmp_path / "c.mkv").frames):
        assert np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)
    h, w = hw  # mp4: the picture where it was, the added row and column repeating the last ones
    for a, b in zip(video.frames, read_video(tmp_path / "c.mp4").frames):
        assert psnr_db(b.y[:h, :w], a.y, 255) > 38
        assert psnr_db(b.y[h - 1:, :w], np.repeat(a.y[-1:], b.y.shape[0] - h + 1, 0), 255) > 30
        assert psnr_db(b.y[:h, w - 1:], np.repeat(a.y[:, -1:], b.y.shape[1] - w + 1, 1), 255) > 30


@pytest.mark.parametrize("fps", [Fraction(50), Fraction(30000, 1001), Fraction(12)])
@pytest.mark.parametrize("suffix", [".mkv", ".mp4"])
def test_a_containers_frame_rate_is_the_videos(tmp_path, fps, suffix):
    video = make_video(frames=3, hw=(16, 16))
    video.fps = fps
    write_video(tmp_path / f"c{suffix}", video)
    assert read_video(tmp_path / f"c{suffix}").fps == fps


def test_mp4_round_trip_is_high_quality(tmp_path):
    video = make_video(frames=4, hw=(64, 96))
    write_video(tmp_path / "c.mp4", video)
    back = read_video(tmp_path / "c.mp4")
    assert len(back.frames) == 4 and (back.width, back.height) == (96, 64)
    assert psnr_db(back.frames[0].y, video.frames[0].y, 255) > 38


def test_png_pattern(tmp_path):
    write_video(tmp_path / "f_%03d.png", make_video(frames=2, hw=(16, 16)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f_000.png", "f_001.png"]


@pytest.mark.parametrize("name, message", [
    ("out.png", "PNG output needs a frame-number pattern such as out_%04d.png"),
    ("out.avi", "unknown output type; use .y4m, .yuv, .mp4, .mkv or a %d .png pattern"),
    ("out", "unknown output type"),
    ("none/out.y4m", "output folder does not exist")])
def test_an_output_nvc_cannot_write_is_refused_before_writing(tmp_path, name, message):
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        write_video(tmp_path / name, make_video(frames=1, hw=(16, 16)))
    assert not list(tmp_path.iterdir())


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import nvc.writers

    def breaks(path, video):  # a writer that fails halfway
        Path(path).write_bytes(b"YUV4MPEG2 half a file")
        raise OSError("disk full")
    monkeypatch.setitem(nvc.writers.WRITERS, ".y4m", breaks)
    with pytest.raises(OSError, match="disk full"):
        write_video(tmp_path / "out.y4m", make_video(frames=2, hw=(16, 16)))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.y4m", "out.yuv", "out.mp4", "out_%04d.png"])
def test_an_empty_video_is_refused_before_writing(tmp_path, name):
    with pytest.raises(InputError, match="no frames to write"):
        write_video(tmp_path / name, Video([], Fraction(25)))
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("matrix", [None, "BT709", "BT601"])
def test_mp4_and_mkv_carry_the_videos_colour_matrix_and_range(tmp_path, matrix):
    """Written tagged limited range and, where the video says, with its matrix; read back, the
    tag is the video's (untagged stays untagged)."""
    from dataclasses import replace

    import av

    from nvc.io import ColourMatrix

    video = replace(make_video(frames=2, hw=(16, 16)),
                    matrix=None if matrix is None else ColourMatrix[matrix])
    for suffix in (".mp4", ".mkv"):
        write_video(tmp_path / f"c{suffix}", video)
        with av.open(str(tmp_path / f"c{suffix}")) as c:
            frame = next(c.decode(video=0))
            if matrix is None:  # the range alone is not written: unspecified reads as limited
                assert frame.colorspace == 2 and frame.color_range in (0, 1)
            else:
                assert (frame.color_range, frame.colorspace) == (1, int(video.matrix))
        assert read_video(tmp_path / f"c{suffix}").matrix == video.matrix


def test_png_frames_convert_with_the_videos_matrix(tmp_path):
    from dataclasses import replace

    from PIL import Image

    from nvc.io import ColourMatrix, yuv_to_rgb

    video = make_video(frames=1, hw=(16, 16))
    for m in (None, ColourMatrix.BT601):
        write_video(tmp_path / "f_%d.png", replace(video, matrix=m))
        rgb = np.asarray(Image.open(tmp_path / "f_0.png"))
        want = yuv_to_rgb(video.frames[0], m or ColourMatrix.BT709)
        assert np.array_equal(rgb, np.round(want * 255).astype(np.uint8))


@pytest.mark.parametrize("suffix", [".y4m", ".mp4", ".mkv"])
def test_a_videos_sample_aspect_ratio_is_written_and_read_back(tmp_path, suffix):
    """Anamorphic pixels (DVD's 32:27) survive a write and a read in y4m (its A field) and .mp4;
    Matroska takes the stream's ratio, which PyAV cannot set: .mkv is square. Square pixels read
    as None."""
    from dataclasses import replace

    video = make_video(frames=2, hw=(16, 24))
    for aspect in (Fraction(32, 27), None):
        write_video(tmp_path / f"c{suffix}", replace(video, aspect=aspect))
        assert read_video(tmp_path / f"c{suffix}").aspect == (None if suffix == ".mkv" else aspect)


def test_a_link_is_kept_and_the_file_it_names_replaced(tmp_path):
    (tmp_path / "real.y4m").write_bytes(b"old")
    (tmp_path / "link.y4m").symlink_to("real.y4m")
    write_video(tmp_path / "link.y4m", make_video(frames=2, hw=(16, 16)))
    assert (tmp_path / "link.y4m").is_symlink()
    assert len(read_video(tmp_path / "real.y4m").frames) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.y4m", "real.y4m"]


def test_a_named_pipe_is_written_in_place_not_replaced(tmp_path):
    import os
    import stat
    import threading

    from nvc.writers import open_output

    pipe = tmp_path / "player.y4m"
    os.mkfifo(pipe)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()), daemon=True)
    reader.start()
    video = make_video(frames=2, hw=(16, 16))
    write_video(pipe, video)
    reader.join(timeout=10)
    assert got and got[0].startswith(b"YUV4MPEG2") and got[0].count(b"FRAME\n") == 2
    reader = threading.Thread(target=lambda: got.append(pipe.read_bytes()), daemon=True)
    reader.start()
    with open_output(pipe) as f:  # encode's output
        f.write(b"NVC bytes")
    reader.join(timeout=10)
    assert got[1] == b"NVC bytes"
    assert stat.S_ISFIFO(os.stat(pipe).st_mode) and [p.name for p in tmp_path.iterdir()] == ["player.y4m"]
