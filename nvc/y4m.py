"""y4m in (YUV4MPEG2, what `ffmpeg -f yuv4mpegpipe` writes): a file read lazily, frame by frame
at the offsets one pass over its frame headers found, or a pipe read in one pass, spooled or handed
on live. Its samples of other layouts are converted (nvc.sampling), full range rescaled to limited.
Writing y4m is nvc.writers."""
from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .errors import InputError
from .io import (
    INTERLACED,
    LazyFrames,
    PipeFrames,
    Video,
    YUVFrame,
    check_frame_size,
    frame_of,
    limited_range,
    read_frame,
    sample_aspect,
    spooled_video,
    warn_converted,
)
from .sampling import NATIVE, Layout, layout

log = logging.getLogger(__name__)
TAG_MAX = 4096  # bytes of a y4m frame header ("FRAME" and its parameters) read at most


@dataclass(frozen=True)
class Header:
    """What a y4m stream header says: the frame size and rate, full-range samples
    (XCOLORRANGE=FULL: FFmpeg's yuvj420p, rescaled to the limited range nvc codes) and the sample
    layout (nvc.sampling: converted to 8-bit 4:2:0 where it is another)."""
    w: int
    h: int
    fps: Fraction
    full_range: bool
    layout: Layout
    aspect: Fraction | None = None  # the A field's sample aspect ratio, where not square (1:1)
    # or unknown (0:0)

    @property
    def frame_bytes(self) -> int:
        return self.layout.frame_bytes(self.w, self.h)


def parse_header(line: bytes, path: Path | str) -> Header:
    fields = line.decode("ascii", "replace").split()
    if not fields or fields[0] != "YUV4MPEG2":
        raise InputError(f"{path}: not a y4m file")
    w = h = 0
    fps = Fraction(30)
    full_range = False
    samples = NATIVE
    aspect = None
    for f in fields[1:]:
        if f[0] == "A":  # metadata: a malformed one is as good as none
            num, _, den = f[1:].partition(":")
            aspect = sample_aspect(int(num), int(den)) if num.isdigit() and den.isdigit() else None
        try:
            if f[0] == "W":
                w = int(f[1:])
            elif f[0] == "H":
                h = int(f[1:])
            elif f[0] == "F":
                num, den = f[1:].split(":")
                fps = Fraction(int(num), int(den))
        except (ValueError, ZeroDivisionError):
            raise InputError(f"{path}: malformed y4m header field {f!r}") from None
        if f[0] == "C":
            found = layout(f[1:])
            if found is None:
                raise InputError(f"{path}: y4m samples {f} are not supported (nvc reads 4:2:0, "
                                 "4:2:2, 4:4:4, 4:1:1 and mono, 8 to 16 bits)")
            samples = found
        full_range = full_range or f.upper() == "XCOLORRANGE=FULL"
    if w <= 0 or h <= 0:
        raise InputError(f"{path}: y4m header has no valid size")
    if any(f in ("It", "Ib", "Im") for f in fields[1:]):
        log.warning("%s: %s", path, INTERLACED)
    if fps <= 0:
        raise InputError(f"{path}: y4m frame rate {fps} is not positive")
    check_frame_size(w, h, path)
    warn_converted(path, samples)
    return Header(w, h, fps, full_range, samples, aspect)


def _frame_tag(f: BinaryIO, path: Path | str, index: int) -> bool:
    """Read frame `index`'s header line ("FRAME ..."): False at the end of the file."""
    tag = f.readline(TAG_MAX)
    if not tag:
        return False
    if not tag.startswith(b"FRAME") or not tag.endswith(b"\n"):
        raise InputError(f"{path}: damaged y4m frame header at frame {index}")
    return True


def _offsets(path: Path, head: Header, start: int, frames: int | None) -> list[int]:
    """Where the samples of each frame `start` .. `start + frames` of a y4m file begin (a pass
    over its frame headers, the samples skipped)."""
    offsets: list[int] = []
    with open(path, "rb") as f:
        f.readline()  # the stream header, parsed by the caller
        size = head.frame_bytes
        file_size, index = os.fstat(f.fileno()).st_size, 0
        while (frames is None or len(offsets) < frames) and _frame_tag(f, path, index):
            if index >= start:
                offsets.append(f.tell())
            f.seek(size, os.SEEK_CUR)
            if f.tell() > file_size:
                raise InputError(f"{path}: truncated y4m frame {index}")
            index += 1
    return offsets


