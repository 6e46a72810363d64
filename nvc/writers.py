"""Video out: y4m (a file or standard output, frame by frame), raw .yuv, mp4 (H.264 for viewing),
mkv (FFV1, lossless), PNG frames; every file written atomically (a temporary sibling renamed over
the target once whole), so a failure leaves no half-written output.
"""
from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import InputError
from .io import STDIO, ColourMatrix, Video, YUVFrame, _planes, frame_count, yuv_to_rgb
from .sequences import Pattern, left_after, pattern

log = logging.getLogger(__name__)


def _atomic_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def _replaced(path: Path) -> Path:
    """The file a write of `path` replaces: where `path` is a link, the file it names (the link
    is kept, as a shell's `>` keeps it)."""
    return Path(os.path.realpath(path)) if path.is_symlink() else path


class AtomicFile:
    """Write to a temporary sibling, rename over the target on success, delete it on failure.
    A target that exists and is not a regular file (a device such as /dev/null, a named pipe a
    player reads) is written in place: renaming over it would replace the device node or the pipe
    with a file (before: `nvc encode clip.y4m -o /dev/null`, run as root, did)."""

    def __init__(self, path: str | os.PathLike):
        self.path = _replaced(Path(path))
        self.in_place = self.path.exists() and not self.path.is_file()
        self.tmp = self.path if self.in_place else _atomic_path(self.path)

    def __enter__(self) -> Path:
        if not self.path.parent.exists():
            raise InputError(f"{self.path.parent}: output folder does not exist")
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.in_place:
            return
        if exc_type is None:
            os.replace(self.tmp, self.path)
        elif self.tmp.exists():
            self.tmp.unlink()


@contextmanager
def open_output(path: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write `path` through: atomically (AtomicFile: renamed over `path` only
    once written), or standard output for `-`."""
    if str(path) == STDIO:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    atomic = AtomicFile(path)
    # the temporary file is read back where its start is rewritten (shorten_head); a device or a
    # named pipe written in place is opened for writing only, as a shell's `>` opens it
    with atomic as tmp, open(tmp, "wb" if atomic.in_place else "w+b") as f:
        yield f


def shorten_head(f: BinaryIO, old_length: int, head: bytes) -> int:
    """Replace the first `old_length` bytes of the file `f` (written from its start, open for
    reading too) with `head`, no longer than they were, moving what follows down a chunk at a
    time; returns the file's new length."""
    if len(head) > old_length:
        raise ValueError("the new head is longer than the old one")
    end = f.seek(0, os.SEEK_END)
    f.seek(0)
    f.write(head)
    read_at, write_at = old_length, len(head)
    while read_at < end:
        f.seek(read_at)
        chunk = f.read(min(1 << 20, end - read_at))
        if not chunk:  # the file shrank under us: stop rather than spin
            raise OSError(f"the output shrank while its head was rewritten ({read_at} of {end} "
                          "bytes read)")
        f.seek(write_at)
        f.write(chunk)
        read_at, write_at = read_at + len(chunk), write_at + len(chunk)
    f.truncate(write_at)
    return write_at


def write_y4m(path: Path, video: Video) -> None:
    with open(path, "wb") as f:
        y4m_to(f, video)


def y4m_to(f: BinaryIO, video: Video, flush: bool = False) -> None:
    """`video` as y4m into an open binary file; with `flush`, each frame as soon as it is written
    (a pipe to a player)."""
    fps = Fraction(video.fps).limit_denominator(100000)
    aspect = video.aspect or Fraction(1)
    f.write(f"YUV4MPEG2 W{video.width} H{video.height} F{fps.numerator}:{fps.denominator} "
            f"Ip A{aspect.numerator}:{aspect.denominator} C420jpeg\n".encode())
    if flush:
        f.flush()
    for frame in video.frames:
        f.write(b"FRAME\n" + _planes(frame))
        if flush:
            f.flush()


def write_raw_yuv(path: Path, video: Video) -> None:
    with open(path, "wb") as f:
        for frame in video.frames:
            f.write(_planes(frame))


def _av_frame(frame: YUVFrame, even: bool):
    """`frame` as a PyAV yuv420p frame, of its own size or (`even`) grown to even sides, the last
    column / row repeated: planes copied row by row into FFmpeg's padded lines, no conversion."""
    import av

    planes: list[np.ndarray] = [frame.y, frame.u, frame.v]
    if even:
        h, w = frame.y.shape
        planes = list(np.pad(p, ((0, (h % 2) * (i == 0)), (0, (w % 2) * (i == 0))), mode="edge")
                       for i, p in enumerate(planes))
    out = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], "yuv420p")
    for plane, samples in zip(out.planes, planes):
        lines = np.zeros((plane.height, plane.line_size), np.uint8)
        lines[:, :plane.width] = samples
        plane.update(lines.tobytes())
    return out


