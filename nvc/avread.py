"""Anything FFmpeg decodes (mp4, mkv, avi, .264, PNG frames, ...), through PyAV, as the 8-bit
4:2:0 limited-range frames nvc codes: upright as a player shows them, full range rescaled, RGB
converted as nvc converts it, each frame the first one's size."""
from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .errors import InputError
from .io import (
    INTERLACED,
    ColourMatrix,
    LazyFrames,
    Video,
    YUVFrame,
    check_frame_size,
    limited_range,
    rgb_to_yuv,
    sample_aspect,
)

log = logging.getLogger(__name__)


@contextmanager
def _av_opened(path: Path, first: int | None = None) -> Iterator:
    """The PyAV container of `path` (with `first`, the number of an image sequence's first file:
    nvc.sequences); every failure of the file inside the block, decoding included, is an
    InputError."""
    import av  # PyAV bundles FFmpeg

    try:
        with av.open(str(path), "r", format=None if first is None else "image2",
                     options=None if first is None else {"start_number": str(first)}) as container:
            if not container.streams.video:
                raise InputError(f"{path}: no video stream")
            yield container
    except InputError:
        raise
    except Exception as e:  # PyAV raises many kinds: InvalidDataError, FileNotFoundError, ...
        raise InputError(f"{path}: cannot decode video ({type(e).__name__}: {e})") from None


def _av_decoded(path: Path, start: int, frames: int | None, first: int | None) -> Iterator:
    """PyAV's decoded frames `start` .. `start + frames` of the first video stream, every one of
    the first one's size, which nvc's limits allow (else an InputError, as for a stream whose
    size changes: a stream codes one)."""
    with _av_opened(path, first) as container:
        stop = None if frames is None else start + frames
        size = None
        for index, frame in enumerate(itertools.islice(container.decode(video=0), start, stop)):
            if size is None:
                size = (frame.width, frame.height)
                check_frame_size(*size, path)
            if (frame.width, frame.height) != size:
                raise InputError(f"{path}: frame {start + index} is {frame.width}x{frame.height}, "
                                 f"the first {size[0]}x{size[1]}: an nvc stream has one size "
                                 f"(scale it first: ffmpeg -i IN -vf scale={size[0]}:{size[1]} "
                                 "OUT.y4m)")
            yield frame


def _av_frames(path: Path, start: int, frames: int | None, turns: int,
               first: int | None) -> Iterator[YUVFrame]:
    """The frames as nvc codes them, each turned `turns` quarter turns counterclockwise."""
    full_range = False
    for frame in _av_decoded(path, start, frames, first):
        full_range = full_range or frame.format.name.startswith("yuvj") or \
            getattr(frame, "color_range", 1) == 2
        yuv = _av_frame_to_yuv(frame, full_range)
        yield YUVFrame(*(np.ascontiguousarray(np.rot90(p, turns)) for p in (yuv.y, yuv.u, yuv.v))) \
            if turns else yuv


# FFmpeg's (H.273's) matrix coefficients: 1 BT.709; 5 BT.470BG and 6 SMPTE 170M, both BT.601's
_AV_MATRICES = {1: ColourMatrix.BT709, 5: ColourMatrix.BT601, 6: ColourMatrix.BT601}
_AV_UNSPECIFIED = 2
RGB_SOURCE_MATRIX = ColourMatrix.BT709  # what an RGB source's frames are converted to YUV with
_AV_HDR_TRANSFERS = {16: "PQ", 18: "HLG"}  # FFmpeg's (H.273's) transfer characteristics


class _AvSource(NamedTuple):
    rate: Fraction
    matrix: ColourMatrix | None
    turns: int
    aspect: Fraction | None