class _InputEnded(Exception):
    """Raised into a read that waits for a pipe's bytes (InputStop.end): the input ends there."""


class InputStop:
    """Ends a pipe's input early, as its end would: `end()`, called from a signal handler (which
    runs in the main thread), makes the reader stop before its next frame and, where the reader is
    waiting for bytes (a source that stalled), ends that wait at once, the frame being read left
    out. Calling it tells whether it has ended."""

    def __init__(self) -> None:
        self.ended, self._waiting = False, False

    def __call__(self) -> bool:
        return self.ended

    def end(self) -> None:
        self.ended = True
        if self._waiting:
            raise _InputEnded

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Around the reads that block on the pipe (only there may `end` raise, and only where
        the main thread reads: a handler's exception lands in the main thread)."""
        self._waiting = threading.current_thread() is threading.main_thread()
        try:
            yield
        finally:
            self._waiting = False


def read_pipe(f: BinaryIO, name: str = "stdin", start: int = 0,
                  frames: int | None = None,
                  progress: Callable[[Iterator[bytes]], Iterable[bytes]] = iter,
                  live: bool = False, stop: InputStop | None = None) -> Video:
    """y4m from a pipe (standard input), read in one pass: frames `start` .. `start + frames`,
    spooled (`spooled_video`) as they arrive, through `progress` (e.g. a bar), for what needs the
    whole clip (its frame count, or frames in any order); with `live`, handed on as they arrive
    (PipeFrames) and never stored. Reading ends early, as at the pipe's end, once `stop` has
    ended (checked before each frame, and ending a wait for bytes), and, with a warning, at a
    truncated or damaged frame after the first (a source killed mid-frame: what came is kept)."""
    stop = stop or InputStop()
    line = f.readline(TAG_MAX)
    if not line.startswith(b"YUV4MPEG2"):
        raise InputError(f"{name}: not a y4m stream (nvc reads y4m from a pipe, e.g. "
                         "ffmpeg -i IN -f yuv4mpegpipe -)")
    head = parse_header(line, name)
    w, h, fps, size = head.w, head.h, head.fps, head.frame_bytes

    def samples() -> Iterator[bytes]:
        index = 0
        try:
            while (frames is None or index < start + frames) and not stop():
                with stop.waiting():
                    data = f.read(size) if _frame_tag(f, name, index) else None
                if data is None:
                    return
                if len(data) < size:
                    raise InputError(f"{name}: truncated y4m frame {index}")
                if index >= start:
                    yield data if head.layout.native else head.layout.to_420(data, w, h)
                index += 1
        except _InputEnded:
            return
        except InputError as e:  # a pipe cannot be read again: keep the frames that came whole
            if index <= start:
                raise
            log.warning("%s; the input ends after frame %d", e, index - 1)
    convert = limited_range if head.full_range else None
    if live:
        frames_of = partial(frame_of, w=w, h=h)
        decoded = (frames_of(np.frombuffer(data, np.uint8)) for data in samples())
        return Video(PipeFrames(decoded if convert is None else map(convert, decoded)), fps, name,
                     (w, h), aspect=head.aspect)
    return replace(spooled_video(progress(samples()), w, h, fps, name, convert),
                   aspect=head.aspect)


def read_file(path: Path, start: int = 0, frames: int | None = None, lazy: bool = False) -> Video:
    with open(path, "rb") as f:
        line = f.readline()
    head = parse_header(line, path)
    w, h = head.w, head.h
    offsets = _offsets(path, head, start, frames)

    def read_at(index: int) -> YUVFrame:
        frame = read_frame(path, offsets[index], w, h, head.layout)
        return limited_range(frame) if head.full_range else frame

    out = LazyFrames.indexed(len(offsets), read_at)
    return Video(out if lazy else list(out), head.fps, str(path), (w, h), aspect=head.aspect)