def _write_av(path: Path, video: Video, container: str, codec: str, options: dict[str, object],
              even: bool) -> None:
    """One video stream of `codec` in a `container` file, tagged limited range and, where the
    video says (a decoded stream's header does), with its colour matrix, so that players convert
    it as nvc did (primaries and transfer are not known: left untagged), and (.mp4) with its
    sample aspect ratio."""
    import av

    w, h = video.width, video.height
    with av.open(str(path), "w", format=container) as out:
        stream = out.add_stream(codec, rate=Fraction(video.fps).limit_denominator(1001))
        assert isinstance(stream, av.VideoStream)
        stream.width, stream.height = (w + w % 2, h + h % 2) if even else (w, h)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.color_range = LIMITED_RANGE
        if video.matrix is not None:
            stream.codec_context.colorspace = int(video.matrix)  # H.273 codes, as FFmpeg's
        if video.aspect is not None:  # shown at the width the pixels' shape makes (in .mp4:
            # Matroska takes the stream's, which PyAV does not set)
            stream.codec_context.sample_aspect_ratio = video.aspect
        stream.options = options
        for frame in video.frames:  # planes go in as they are: no second colour conversion
            out.mux(stream.encode(_av_frame(frame, even)))
        out.mux(stream.encode())


LIMITED_RANGE = 1  # FFmpeg's AVCOL_RANGE_MPEG: nvc's samples are limited range

# .mp4: H.264 (libx264 in PyAV's FFmpeg), high quality, for viewing, not a lossless archive; 4:2:0
# H.264 needs even sizes. .mkv: FFV1, lossless (the decoded samples exactly), any size.
write_mp4 = partial(_write_av, container="mp4", codec="libx264", options={"crf": "12"}, even=True)
write_mkv = partial(_write_av, container="matroska", codec="ffv1", options={}, even=False)


def write_png_frames(named: Pattern, video: Video) -> list[Path]:
    """The frames as PNG files named by `named` (nvc.sequences: `out/frame_%04d.png`), numbered
    from 0; files of the pattern numbered after the last, left from an earlier sequence (which a
    reader of the pattern would take for this one's frames), are named in a warning."""
    from PIL import Image

    if not named.folder.is_dir():
        raise InputError(f"{named.folder}: output folder does not exist")
    paths: list[Path] = []
    temps: list[Path] = []
    matrix = video.matrix or ColourMatrix.BT709
    try:  # every frame to a temporary sibling first; renamed only once all are written
        for i, frame in enumerate(video.frames):
            paths.append(_replaced(named.name(i)))
            temps.append(_atomic_path(paths[-1]))
            Image.fromarray(np.round(yuv_to_rgb(frame, matrix) * 255).astype(np.uint8)).save(
                temps[-1], format="PNG")
    except BaseException:
        for t in temps:
            t.unlink(missing_ok=True)
        raise
    for t, p in zip(temps, paths):
        os.replace(t, p)
    left = left_after(named, len(paths))
    if left:
        log.warning("%s: %d file%s after it (%s on) left from before: a reader of the pattern "
                    "takes %s for frames of this sequence", named.name(len(paths) - 1), left,
                    "s" * (left > 1), named.name(len(paths)).name, "them" if left > 1 else "it")
    return paths


WRITERS: dict[str, Callable[[Path, Video], None]] = {
    ".y4m": write_y4m, ".yuv": write_raw_yuv, ".mp4": write_mp4, ".mkv": write_mkv}


def write_video(path: str | os.PathLike, video: Video) -> None:
    """Write by suffix (.y4m, .yuv, .mp4, .mkv, or a `%d` .png pattern), atomically; `-`: y4m to standard
    output, frame by frame."""
    if frame_count(video) == 0:
        raise InputError(f"{path}: no frames to write")
    path_s = str(path)
    if path_s == STDIO:
        y4m_to(sys.stdout.buffer, video, flush=True)
        return
    if path_s.lower().endswith(".png"):
        named = pattern(path_s)
        if named is None:
            raise InputError(f"{path}: PNG output needs a frame-number pattern such as out_%04d.png")
        write_png_frames(named, video)
        return
    writer = WRITERS.get(Path(path_s).suffix.lower())
    if writer is None:
        raise InputError(f"{path}: unknown output type; use .y4m, .yuv, .mp4, .mkv or a %d .png "
                         "pattern")
    with AtomicFile(path) as tmp:
        writer(tmp, video)
