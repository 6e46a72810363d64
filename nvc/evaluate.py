"""Encode, decode from the bytes, and measure against the source: what `nvc eval` and the
benchmarks report. Every rate is the coded file's size."""
from __future__ import annotations

from dataclasses import asdict, dataclass

from . import bitstream
from .codec import decode_stream, encode, source_rgb
from .errors import NvcError
from .io import ColourMatrix, Video, rgb_to_yuv
from .metrics import bpp, ms_ssim, psnr_rgb_db, psnr_yuv_db
from .models.ssf import SSF
from .zoo import ZooEntry


@dataclass
class EvalResult:
    quality: int
    frames: int
    width: int
    height: int
    bytes: int
    bpp: float
    psnr_rgb_db: float
    psnr_yuv_db: float
    psnr_y_db: float
    ms_ssim: float
    encode_seconds: float
    decode_seconds: float
    bit_exact: bool

    def as_dict(self) -> dict:
        return asdict(self)


def evaluate(video: Video, model: SSF, entry: ZooEntry, quality: int, intra_period: int = 12,
             matrix: ColourMatrix = ColourMatrix.BT709, progress=None) -> EvalResult:
    kw = {"progress": progress} if progress else {}
    coded = encode(video, model, entry, quality, intra_period, matrix, **kw)
    decoded = decode_stream(bitstream.unpack(coded.data), model, entry, **kw)
    exact = all((a == b).all() for a, b in zip(coded.reconstruction, decoded.frames))
    if not exact:
        raise NvcError("decoder output differs from the encoder's reconstruction")
    src_rgb = [source_rgb(f, matrix) for f in video.frames]
    yuv = psnr_yuv_db(video.frames, [rgb_to_yuv(f, matrix) for f in decoded.frames])
    return EvalResult(
        quality=quality, frames=len(video.frames), width=video.width, height=video.height,
        bytes=len(coded.data), bpp=bpp(len(coded.data), video.width, video.height,
                                       len(video.frames)),
        psnr_rgb_db=psnr_rgb_db(src_rgb, decoded.frames), psnr_yuv_db=yuv["yuv"],
        psnr_y_db=yuv["y"], ms_ssim=ms_ssim(src_rgb, decoded.frames),
        encode_seconds=coded.seconds, decode_seconds=decoded.seconds, bit_exact=exact)
