"""Video in: y4m, raw .yuv, anything PyAV decodes, read lazily or spooled; BT.709 / BT.601 colour
conversion. Video out is nvc.writers.

Frames travel as `YUVFrame` (8-bit 4:2:0 planes); the model sees RGB in [0, 1].
"""
from __future__ import annotations

import itertools
import logging
import math
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from enum import IntEnum
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from .errors import InputError
from .sampling import NATIVE, Layout, named_layout
from .sequences import first_number

if TYPE_CHECKING:
    from . import y4m

log = logging.getLogger(__name__)
RAW_SUFFIXES = {".yuv"}
Y4M_SUFFIX = ".y4m"
# what names a video (or its frames) rather than an nvc stream: what nvc reads or decodes to
VIDEO_SUFFIXES = {".yuv", ".y4m", ".mp4", ".mkv", ".avi", ".mov", ".264", ".h264", ".265", ".hevc",
                  ".webm"}
STDIO = "-"  # the input or output path that means standard input / output (y4m)


class ColourMatrix(IntEnum):
    """Stable codes written into the stream header."""

    BT709 = 1
    BT601 = 6


# Luma coefficients (Kr, Kb) of ITU-R BT.709 and BT.601.
_KR_KB = {ColourMatrix.BT709: (0.2126, 0.0722), ColourMatrix.BT601: (0.299, 0.114)}


@dataclass
class YUVFrame:
    """One 8-bit 4:2:0 frame: y (H, W), u and v (ceil(H/2), ceil(W/2)), uint8."""

    y: np.ndarray
    u: np.ndarray
    v: np.ndarray

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.y.shape
        return w, h


class LazyFrames:
    """Frames read from disk only while iterated (one at a time): a length, iteration, indexing.
    `open_frames()` starts a fresh pass over the file each time; `read_at(i)`, where the file
    allows it (y4m, raw .yuv, a spool: `random_access`), reads frame i alone."""

    def __init__(self, count: int, open_frames: Callable[[], Iterator[YUVFrame]],
                 read_at: Callable[[int], YUVFrame] | None = None):
        self.count, self.open_frames, self.read_at = count, open_frames, read_at

    @classmethod
    def indexed(cls, count: int, read_at: Callable[[int], YUVFrame]) -> LazyFrames:
        """Frames 0 .. count - 1 that `read_at` reads alone (a pass reads them in turn)."""
        return cls(count, lambda: map(read_at, range(count)), read_at)

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[YUVFrame]:
        return itertools.islice(self.open_frames(), self.count)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return list(itertools.islice(iter(self), index.start, index.stop, index.step))
        if not 0 <= index < self.count:
            raise IndexError(index)
        if self.read_at is not None:
            return self.read_at(index)
        return next(itertools.islice(iter(self), index, None))


class PipeFrames(LazyFrames):
    """Frames read from a pipe as they arrive, in one pass: how many is not known until it ends,
    so there is no length (`frame_count` says None) and no indexing."""

    def __init__(self, frames: Iterator[YUVFrame]):
        super().__init__(0, lambda: frames)
        self._fresh = True

    def __len__(self) -> int:
        raise TypeError("a live pipe's frame count is not known until it ends")

    def __iter__(self) -> Iterator[YUVFrame]:
        if not self._fresh:
            raise RuntimeError("a pipe's frames can be read once")
        self._fresh = False
        return self.open_frames()

    def __getitem__(self, index):
        raise TypeError("a live pipe's frames are read in order, once")


@dataclass
class Video:
    frames: list[YUVFrame] | LazyFrames  # PipeFrames: a live pipe's
    fps: Fraction
    source: str = ""
    size: tuple[int, int] | None = None  # (width, height); needed when `frames` is a one-pass iterable
    matrix: ColourMatrix | None = None  # the colour matrix its samples are in, where something
    # says so (a source file's tag, an nvc stream's header); None: untagged
    aspect: Fraction | None = None  # a sample's (pixel's) width : height where not square (an
    # anamorphic source's, a stream's header's); None: square, or not said

    @property
    def width(self) -> int:
        return self.size[0] if self.size else self.frames[0].size[0]

    @property
    def height(self) -> int:
        return self.size[1] if self.size else self.frames[0].size[1]


MAX_ASPECT = 255  # a pixel at most this many times wider than high, or higher than wide


