"""The types of `nvc`'s options: each turns the text given into a value, or raises
argparse.ArgumentTypeError with the one line argparse prints."""
from __future__ import annotations

import argparse
import math
from fractions import Fraction


def size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 416x240, got {text!r}") from None
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError(f"size must be positive, got {text!r}")
    return w, h


def aspect(text: str) -> Fraction:
    """--sample-aspect: W:H, a pixel's width to its height (1:1 square), each term 1 to what the
    format carries."""
    from .bitstream import LIMITS
    from .io import MAX_ASPECT

    w, _, h = text.partition(":")
    top = LIMITS.max_aspect_term
    if not (w.isdecimal() and h.isdecimal() and 1 <= int(w) <= top and 1 <= int(h) <= top
            and Fraction(1, MAX_ASPECT) <= Fraction(int(w), int(h)) <= MAX_ASPECT):
        raise argparse.ArgumentTypeError(f"a sample aspect ratio looks like 32:27 (terms 1 to "
                                         f"{top}, at most {MAX_ASPECT}:1 either way), got {text!r}")
    return Fraction(int(w), int(h))


def fps(text: str) -> Fraction:
    from .bitstream import LIMITS

    try:
        value = Fraction(text)
    except (ValueError, ZeroDivisionError):
        raise argparse.ArgumentTypeError(
            f"fps must be a number like 50 or 30000/1001, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"fps must be positive, got {text!r}")
    if value > LIMITS.max_fps:
        raise argparse.ArgumentTypeError(f"fps must be at most {LIMITS.max_fps}, got {text!r}")
    return value


def pix_fmt(text: str):
    from .sampling import pixel_format

    found = pixel_format(text)
    if found is None:
        raise argparse.ArgumentTypeError(
            f"pixel format {text!r} is not one nvc reads: yuv420p, yuv422p, yuv444p, yuv411p, "
            "gray, yuva444p, and those of 9 to 16 bits little-endian (yuv420p10le, gray12le)")
    return found


def whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None


def positive(text: str) -> int:
    value = whole(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _positive_up_to(text: str, top: int, refusal: str) -> int:
    """A whole number 1..top; above it, `refusal` and the text given."""
    value = positive(text)
    if value > top:
        raise argparse.ArgumentTypeError(f"{refusal}, got {text!r}")
    return value


MAX_DEMO_FRAMES = 300  # the demo clip is rendered whole, 1.2 MB a frame (100,000 asked for 20 GB)


def demo_frames(text: str) -> int:
    """nvc demo --frames: 1 to MAX_DEMO_FRAMES."""
    return _positive_up_to(text, MAX_DEMO_FRAMES,
                           f"the demo renders at most {MAX_DEMO_FRAMES} frames")


def intra_period(text: str) -> int:
    """--intra-period: 1 up to the longest clip a stream holds (a GOP that long is the whole clip)."""
    from .bitstream import LIMITS

    return _positive_up_to(text, LIMITS.max_frames, f"expected at most {LIMITS.max_frames} frames "
                                                    "(a day at 60 fps: one GOP for any clip)")


def positive_real(text: str) -> float:
    """--adapt-seconds, --roi-weight: a finite number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number above 0, got {text!r}")
    return value


WINDOW_MULTIPLE = 64  # nvc.models.config.ModelConfig.multiple: what a frame is padded to


def window(text: str) -> int:
    """--adapt-window: a positive multiple of 64 pixels."""
    value = whole(text)
    if value <= 0 or value % WINDOW_MULTIPLE:
        raise argparse.ArgumentTypeError(f"expected a positive multiple of {WINDOW_MULTIPLE} "
                                         f"pixels, got {text!r}")
    return value


def steps(text: str) -> int:
    """--refine: 0 (off) up to nvc.refine.MAX_STEPS."""
    from .refine import MAX_STEPS

    value = whole(text)
    if not 0 <= value <= MAX_STEPS:
        raise argparse.ArgumentTypeError(f"expected 0 to {MAX_STEPS} steps, got {text!r}")
    return value


def gop_schedule(text: str):
    from .schedule import GopSchedule

    try:
        return GopSchedule.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def bitrate(text: str) -> float:
    from .ratecontrol import parse_bitrate

    try:
        return parse_bitrate(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def number(text: str) -> int | float:
    """An integer where the text is one (a rung, printed as given), else a float."""
    value = float(text)
    return int(value) if value == int(value) and "." not in text else value


def quality(text: str) -> int | float:
    try:
        return number(text)
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(f"quality must be a number like 2 or 2.5, got {text!r}") \
            from None


def qualities(text: str) -> list[int | float]:
    try:
        values = [number(v) for v in text.split(",")]
    except (ValueError, OverflowError):
        raise argparse.ArgumentTypeError(
            f"quality must be N or a list like 1,2,3 or 1.5,2.5, got {text!r}") from None
    again = next((v for k, v in enumerate(values) if v in values[:k]), None)
    if again is not None:  # each would be coded and measured again, to the same figures
        raise argparse.ArgumentTypeError(f"quality {again:g} is listed twice in {text!r}")
    return values
