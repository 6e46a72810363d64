"""x264 and x265 anchors through the ffmpeg command line, driven with ffmpeg-python.

Low-delay conditions (benchmarks/conditions.md): -tune zerolatency, no B-frames, one I-frame every
intra period (no scene-cut I-frames), CRF sweep. The binary is the one on PATH, else the static
build that imageio-ffmpeg ships; `ffmpeg_version()` says which.
"""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import ffmpeg

from nvc.io import Video, read_video
from nvc.writers import write_video

CRF_SWEEP = (22, 27, 32, 37, 42, 47)


@dataclass(frozen=True)
class Anchor:
    name: str
    encoder: str  # libx264 | libx265
    preset: str


ANCHORS = {a.name: a for a in [
    Anchor("x264", "libx264", "medium"), Anchor("x264-veryslow", "libx264", "veryslow"),
    Anchor("x265", "libx265", "medium"), Anchor("x265-veryslow", "libx265", "veryslow"),
]}


def ffmpeg_exe() -> str:
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def ffmpeg_version() -> dict[str, str]:
    exe = ffmpeg_exe()
    first = subprocess.run([exe, "-hide_banner", "-version"], capture_output=True, text=True).stdout
    return {"ffmpeg": exe, "version": first.splitlines()[0] if first else "unknown",
            "source": "PATH" if shutil.which("ffmpeg") else "imageio-ffmpeg"}


def _codec_options(anchor: Anchor, crf: int, intra_period: int) -> dict:
    opts = {"c:v": anchor.encoder, "preset": anchor.preset, "tune": "zerolatency", "crf": crf,
            "g": intra_period, "bf": 0, "pix_fmt": "yuv420p"}
    if anchor.encoder == "libx264":
        opts.update({"keyint_min": intra_period, "sc_threshold": 0})
    else:
        opts["x265-params"] = (f"keyint={intra_period}:min-keyint={intra_period}:scenecut=0:"
                               "bframes=0:log-level=error")
    return opts


_VERSION_PATTERNS = (rb"x264 - core \d+( r\d+ [0-9a-f]+)?", rb"x265 \(build \d+\) - [\w.+-]+")


def encoder_version(stream: bytes) -> str:
    """x264 and x265 write their version into an SEI message of every stream they make."""
    for pattern in _VERSION_PATTERNS:
        m = re.search(pattern, stream)
        if m:
            return m.group(0).decode("ascii", "replace")
    return "unknown"


@dataclass
class AnchorResult:
    data_bytes: int
    version: str
    decoded: Video  # read lazily from a y4m in `folder`, which lives as long as this result
    encode_seconds: float
    decode_seconds: float
    folder: tempfile.TemporaryDirectory | None = None


def run_anchor(source: Video, anchor: Anchor, crf: int, intra_period: int) -> AnchorResult:
    """Encode `source` (8-bit 4:2:0) to an elementary stream, decode it back; bytes = whole stream.
    The decoded clip is read lazily from a temporary folder that lives as long as the result."""
    exe = ffmpeg_exe()
    folder = tempfile.TemporaryDirectory()
    src, coded, back = (Path(folder.name) / n for n in ("src.y4m", "coded.bin", "back.y4m"))
    try:
        write_video(src, source)
        fmt = "h264" if anchor.encoder == "libx264" else "hevc"
        t0 = time.perf_counter()
        (ffmpeg.input(str(src)).output(str(coded), f=fmt, **_codec_options(anchor, crf, intra_period))
         .global_args("-hide_banner", "-loglevel", "error", "-nostdin")
         .run(cmd=exe, overwrite_output=True, capture_stdout=True, capture_stderr=True))
        t1 = time.perf_counter()
        # Elementary streams carry no timing: decode frame for frame, never resample the rate.
        (ffmpeg.input(str(coded), f=fmt, framerate=str(source.fps))
         .output(str(back), pix_fmt="yuv420p", f="yuv4mpegpipe", strict="-1", fps_mode="passthrough")
         .global_args("-hide_banner", "-loglevel", "error", "-nostdin")
         .run(cmd=exe, overwrite_output=True, capture_stdout=True, capture_stderr=True))
        t2 = time.perf_counter()
        src.unlink()
        data = coded.read_bytes()
        decoded = read_video(back, lazy=True)  # frame by frame, like the source
    except BaseException:
        folder.cleanup()
        raise
    return AnchorResult(len(data), encoder_version(data), decoded, t1 - t0, t2 - t1, folder)
