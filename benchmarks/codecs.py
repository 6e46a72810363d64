"""The codecs a benchmark can run, each as `run(source, point, conditions) -> PointResult`."""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

from nvc.evaluate import evaluate, measure
from nvc.io import Video

from .anchors import ANCHORS, CRF_SWEEP, run_anchor


@dataclass
class Conditions:
    intra_period: int = 12
    frames: int = 96
    qualities: tuple[int, ...] = (1, 2, 3, 4)
    crfs: tuple[int, ...] = CRF_SWEEP
    device: str = "cpu"


@dataclass
class PointResult:
    codec: str
    point: str  # "q2" or "crf27"
    bytes: int
    bpp: float
    psnr_rgb_db: float
    psnr_yuv_db: float
    psnr_y_db: float
    ms_ssim: float
    encode_seconds: float
    decode_seconds: float
    version: str = ""


def points(codec: str, cond: Conditions) -> list[str]:
    if codec in ANCHORS:
        return [f"crf{c}" for c in cond.crfs]
    return [f"q{q}" for q in cond.qualities]


_MODEL = {}


def _nvc_model(device: str):
    if device not in _MODEL:
        import torch

        from nvc.zoo import load_model

        model, entry = load_model()
        _MODEL[device] = (model.to(torch.device(device)), entry)
    return _MODEL[device]


def run_nvc(source: Video, point: str, cond: Conditions) -> PointResult:
    model, entry = _nvc_model(cond.device)
    r = evaluate(source, model, entry, int(point[1:]), cond.intra_period)
    return PointResult("nvc", point, r.bytes, r.bpp, r.psnr_rgb_db, r.psnr_yuv_db, r.psnr_y_db,
                       r.ms_ssim, r.encode_seconds, r.decode_seconds, f"{entry.name} {entry.sha256[:12]}")


def _run_anchor(name: str) -> Callable[[Video, str, Conditions], PointResult]:
    def run(source: Video, point: str, cond: Conditions) -> PointResult:
        r = run_anchor(source, ANCHORS[name], int(point[3:]), cond.intra_period)
        q = measure(source, r.data_bytes, decoded_yuv=r.decoded.frames)
        return PointResult(name, point, **asdict(q), encode_seconds=r.encode_seconds,
                           decode_seconds=r.decode_seconds, version=r.version)
    return run


CODECS: dict[str, Callable[[Video, str, Conditions], PointResult]] = {
    "nvc": run_nvc, **{name: _run_anchor(name) for name in ANCHORS},
}
