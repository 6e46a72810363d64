"""Numbered image files read as a video (nvc.sequences, nvc.io.read_video)."""
import numpy as np
import pytest

from nvc.errors import InputError
from nvc.io import ColourMatrix, read_video
from nvc.sequences import first_number
from nvc.writers import write_video

from .conftest import make_video


@pytest.mark.parametrize("lazy", [False, True])
def test_decoded_png_frames_read_back_as_the_video(tmp_path, lazy):
    """The PNG frames `nvc decode -o frame_%04d.png` writes read back, as a pattern, to the same
    frames, in order (8-bit RGB both ways: within a code value or two of RGB)."""
    video = make_video(frames=3, hw=(32, 48))
    write_video(tmp_path / "f_%04d.png", video)
    got = read_video(tmp_path / "f_%04d.png", lazy=lazy)
    assert len(got.frames) == 3 and (got.width, got.height) == (48, 32)
    for a, b in zip(video.frames, got.frames):  # 8-bit RGB, chroma up- and down-sampled
        assert all(np.abs(getattr(a, n).astype(int) - getattr(b, n)).max() <= 4 for n in "yuv")
    assert got.matrix == ColourMatrix.BT709


def _numbered(tmp_path, numbers, name="g_{:04d}.png"):
    video = make_video(frames=1, hw=(16, 16))
    write_video(tmp_path / "one_%d.png", video)
    for n in numbers:
        (tmp_path / name.format(n)).write_bytes((tmp_path / "one_0.png").read_bytes())
    (tmp_path / "one_0.png").unlink()


@pytest.mark.parametrize("lazy", [False, True])
def test_a_sequence_starts_where_its_numbers_do(tmp_path, lazy):
    """Numbered from 10 (beyond the 0-4 FFmpeg looks at by itself): read from there."""
    _numbered(tmp_path, [10, 11, 12])
    assert first_number(tmp_path / "g_%04d.png") == 10
    v = read_video(tmp_path / "g_%04d.png", start=1, fps=30, lazy=lazy)
    assert len(list(v.frames)) == 2 and v.fps == 30


def test_a_sequence_with_a_gap_is_refused_naming_the_number_missing(tmp_path):
    """FFmpeg would open it and fail at the missing file, midway (an internal error)."""
    _numbered(tmp_path, [10, 11, 12, 14])
    with pytest.raises(InputError, match=r"number 13 is missing, between 12 and the next file; "
                                         r"a sequence is read from its first number \(10\) to "
                                         r"its last \(14\)"):
        read_video(tmp_path / "g_%04d.png")


def test_an_unpadded_field_matches_unpadded_numbers_only(tmp_path):
    _numbered(tmp_path, [1, 2], name="u{}.png")
    (tmp_path / "u000.png").write_bytes((tmp_path / "u1.png").read_bytes())  # not %d's 0
    assert first_number(tmp_path / "u%d.png") == 1
    assert len(read_video(tmp_path / "u%d.png").frames) == 2


@pytest.mark.parametrize("pattern, message", [
    ("g_%04d.png", r"g_%04d.png: no file matches it \(a numbered image sequence, e.g. "
                   r"frame_%04d.png for frame_0000.png, frame_0001.png, ...\)$"),
    ("missing/g_%04d.png", r"no such folder"),
])
def test_a_pattern_that_names_nothing_is_refused_in_a_line(tmp_path, pattern, message):
    with pytest.raises(InputError, match=message):
        read_video(tmp_path / pattern)


def test_a_name_without_one_field_is_no_pattern(tmp_path):
    assert first_number(tmp_path / "plain.png") is None
    assert first_number(tmp_path / "a_%d_%d.png") is None
    with pytest.raises(InputError, match="no such file"):
        read_video(tmp_path / "plain.png")


@pytest.mark.parametrize("name, message", [
    ("x_%s.png", "takes %d or %04d (and %% for a '%'), not '%s'"),
    ("x_%.png", "takes %d or %04d (and %% for a '%'), not '%.'"),
    ("x_%5.2f.png", "takes %d or %04d (and %% for a '%'), not '%5'"),
    ("x_%d_%d.png", "holds one number field (%d, %04d), not 2"),
    ("x_%%.png", "holds one number field (%d, %04d), not 0"),
])
def test_a_malformed_png_output_pattern_is_refused_before_anything_is_written(tmp_path, name,
                                                                              message):
    """Before: Python's own % formatting named the files ('%s', '%x' and '%5.2f' wrote files
    named otherwise than FFmpeg reads them) or failed with an internal error ('%d_%d', '%.')."""
    with pytest.raises(InputError) as refused:
        write_video(tmp_path / name, make_video(frames=2, hw=(16, 16)))
    assert str(refused.value) == f"{tmp_path / name}: a frame-number pattern {message}"
    assert not list(tmp_path.iterdir())


def test_a_literal_percent_is_written_and_read_as_ffmpeg_names_it(tmp_path):
    write_video(tmp_path / "5%%_x_%02d%%.png", make_video(frames=2, hw=(16, 16)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["5%_x_00%.png", "5%_x_01%.png"]
    assert len(read_video(tmp_path / "5%%_x_%02d%%.png").frames) == 2


@pytest.mark.parametrize("before, message", [
    (5, "3 files after it (f_002.png on) left from before: a reader of the pattern takes them"),
    (3, "1 file after it (f_002.png on) left from before: a reader of the pattern takes it"),
])
def test_files_left_after_the_last_frame_written_are_named(tmp_path, caplog, before, message):
    """A shorter sequence decoded over a longer one: the longer one's later files would be read
    as this one's frames; the write names them."""
    write_video(tmp_path / "f_%03d.png", make_video(frames=before, hw=(16, 16)))
    assert not caplog.messages
    write_video(tmp_path / "f_%03d.png", make_video(frames=2, hw=(16, 16)))
    assert caplog.messages == [f"{tmp_path / 'f_001.png'}: {message} for frames of this sequence"]


def test_a_failed_png_write_leaves_no_frame_and_says_why(tmp_path, monkeypatch):
    """Every frame goes to a temporary file first, renamed once all are written: a failure on the
    third (a full disk) leaves the folder as it was, and its own error, not the cleanup's."""
    from PIL import Image

    real, calls = Image.Image.save, []

    def save(self, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(self, fp, *args, **kwargs)
    monkeypatch.setattr(Image.Image, "save", save)
    with pytest.raises(OSError, match="No space left"):
        write_video(tmp_path / "f_%03d.png", make_video(frames=4, hw=(16, 16)))
    assert not list(tmp_path.iterdir())
