"""PSNR (RGB and YUV), MS-SSIM, bpp, and Bjøntegaard delta rate with PCHIP interpolation."""
from __future__ import annotations

import math

import numpy as np

from .io import YUVFrame

PSNR_YUV_WEIGHTS = (6, 1, 1)  # JVET practice: (6 Y + U + V) / 8
MS_SSIM_WINDOW = 11  # Gaussian window of Wang et al. 2003


def psnr_db(a: np.ndarray, b: np.ndarray, peak: float = 1.0) -> float:
    return psnr_from_mse(float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)),
                         peak)


def psnr_from_mse(mse: float, peak: float = 1.0) -> float:
    return math.inf if mse == 0 else 10 * math.log10(peak ** 2 / mse)


def psnr_rgb_db(src: list[np.ndarray], dec: list[np.ndarray]) -> float:
    """Mean over frames of the per-frame PSNR over all three RGB channels, peak 1."""
    return float(np.mean([psnr_db(a, b) for a, b in zip(src, dec, strict=True)]))


def plane_psnr_db(a: YUVFrame, b: YUVFrame) -> dict[str, float]:
    """PSNR (peak 255) of each plane of one frame."""
    return {name: psnr_db(getattr(a, name), getattr(b, name), 255.0) for name in ("y", "u", "v")}


def psnr_yuv_db(src: list[YUVFrame], dec: list[YUVFrame]) -> dict[str, float]:
    """Per-plane PSNR (peak 255) averaged over frames, and (6 Y + U + V) / 8."""
    return mean_yuv([plane_psnr_db(a, b) for a, b in zip(src, dec, strict=True)])


def mean_yuv(frames: list[dict[str, float]]) -> dict[str, float]:
    """Per-frame plane PSNRs (plane_psnr_db) -> their means over frames, and (6 Y + U + V) / 8."""
    out = {k: float(np.mean([f[k] for f in frames])) for k in ("y", "u", "v")}
    wy, wu, wv = PSNR_YUV_WEIGHTS
    out["yuv"] = (wy * out["y"] + wu * out["u"] + wv * out["v"]) / (wy + wu + wv)
    return out


def ms_ssim(src: list[np.ndarray], dec: list[np.ndarray]) -> float | None:
    """Mean MS-SSIM over frames (RGB, data range 1, five scales). pytorch-msssim needs the smaller
    side above (window - 1) * 16; frames too small for the standard 11-tap window (QCIF) use the
    largest odd window that fits, a documented deviation rather than a failure. Frames whose
    smaller side is 32 px or less have no five-scale MS-SSIM: None."""
    import torch
    from pytorch_msssim import ms_ssim as _ms_ssim

    side = min(src[0].shape[:2])
    win = MS_SSIM_WINDOW
    while win > 3 and (win - 1) * 16 >= side:
        win -= 2
    if (win - 1) * 16 >= side:
        return None
    a = torch.from_numpy(np.stack(src)).permute(0, 3, 1, 2).float()
    b = torch.from_numpy(np.stack(dec)).permute(0, 3, 1, 2).float()
    values = [_ms_ssim(a[i: i + 8], b[i: i + 8], data_range=1.0, size_average=False, win_size=win)
              for i in range(0, a.shape[0], 8)]
    return float(torch.cat(values).mean())


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean, or None where a value is missing (MS-SSIM of frames too small for it)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present and len(present) == len(values) else None


def bpp(num_bytes: int, width: int, height: int, frames: int) -> float:
    """All bytes of the file, header included, per pixel of the source."""
    return num_bytes * 8 / (width * height * frames)


def bitrate(num_bytes: int, fps: float, frames: int) -> float:
    """Bits a second of `num_bytes` spread over `frames` frames at `fps`."""
    return num_bytes * 8 * fps / frames


def bd_rate(rate_anchor, psnr_anchor, rate_test, psnr_test) -> float:
    """Bjøntegaard delta rate in percent (negative = test saves bits): the `bjontegaard` package's
    PCHIP method (the JCT-VC CTC sheet's, JVET-K0491), over the overlapping PSNR range."""
    import warnings

    import bjontegaard

    curves = [np.asarray(v, float) for v in (rate_anchor, psnr_anchor, rate_test, psnr_test)]
    for rate, psnr in (curves[:2], curves[2:]):
        if len(rate) < 2 or len(rate) != len(psnr):
            raise ValueError("a BD-rate curve needs at least two (rate, PSNR) points")
        if np.any(rate <= 0):
            raise ValueError("rates must be positive")
    lo = max(curves[1].min(), curves[3].min())
    hi = min(curves[1].max(), curves[3].max())
    if hi <= lo:
        raise ValueError("the two RD curves do not overlap in PSNR")
    with warnings.catch_warnings():  # small overlaps are reported by the caller, not warned
        warnings.simplefilter("ignore")
        return float(bjontegaard.bd_rate(*curves, method="pchip", require_matching_points=False))
