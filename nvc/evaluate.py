"""Encode, decode from the bytes, and measure against the source: what `nvc eval` and the
benchmarks report. Every rate is the coded file's size; every codec is scored by `measure`."""
from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from io import BytesIO

import numpy as np

from . import bitstream
from .bitstream import DEFAULT_PROFILE, NumericProfile, QualityMap, Synthesis
from .codec import CodedVideo, encode_to, frame_digest, quantize_8bit, source_rgb
from .decoding import DecodedVideo, iter_decoded
from .errors import NvcError
from .io import ColourMatrix, Video, YUVFrame, rgb_to_yuv, yuv_to_rgb
from .metrics import bpp, mean_or_none, mean_yuv, ms_ssim, plane_psnr_db, psnr_db
from .models.ssf import SSF
from .refine import Effort
from .schedule import GopSchedule
from .zoo import ZooEntry

OnFrame = Callable[[YUVFrame, np.ndarray], None]  # a source frame and its decoded RGB


@dataclass
class Quality:
    bytes: int
    bpp: float
    psnr_rgb_db: float
    psnr_yuv_db: float
    psnr_y_db: float
    ms_ssim: float | None  # None: frames too small for it (metrics.ms_ssim)


class Scores:
    """The metrics of `measure`, gathered one frame at a time (so a clip need not be held)."""

    def __init__(self, matrix: ColourMatrix = ColourMatrix.BT709):
        self.matrix = matrix
        self.rgb: list[float] = []
        self.planes: list[dict[str, float]] = []
        self.ssim: list[float | None] = []

    def add(self, source: YUVFrame, decoded_rgb: np.ndarray | None = None,
            decoded_yuv: YUVFrame | None = None) -> None:
        """One frame: the decoder's native output, RGB (nvc) or YUV (x264/x265)."""
        if decoded_rgb is None:
            if decoded_yuv is None:
                raise ValueError("measure needs the decoded frames as RGB or as YUV")
            decoded_rgb = quantize_8bit(yuv_to_rgb(decoded_yuv, self.matrix))
        if decoded_yuv is None:
            decoded_yuv = rgb_to_yuv(decoded_rgb, self.matrix)
        src_rgb = source_rgb(source, self.matrix)
        self.rgb.append(psnr_db(src_rgb, decoded_rgb))
        self.planes.append(plane_psnr_db(source, decoded_yuv))
        self.ssim.append(ms_ssim([src_rgb], [decoded_rgb]))

    def quality(self, num_bytes: int, width: int, height: int) -> Quality:
        if not self.rgb:
            raise ValueError("no frames were scored")
        yuv = mean_yuv(self.planes)
        return Quality(num_bytes, bpp(num_bytes, width, height, len(self.rgb)),
                       float(np.mean(self.rgb)), yuv["yuv"], yuv["y"],
                       mean_or_none(self.ssim))


def measure(source: Video, num_bytes: int, decoded_rgb: list[np.ndarray] | None = None,
            decoded_yuv: list[YUVFrame] | None = None,
            matrix: ColourMatrix = ColourMatrix.BT709) -> Quality:
    """Score a decoded clip against its source. Give the decoder's native output: RGB for nvc
    (converted to 4:2:0 for PSNR-YUV), YUV for x264/x265 (converted to RGB for PSNR-RGB)."""
    if decoded_rgb is None and decoded_yuv is None:
        raise ValueError("measure needs the decoded frames as RGB or as YUV")
    scores = Scores(matrix)
    decoded: Iterable[tuple[np.ndarray | None, YUVFrame | None]] = \
        ((f, None) for f in decoded_rgb) if decoded_rgb is not None else \
        ((None, f) for f in decoded_yuv or ())
    # in step, so that lazily read clips (nvc.io.LazyFrames) are read once, a frame at a time
    for frame, pair in itertools.zip_longest(source.frames, decoded):
        if frame is None or pair is None:
            raise ValueError("the decoded clip and its source differ in length")
        scores.add(frame, *pair)
    return scores.quality(num_bytes, source.width, source.height)


