"""Encode, decode from the bytes, and measure against the source: what `nvc eval` and the
benchmarks report. Every rate is the coded file's size; every codec is scored by `measure`."""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from . import bitstream
from .bitstream import DEFAULT_PROFILE, NumericProfile
from .codec import CodedVideo, DecodedVideo, decode_stream, encode, quantize_8bit, source_rgb
from .errors import NvcError
from .io import ColourMatrix, Video, YUVFrame, rgb_to_yuv, yuv_to_rgb
from .metrics import bpp, ms_ssim, psnr_rgb_db, psnr_yuv_db
from .models.ssf import SSF
from .zoo import ZooEntry


@dataclass
class Quality:
    bytes: int
    bpp: float
    psnr_rgb_db: float
    psnr_yuv_db: float
    psnr_y_db: float
    ms_ssim: float


def measure(source: Video, num_bytes: int, decoded_rgb: list[np.ndarray] | None = None,
            decoded_yuv: list[YUVFrame] | None = None,
            matrix: ColourMatrix = ColourMatrix.BT709) -> Quality:
    """Score a decoded clip against its source. Give the decoder's native output: RGB for nvc
    (converted to 4:2:0 for PSNR-YUV), YUV for x264/x265 (converted to RGB for PSNR-RGB)."""
    if decoded_rgb is None:
        if decoded_yuv is None:
            raise ValueError("measure needs the decoded frames as RGB or as YUV")
        decoded_rgb = [quantize_8bit(yuv_to_rgb(f, matrix)) for f in decoded_yuv]
    if decoded_yuv is None:
        decoded_yuv = [rgb_to_yuv(f, matrix) for f in decoded_rgb]
    src_rgb = [source_rgb(f, matrix) for f in source.frames]
    yuv = psnr_yuv_db(list(source.frames), decoded_yuv)
    return Quality(num_bytes, bpp(num_bytes, source.width, source.height, len(source.frames)),
                   psnr_rgb_db(src_rgb, decoded_rgb), yuv["yuv"], yuv["y"],
                   ms_ssim(src_rgb, decoded_rgb))


@dataclass
class EvalResult(Quality):
    quality: int
    frames: int
    width: int
    height: int
    encode_seconds: float
    decode_seconds: float
    bit_exact: bool

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate_coded(video: Video, coded: CodedVideo, model: SSF, entry: ZooEntry, quality: int,
                   matrix: ColourMatrix = ColourMatrix.BT709, progress=None) -> EvalResult:
    """Decode `coded` from its bytes with a decoder's path, check it matches the encoder's
    reconstruction bit for bit, and measure it."""
    kw = {"progress": progress} if progress else {}
    decoded = decode_stream(bitstream.unpack(coded.data), model, entry, **kw)
    return score(video, coded, decoded, quality, matrix)


def score(video: Video, coded: CodedVideo, decoded: DecodedVideo, quality: int,
          matrix: ColourMatrix = ColourMatrix.BT709) -> EvalResult:
    """Measure the decoded clip and record whether it equals the encoder's reconstruction bit for
    bit (the callers refuse a result that does not: `check_bit_exact`)."""
    exact = len(coded.reconstruction) == len(decoded.frames) and all(
        (a == b).all() for a, b in zip(coded.reconstruction, decoded.frames))
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
             profile: NumericProfile = DEFAULT_PROFILE) -> EvalResult:
    kw = {"progress": progress} if progress else {}
    coded = encode(video, model, entry, quality, intra_period, matrix, profile=profile, **kw)
    return evaluate_coded(video, coded, model, entry, quality, matrix, progress)