def sample_aspect(num: int, den: int) -> Fraction | None:
    """A sample aspect ratio as a source states it: None where it is square, unknown (0:0, as y4m
    and FFmpeg write for that) or no pixel's shape (beyond MAX_ASPECT), else reduced, each term at
    most what the format carries (nvc.bitstream.LIMITS)."""
    from .bitstream import LIMITS

    if num <= 0 or den <= 0 or not 1 / MAX_ASPECT <= Fraction(num, den) <= MAX_ASPECT:
        return None
    wide = max(Fraction(num, den), Fraction(den, num))
    wide = wide.limit_denominator(LIMITS.max_aspect_term // math.ceil(wide))
    ratio = wide if num >= den else 1 / wide
    return None if ratio == 1 else ratio


# -- colour ---------------------------------------------------------------------------------------
def yuv_to_rgb(frame: YUVFrame, matrix: ColourMatrix = ColourMatrix.BT709,
               rows: np.ndarray | None = None, cols: np.ndarray | None = None) -> np.ndarray:
    """4:2:0 limited-range YUV (every source is made so as it is read: `limited_range`) -> RGB
    float32 (H, W, 3) in [0, 1] (chroma upsampled by repetition); with `rows` and `cols` (indexes
    into the frame), only those pixels: the same values as the whole frame's conversion indexed
    there, for their share of the work."""
    kr, kb = _KR_KB[matrix]
    kg = 1 - kr - kb
    if rows is None or cols is None:
        h, w = frame.y.shape
        u = np.repeat(np.repeat(frame.u, 2, 0), 2, 1)[:h, :w].astype(np.float32)
        v = np.repeat(np.repeat(frame.v, 2, 0), 2, 1)[:h, :w].astype(np.float32)
        y = frame.y.astype(np.float32)
    else:
        half = np.ix_(rows // 2, cols // 2)
        y = frame.y[np.ix_(rows, cols)].astype(np.float32)
        u, v = frame.u[half].astype(np.float32), frame.v[half].astype(np.float32)
    y, u, v = (y - 16) / 219, (u - 128) / 224, (v - 128) / 224
    r = y + 2 * (1 - kr) * v
    b = y + 2 * (1 - kb) * u
    g = (y - kr * r - kb * b) / kg
    return np.clip(np.stack((r, g, b), axis=-1), 0, 1)


def rgb_to_yuv(rgb: np.ndarray, matrix: ColourMatrix = ColourMatrix.BT709) -> YUVFrame:
    """RGB float (H, W, 3) in [0, 1] -> limited-range 4:2:0 (chroma: 2x2 mean, summed as
    (a + b) + (c + d), then / 4). In place where it can be, in the input's precision: 17 ms a 1080p
    frame on this project's CPU, 3.5x the earlier out-of-place form, whose values it keeps (tested)."""
    kr, kb = _KR_KB[matrix]
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    y = kr * r
    y += (1 - kr - kb) * g
    y += kb * b
    u = b - y
    u /= 2 * (1 - kb)
    v = r - y
    v /= 2 * (1 - kr)
    y *= 219
    y += 16
    return YUVFrame(to8(y), to8(_chroma(u)), to8(_chroma(v)))


def _chroma(c: np.ndarray) -> np.ndarray:
    """128 + 224 * the 2x2 mean of c (odd sizes: the last row / column repeated)."""
    h, w = c.shape
    if h % 2 or w % 2:
        c = np.pad(c, ((0, h % 2), (0, w % 2)), mode="edge")
    m = c[0::2, 0::2] + c[0::2, 1::2]
    m += c[1::2, 0::2] + c[1::2, 1::2]
    m /= 4
    m *= 224
    m += 128
    return m


def to8(x: np.ndarray) -> np.ndarray:
    """Round (half to even), clip to 0..255, as uint8; x is overwritten."""
    np.round(x, out=x)
    np.clip(x, 0, 255, out=x)
    return x.astype(np.uint8)


def limited_range(frame: YUVFrame) -> YUVFrame:
    """Full-range 8-bit samples (Y and C in 0..255) rescaled to the limited range (Y 16..235,
    C 16..240 around 128)."""
    def scale(plane: np.ndarray, offset: int, span: int, centre: int) -> np.ndarray:
        return to8((plane.astype(np.float32) - centre) * (span / 255) + offset)
    return YUVFrame(scale(frame.y, 16, 219, 0), scale(frame.u, 128, 224, 128),
                    scale(frame.v, 128, 224, 128))


# -- raw .yuv names -------------------------------------------------------------------------------
_SIZE_RE = re.compile(r"(?<![0-9])(\d{2,5})x(\d{2,5})(?![0-9])")
_FPS_RE = re.compile(r"_(\d{1,3}(?:\.\d+)?)(?:fps|hz|Hz|FPS)?(?=_|$)")


def parse_raw_name(path: str | os.PathLike) -> tuple[tuple[int, int] | None, Fraction | None]:
    """Size and rate from standard names: `BasketballPass_416x240_50.yuv`,
    `Beauty_1920x1080_120fps_420_8bit_YUV.yuv`, `foreman_cif_352x288_f2_raw.yuv`."""
    stem = Path(path).stem
    m = _SIZE_RE.search(stem)
    if not m:
        return None, None
    size = (int(m.group(1)), int(m.group(2)))
    fps = None
    fm = _FPS_RE.search(stem[m.end():])
    if fm:
        fps = Fraction(fm.group(1)).limit_denominator(1001)
    return size, fps


def check_frame_size(w: int, h: int, path: Path | str) -> None:
    """Refuse frames the format cannot carry (nvc.bitstream.LIMITS) before reading any."""
    from .bitstream import LIMITS

    if max(w, h) > LIMITS.max_side or w * h > LIMITS.max_pixels:
        raise InputError(f"{path}: frame size {w}x{h} exceeds nvc's limit ({LIMITS.max_side} per "
                         f"side, {LIMITS.max_pixels} pixels)")


# -- readers --------------------------------------------------------------------------------------
INTERLACED = "interlaced; each frame is coded as one progressive picture"  # y4m's warning too


def _check_range(start: int, frames: int | None) -> None:
    if start < 0:
        raise InputError(f"start frame must be >= 0, got {start}")
    if frames is not None and frames <= 0:
        raise InputError(f"frame count must be positive, got {frames}")


def read_raw_yuv(path: Path, size: tuple[int, int] | None, fps: Fraction | None,
                 start: int = 0, frames: int | None = None, lazy: bool = False,
                 samples: Layout | None = None) -> Video:
    """A raw .yuv file: frames of `size` laid out as `samples` (`--pix-fmt`), both taken from the
    file's name where not given (nvc.sampling.named_layout; 8-bit 4:2:0 if it names none)."""
    name_size, name_fps = parse_raw_name(path)
    size = size or name_size
    if size is None:
        raise InputError(f"{path}: cannot tell the frame size of a raw .yuv file; "
                         "name it like Name_416x240_50.yuv or pass --size WxH")
    w, h = size
    if w <= 0 or h <= 0:
        raise InputError(f"{path}: invalid frame size {w}x{h}")
    check_frame_size(w, h, path)
    samples = samples or named_layout(path.stem) or NATIVE
    frame_bytes = samples.frame_bytes(w, h)
    total = path.stat().st_size // frame_bytes
    if path.stat().st_size % frame_bytes:
        raise InputError(f"{path}: file size {path.stat().st_size} is not a whole number of "
                         f"{w}x{h} {samples.description} frames (--size and --pix-fmt set them)")
    count = total - start if frames is None else min(frames, total - start)
    if count <= 0:
        raise InputError(f"{path}: no frames to read (file has {total}, start {start})")
    warn_converted(path, samples)

    def read_at(index: int) -> YUVFrame:
        return read_frame(path, (start + index) * frame_bytes, w, h, samples)

    out = LazyFrames.indexed(count, read_at)
    return Video(out if lazy else list(out), fps or name_fps or Fraction(30), str(path), (w, h))


def warn_converted(path: Path | str, samples: Layout) -> None:
    if not samples.native:
        log.warning("%s: %s samples, converted to the 8-bit 4:2:0 nvc codes", path,
                    samples.description)


def is_pipe(path: str | os.PathLike) -> bool:
    """`-` (standard input), or a path that names a pipe or a device rather than a file (a named
    pipe made with mkfifo, a shell's `<(...)`, /dev/stdin): read once, in order, as its bytes
    arrive, as standard input is."""
    if str(path) == STDIO:
        return True
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISSOCK(mode)


def input_name(path: str | os.PathLike) -> str:
    """How messages name an input: `stdin` for `-`."""
    return "stdin" if str(path) == STDIO else str(path)


def open_pipe(path: str | os.PathLike, what: str, example: str, raw: bool = False) -> BinaryIO:
    """A pipe input (is_pipe) opened for reading, buffered or (`raw`) not: standard input for
    `-`. A terminal is refused (reading would wait for keystrokes)."""
    if str(path) == STDIO:
        terminal = getattr(sys.stdin, "isatty", lambda: False)()
        f = sys.stdin.buffer
    else:
        try:
            f = open(path, "rb", buffering=0 if raw else -1)
        except OSError as e:  # a socket, a terminal this process has none of
            raise InputError(f"{path}: cannot be read ({e.strerror or e})") from None
        terminal = f.isatty()
    if terminal:
        raise InputError(f"{input_name(path)}: is a terminal; pipe {what} into nvc, e.g. {example}")
    return getattr(f, "raw", f) if raw else f


class Until(LazyFrames):
    """`frames` with their count, a pass ending early once `stop()` says so (asked before each
    frame is drawn; `handed` counts those handed on), or, where no frame was handed on yet, raising
    KeyboardInterrupt (there is nothing to keep): what the first Ctrl-C ends a file's encoding and
    a stream's decoding into a file with (nvc.cli). A live pipe's frames (PipeFrames) have no
    count: `as_frames()` is what a Video holds then."""

    def __init__(self, frames: list[YUVFrame] | LazyFrames, stop: Callable[[], bool]):
        self.live = isinstance(frames, PipeFrames)
        super().__init__(0 if self.live else len(frames), self._pass,
                         None if self.live else frames.__getitem__)
        self.frames, self.stop, self.handed = frames, stop, 0

    def as_frames(self) -> LazyFrames:
        """These frames, or over a live pipe's, the one pass as a live pipe's frames."""
        return PipeFrames(self._pass()) if self.live else self

    def _pass(self) -> Iterator[YUVFrame]:
        frames = iter(self.frames)
        while not self.stop():  # asked before the next frame is drawn (a decode waits for it)
            frame = next(frames, None)
            if frame is None:
                return
            self.handed += 1
            yield frame
        if not self.handed:
            raise KeyboardInterrupt


def frame_count(video: Video) -> int | None:
    """How many frames `video` has; None for a pipe read live (PipeFrames) until it has ended."""
    return None if isinstance(video.frames, PipeFrames) else len(video.frames)


def frame_of(a: np.ndarray, w: int, h: int) -> YUVFrame:
    """The planes of one 4:2:0 frame's samples (views of `a`)."""
    cw, ch = (w + 1) // 2, (h + 1) // 2
    return YUVFrame(a[: w * h].reshape(h, w), a[w * h: w * h + cw * ch].reshape(ch, cw),
                    a[w * h + cw * ch: w * h + 2 * cw * ch].reshape(ch, cw))


def _frame_bytes(w: int, h: int) -> int:
    """The bytes of one 8-bit 4:2:0 frame."""
    return w * h + 2 * ((w + 1) // 2) * ((h + 1) // 2)


def read_frame(path: Path | int, offset: int, w: int, h: int,
                samples: Layout = NATIVE) -> YUVFrame:
    """One frame at `offset` of a file (a path, or an open descriptor), its samples laid out as
    `samples` says, as 8-bit 4:2:0."""
    size = samples.frame_bytes(w, h)
    if isinstance(path, int):
        data = os.pread(path, size, offset)
    else:
        with open(path, "rb") as f:
            f.seek(offset)
            data = f.read(size)
    if len(data) < size:
        raise InputError(f"{path}: truncated frame at byte {offset}")
    if not samples.native:
        data = samples.to_420(data, w, h)
    return frame_of(np.frombuffer(data, np.uint8), w, h)


def read_video(path: str | os.PathLike, size: tuple[int, int] | None = None,
               fps: Fraction | None = None, start: int = 0, frames: int | None = None,
               lazy: bool = False,
               progress: Callable[[Iterator[bytes]], Iterable[bytes]] = iter,
               live: bool = False, stop: y4m.InputStop | None = None,
               samples: Layout | None = None) -> Video:
    """Read any supported input; raises InputError with a one-line reason. `size`, `fps` and
    `samples` (the layout, nvc.sampling) describe a raw .yuv file. With `lazy`, frames are
    read from disk (or decoded, nvc.avread) one at a time while iterated (memory bounded by a
    frame). `-` reads y4m from standard input, spooled through `progress`, or with `live` handed
    on as it arrives, until `stop` ends it (nvc.y4m.read_pipe)."""
    from . import avread, y4m  # both build on this module's frames

    _check_range(start, frames)
    if samples is not None and (is_pipe(path) or Path(path).suffix.lower() not in RAW_SUFFIXES):
        raise InputError(f"{path}: --pix-fmt is for raw .yuv input (y4m and other files say "
                         "their own)")
    if is_pipe(path):
        f = open_pipe(path, "y4m", "ffmpeg -i IN -f yuv4mpegpipe - | nvc encode - -o OUT.nvc")
        video = y4m.read_pipe(f, input_name(path), start, frames, progress, live, stop)
        return _checked(video, size, fps, start)
    path = Path(path)
    if not path.exists():  # no file by that name: numbered images (frame_%04d.png), or nothing
        first = first_number(path)
        if first is None:
            raise InputError(f"{path}: no such file")
        return _checked(avread.read_av(path, start, frames, lazy, first), size, fps, start)
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not a video")
    if path.is_file() and path.stat().st_size == 0:
        raise InputError(f"{path}: empty file, no video")
    _refuse_nvc_stream(path)
    suffix = path.suffix.lower()
    if suffix in RAW_SUFFIXES:
        video = read_raw_yuv(path, size, fps, start, frames, lazy, samples)
    elif suffix == Y4M_SUFFIX:
        video = y4m.read_file(path, start, frames, lazy)
    else:
        video = avread.read_av(path, start, frames, lazy)
    return _checked(video, size, fps, start)


def _refuse_nvc_stream(path: Path) -> None:
    """An .nvc stream given where a video is read (`nvc eval clip.nvc`): say what to do instead
    of FFmpeg's complaint about invalid data."""
    from .bitstream import MAGIC

    if not path.is_file():  # a named pipe's bytes are not ours to take
        return
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) == MAGIC:
            raise InputError(f"{path}: is an nvc stream, not a video; `nvc decode {path} -o "
                             "OUT.y4m` decodes it (eval and encode read the source video)")


def _checked(video: Video, size: tuple[int, int] | None, fps: Fraction | None,
             start: int = 0) -> Video:
    """A video read: refused without frames, or when `size` contradicts it; `fps` overrides its
    rate."""
    if frame_count(video) == 0:  # a live pipe's count is not known yet
        raise InputError(f"{video.source}: no frames to read" + (
            f" from frame {start} on (--start is past its end)" if start else ""))
    if size is not None and tuple(size) != (video.width, video.height):
        raise InputError(f"{video.source}: its frames are {video.width}x{video.height}, not the "
                         f"{size[0]}x{size[1]} given (--size is for raw .yuv input)")
    if fps is not None:
        video.fps = fps
    return video


def random_access(video: Video) -> Video:
    """`video` with frames that can be read in any order without holding the clip: as it is where
    they can (a list, y4m, raw .yuv), else (what FFmpeg decodes) spooled once, as raw 4:2:0, to an
    unnamed temporary file (in TMPDIR) that the system deletes when the video is gone."""
    frames = video.frames
    if not isinstance(frames, LazyFrames) or frames.read_at is not None:
        return video
    mib = len(frames) * _frame_bytes(video.width, video.height) / 2**20
    spooled = spooled_video(map(_planes, frames), video.width, video.height, video.fps,
                            video.source, what=f"{len(frames)} frames ({mib:.0f} MiB)")
    return replace(spooled, matrix=video.matrix, aspect=video.aspect)


def frames_of(video: Video, indexes: list[int]) -> Video:
    """The frames `indexes` of a random-access `video` (`random_access`), read as iterated."""
    return Video(LazyFrames.indexed(len(indexes), lambda k: video.frames[indexes[k]]), video.fps,
                 video.source, (video.width, video.height), video.matrix, video.aspect)


def spooled_video(samples: Iterable[bytes], w: int, h: int, fps: Fraction, source: str,
                  convert: Callable[[YUVFrame], YUVFrame] | None = None,
                  what: str = "frames") -> Video:
    """A Video of 4:2:0 frames (each one frame's samples) spooled to TMPDIR (`spool`) and read
    back one at a time, in any order, through `convert` where given."""
    size = _frame_bytes(w, h)
    spooled, count = spool(samples, f"{source}'s {what}")

    def read_at(index: int) -> YUVFrame:
        frame = read_frame(spooled.fileno(), index * size, w, h)
        return frame if convert is None else convert(frame)

    return Video(LazyFrames.indexed(count, read_at), fps, source, (w, h))


def spool(chunks: Iterable[bytes], what: str) -> tuple[BinaryIO, int]:
    """`chunks` written to an unnamed temporary file in TMPDIR, which the system deletes when it
    is closed or the process ends: (the file, how many chunks). One that cannot be written (a full
    TMPDIR) is an InputError naming `what` and where."""
    count = 0
    try:
        f = tempfile.TemporaryFile(prefix="nvc-spool-")
        for chunk in chunks:
            f.write(chunk)
            count += 1
        f.flush()
    except OSError as e:
        raise InputError(f"cannot spool {what} to {tempfile.gettempdir()} ({e.strerror or e}); "
                         "set TMPDIR to a folder with room") from None
    return f, count


def _planes(frame: YUVFrame) -> bytes:
    return frame.y.tobytes() + frame.u.tobytes() + frame.v.tobytes()


def iter_rgb(video: Video, matrix: ColourMatrix = ColourMatrix.BT709) -> Iterator[np.ndarray]:
    for frame in video.frames:
        yield yuv_to_rgb(frame, matrix)