def _av_probe(path: Path, first: int | None) -> _AvSource:
    """The frame rate, the colour matrix the first frame is tagged with (None: untagged, or a
    matrix nvc does not code, with a warning), the quarter turns counterclockwise its display
    matrix asks for (a phone's portrait video is stored on its side: FFmpeg turns it upright) and
    its sample aspect ratio (sample_aspect)."""
    with _av_opened(path, first) as container:
        stream = container.streams.video[0]
        rate = Fraction(stream.average_rate or stream.guessed_rate or Fraction(25))
        head = next(container.decode(video=0), None)  # the first frame
        sar = stream.sample_aspect_ratio or Fraction(0)  # FFmpeg's guess from container and codec
    code = getattr(head, "colorspace", _AV_UNSPECIFIED)
    aspect = sample_aspect(sar.numerator, sar.denominator)
    rgb = head is not None and _is_rgb(head)  # converted to YUV by nvc (_av_frame_to_yuv)
    grey = head is not None and sum(not c.is_alpha for c in head.format.components) == 1
    if code not in _AV_MATRICES and code != _AV_UNSPECIFIED and not (rgb or grey):  # no matrix
        log.warning("%s: tagged with colour matrix %s, not one nvc codes (BT.709, BT.601); read as "
                    "untagged (--colour-matrix picks one)", path, code)
    if getattr(head, "interlaced_frame", False):
        log.warning("%s: %s", path, INTERLACED)
    hdr = _AV_HDR_TRANSFERS.get(getattr(head, "color_trc", 0))
    if hdr:
        log.warning("%s: HDR (%s transfer); coded as 8-bit SDR video: it will look washed out",
                    path, hdr)
    turns = round((getattr(head, "rotation", 0) or 0) / 90) % 4
    if turns:
        log.info("%s: turned %d degrees, as its display matrix asks", path, 90 * turns)
    if aspect is not None and turns % 2:  # a pixel on its side
        aspect = 1 / aspect
    return _AvSource(rate, RGB_SOURCE_MATRIX if rgb else _AV_MATRICES.get(code), turns, aspect)


def read_av(path: Path, start: int = 0, frames: int | None = None, lazy: bool = False,
            first: int | None = None) -> Video:
    """Anything PyAV (FFmpeg) decodes, upright as a player shows it (_av_probe); with `first`,
    the image sequence `path` names from that number on (nvc.sequences). With `lazy`, a
    first pass decodes the frames only to count them (a stream header's frame count cannot be
    trusted), and the frames are decoded again, one at a time, while iterated: memory bounded by a
    frame, for twice the (FFmpeg) decoding time."""
    src = _av_probe(path, first)
    if not lazy:
        return Video(list(_av_frames(path, start, frames, src.turns, first)), src.rate, str(path),
                     matrix=src.matrix, aspect=src.aspect)
    count, size = 0, None
    for frame in _av_decoded(path, start, frames, first):
        if size is None:
            size = (frame.height, frame.width) if src.turns % 2 else (frame.width, frame.height)
        count += 1
    return Video(LazyFrames(count, lambda: _av_frames(path, start, frames, src.turns, first)), src.rate,
                 str(path), size, src.matrix, src.aspect)


_AV_FULL_RANGE = 2  # FFmpeg's AVCOL_RANGE_JPEG


def _is_rgb(frame) -> bool:
    """Whether a decoded frame holds RGB (or palette) samples: a PNG's, an RGB FFV1's, ..."""
    return frame.format.is_rgb or frame.format.has_palette


def _av_frame_to_yuv(frame, full_range: bool) -> YUVFrame:
    """A decoded frame's 8-bit 4:2:0 limited-range samples: RGB converted as nvc converts
    (rgb_to_yuv, BT.709: what the frames are tagged with, _av_probe; FFmpeg's conversion would
    use BT.601 while the stream recorded BT.709, shifting every colour), other layouts through
    FFmpeg's conversion (which keeps the range), full range rescaled as a y4m's is
    (limited_range), with no colour conversion either way."""
    if _is_rgb(frame):
        deep = any(c.bits > 8 for c in frame.format.components)
        rgb = frame.to_ndarray(format="rgb48le" if deep else "rgb24").astype(np.float32)
        rgb /= 65535 if deep else 255
        return rgb_to_yuv(rgb, RGB_SOURCE_MATRIX)
    if frame.format.name not in ("yuv420p", "yuvj420p"):  # any size
        frame = frame.reformat(format="yuv420p", src_color_range=_AV_FULL_RANGE if full_range
                               else None, dst_color_range=_AV_FULL_RANGE if full_range else None)
    # each plane's rows are padded to its line size; odd sizes have chroma of ceil(w / 2) x ...
    yuv = YUVFrame(*(np.frombuffer(p, np.uint8).reshape(-1, p.line_size)[:p.height, :p.width].copy()
                     for p in frame.planes))
    return limited_range(yuv) if full_range else yuv