@dataclass
class EvalResult(Quality):
    quality: float  # as asked: a rung (an int) or a position between or below them
    frames: int
    width: int
    height: int
    encode_seconds: float
    decode_seconds: float
    bit_exact: bool

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate_coded(video: Video, coded: CodedVideo, model: SSF, entry: ZooEntry, quality: float,
                   matrix: ColourMatrix = ColourMatrix.BT709, progress=None,
                   on_frame: OnFrame | None = None) -> EvalResult:
    """Decode `coded` from its bytes with a decoder's path, frame by frame, check each frame is the
    encoder's reconstruction bit for bit (its digest), and measure it; `on_frame` sees each source
    frame and its decoded RGB as they come (the caller's own metrics)."""
    return _decode_and_score(video, coded.data, coded.digests, coded.seconds, model, entry,
                             quality, matrix, progress, on_frame)


def score(video: Video, coded: CodedVideo, decoded: DecodedVideo, quality: int,
          matrix: ColourMatrix = ColourMatrix.BT709) -> EvalResult:
    """Measure the decoded clip and record whether it equals the encoder's reconstruction bit for
    bit (the callers refuse a result that does not: `check_bit_exact`)."""
    exact = [frame_digest(f) for f in decoded.frames] == coded.digests
    q = measure(video, len(coded.data), decoded_rgb=decoded.frames, matrix=matrix)
    return EvalResult(quality=quality, frames=len(video.frames), width=video.width,
                      height=video.height, **asdict(q), encode_seconds=coded.seconds,
                      decode_seconds=decoded.seconds, bit_exact=exact)


def check_bit_exact(results: list[EvalResult]) -> None:
    """A decoder that does not reproduce the encoder's reconstruction is a failure, not a figure."""
    bad = [r.quality for r in results if not r.bit_exact]
    if bad:
        raise NvcError(f"decoder output differs from the encoder's reconstruction at quality "
                       f"{', '.join(map(str, bad))}")


def evaluate(video: Video, model: SSF, entry: ZooEntry, quality: int, intra_period: int = 12,
             matrix: ColourMatrix = ColourMatrix.BT709, progress=None,
             profile: NumericProfile = DEFAULT_PROFILE,
             synthesis: Synthesis = Synthesis.FLOAT32,
             schedule: GopSchedule | None = None, adaptive_intra: bool = True,
             refine: Effort = 0, qmap: QualityMap | None = None,
             label: float | None = None) -> EvalResult:
    """Encode, decode from the bytes and score, frame by frame: only the bytes, a digest of every
    reconstruction and the metrics are kept, so a clip of any length (a lazily read one) needs the
    memory of a few frames. The decoded frames must equal the encoder's reconstructions.
    `adaptive_intra`, `refine`, `qmap`: see nvc.codec.code_frames; `label`: the quality the
    result names (default `quality`; a fractional quality codes at a rung under a map)."""
    kw = {"progress": progress} if progress else {}
    sink, digests = BytesIO(), []
    _, encode_seconds, _ = encode_to(
        sink, video, model, entry, quality, intra_period, matrix, profile=profile,
        synthesis=synthesis, schedule=schedule, adaptive_intra=adaptive_intra, refine=refine,
        qmap=qmap, on_reconstruction=lambda rgb: digests.append(frame_digest(rgb)), **kw)
    return _decode_and_score(video, sink.getvalue(), digests, encode_seconds, model, entry,
                             quality if label is None else label, matrix, progress)


def _decode_and_score(video: Video, data: bytes, digests: list[bytes], encode_seconds: float,
                      model: SSF, entry: ZooEntry, quality: float, matrix: ColourMatrix,
                      progress=None, on_frame: OnFrame | None = None) -> EvalResult:
    """Decode `data` frame by frame beside the source, each frame checked against the encoder's
    reconstruction (`digests`) and scored; only the metrics are kept."""
    kw = {"progress": progress} if progress else {}
    t0 = time.perf_counter()
    scores, exact, count = Scores(matrix), True, 0
    decoded = iter_decoded(bitstream.unpack(data), model, entry, **kw)
    for source, rgb in zip(video.frames, decoded, strict=True):
        exact = exact and count < len(digests) and frame_digest(rgb) == digests[count]
        scores.add(source, decoded_rgb=rgb)
        if on_frame is not None:
            on_frame(source, rgb)
        count += 1
    decode_seconds = time.perf_counter() - t0  # scoring included
    q = scores.quality(len(data), video.width, video.height)
    return EvalResult(quality=quality, frames=count, width=video.width, height=video.height,
                      **asdict(q), encode_seconds=encode_seconds, decode_seconds=decode_seconds,
                      bit_exact=exact and count == len(digests))
