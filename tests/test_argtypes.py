"""The options' types: what each accepts (and turns it into), and the one line it refuses with."""
import argparse
from fractions import Fraction

import pytest

from nvc import argtypes
from nvc.bitstream import LIMITS
from nvc.io import MAX_ASPECT
from nvc.refine import MAX_STEPS


def refused(kind, text: str) -> str:
    with pytest.raises(argparse.ArgumentTypeError) as e:
        kind(text)
    message = str(e.value)
    assert "\n" not in message and repr(text) in message
    return message


def test_size():
    assert argtypes.size("416x240") == (416, 240)
    assert argtypes.size("1920X1080") == (1920, 1080)
    assert argtypes.size("1x1") == (1, 1)
    for text in ("416", "416x240x3", "axb", "416x", "x240", ""):
        assert "416x240" in refused(argtypes.size, text)
    for text in ("0x240", "416x0", "-416x240"):
        assert "positive" in refused(argtypes.size, text)


def test_sample_aspect():
    assert argtypes.aspect("32:27") == Fraction(32, 27)
    assert argtypes.aspect("1:1") == 1
    top = LIMITS.max_aspect_term
    assert argtypes.aspect(f"{MAX_ASPECT}:1") == MAX_ASPECT  # the bounds are in
    assert argtypes.aspect(f"1:{MAX_ASPECT}") == Fraction(1, MAX_ASPECT)
    assert argtypes.aspect(f"{top}:{top}") == 1
    for text in ("0:1", "1:0", f"{top + 1}:{top + 1}", f"{MAX_ASPECT + 1}:1", f"1:{MAX_ASPECT + 1}",
                 "32/27", "32:", ":27", "1.5:1", "-1:1", "32:27:1", "²:1", ""):
        message = refused(argtypes.aspect, text)
        assert "32:27" in message and f"terms 1 to {top}" in message and f"{MAX_ASPECT}:1" in message


def test_fps():
    assert argtypes.fps("50") == 50
    assert argtypes.fps("30000/1001") == Fraction(30000, 1001)
    assert argtypes.fps("29.97") == Fraction(2997, 100)
    assert argtypes.fps("1") == 1 and argtypes.fps("1/2") == Fraction(1, 2)  # a time-lapse's
    for text in ("fifty", "1/0", "inf", "nan", ""):
        assert "30000/1001" in refused(argtypes.fps, text)
    for text in ("0", "-25", "0/1"):
        assert "positive" in refused(argtypes.fps, text)
    assert argtypes.fps(str(LIMITS.max_fps)) == LIMITS.max_fps  # what a stream carries, no more
    for text in (f"{LIMITS.max_fps}.001", "1e400"):
        assert f"at most {LIMITS.max_fps}" in refused(argtypes.fps, text)


def test_pix_fmt():
    from nvc.sampling import pixel_format

    assert argtypes.pix_fmt("yuv420p10le") == pixel_format("yuv420p10le") is not None
    for text in ("yuv420p10be", "rgb24", ""):
        assert refused(argtypes.pix_fmt, text) == (
            f"pixel format {text!r} is not one nvc reads: yuv420p, yuv422p, yuv444p, yuv411p, "
            "gray, yuva444p, and those of 9 to 16 bits little-endian (yuv420p10le, gray12le)")


def test_whole_numbers():
    assert argtypes.whole("-3") == -3 and argtypes.positive("1") == 1
    for text in ("1.5", "one", ""):
        assert "whole number" in refused(argtypes.positive, text)
    for text in ("0", "-1"):
        assert "positive" in refused(argtypes.positive, text)


def test_demo_frames():
    assert argtypes.demo_frames("1") == 1
    assert argtypes.demo_frames(str(argtypes.MAX_DEMO_FRAMES)) == argtypes.MAX_DEMO_FRAMES
    assert "positive" in refused(argtypes.demo_frames, "0")
    assert f"at most {argtypes.MAX_DEMO_FRAMES} frames" in refused(
        argtypes.demo_frames, str(argtypes.MAX_DEMO_FRAMES + 1))


def test_intra_period():
    assert argtypes.intra_period("1") == 1
    assert argtypes.intra_period(str(LIMITS.max_frames)) == LIMITS.max_frames
    assert "positive" in refused(argtypes.intra_period, "0")
    for text in (str(LIMITS.max_frames + 1), "99999999999999999999999"):
        assert f"at most {LIMITS.max_frames} frames" in refused(argtypes.intra_period, text)


def test_positive_real():
    assert argtypes.positive_real("0.25") == 0.25 and argtypes.positive_real("3") == 3.0
    for text in ("0", "-1", "inf", "nan", "x", ""):
        assert "above 0" in refused(argtypes.positive_real, text)


def test_window():
    assert argtypes.window("64") == 64 and argtypes.window("256") == 256
    for text in ("0", "-64", "96", "65", "1"):
        assert "multiple of 64" in refused(argtypes.window, text)


def test_refinement_steps():
    assert argtypes.steps("0") == 0 and argtypes.steps(str(MAX_STEPS)) == MAX_STEPS
    for text in ("-1", str(MAX_STEPS + 1)):
        assert f"0 to {MAX_STEPS} steps" in refused(argtypes.steps, text)


def test_gop_schedule():
    from nvc.schedule import FLAT, GopSchedule

    assert argtypes.gop_schedule("0") == FLAT
    assert argtypes.gop_schedule("0.75,0,0.5/0.5,0") == GopSchedule.parse("0.75,0,0.5/0.5,0")
    assert "a GOP schedule is LIFT,DROP,SLOPE[/CYCLE] in rungs" in refused(argtypes.gop_schedule, "0.75,0")


def test_bitrate():
    assert argtypes.bitrate("500k") == 500_000 and argtypes.bitrate("1.5M") == 1_500_000
    assert argtypes.bitrate("250000") == 250_000
    assert "500k" in refused(argtypes.bitrate, "fast")
    assert "positive" in refused(argtypes.bitrate, "0k")


def test_qualities():
    assert argtypes.quality("2") == 2 and isinstance(argtypes.quality("2"), int)
    assert argtypes.quality("2.0") == 2.0 and isinstance(argtypes.quality("2.0"), float)
    assert argtypes.quality("2.5") == 2.5
    for text in ("two", "nan", "inf", ""):
        assert "like 2 or 2.5" in refused(argtypes.quality, text)
    assert argtypes.qualities("1,2.5,4") == [1, 2.5, 4]
    for text in ("1,,2", "1,x", "nan"):
        assert "1,2,3" in refused(argtypes.qualities, text)
    assert "quality 2 is listed twice" in refused(argtypes.qualities, "1,2,3,2")
