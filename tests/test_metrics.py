import math

import numpy as np
import pytest

from nvc.io import YUVFrame
from nvc.metrics import bd_rate, bitrate, bpp, ms_ssim, psnr_db, psnr_rgb_db, psnr_yuv_db


def test_psnr_known_value():
    a = np.zeros((4, 4))
    assert psnr_db(a, a + 0.1) == pytest.approx(20.0)
    assert psnr_db(a, a) == math.inf


def test_psnr_yuv_weights_6_1_1():
    z = np.zeros((4, 4), np.uint8)
    c = np.zeros((2, 2), np.uint8)
    src = [YUVFrame(z, c, c)]
    dec = [YUVFrame(z + 1, c + 10, c)]  # Y 48.13 dB, U 28.13 dB, V inf -> capped by definition
    out = psnr_yuv_db(src, [YUVFrame(z + 1, c + 10, c + 10)])
    assert out["y"] == pytest.approx(48.1308, abs=1e-3)
    assert out["yuv"] == pytest.approx((6 * out["y"] + out["u"] + out["v"]) / 8)
    assert psnr_yuv_db(src, dec)["v"] == math.inf


def test_bpp_counts_all_bytes():
    assert bpp(1000, 100, 10, 8) == 1.0


def test_bitrate_spreads_the_bytes_over_the_frames_time():
    assert bitrate(1000, 25, 10) == 20000.0  # 8000 bits over 0.4 s


def test_ms_ssim_identical_and_small_frames():
    rng = np.random.default_rng(0)
    a = [rng.random((144, 176, 3)).astype(np.float32)]  # QCIF: too small for five scales
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(a, [np.clip(a[0] + 0.1, 0, 1)]) < 1.0
    tiny = [rng.random((32, 512, 3)).astype(np.float32)]  # five scales need more than 32 rows
    assert ms_ssim(tiny, tiny) is None


def test_psnr_rgb_is_mean_over_frames():
    a = [np.zeros((2, 2, 3)), np.zeros((2, 2, 3))]
    b = [a[0] + 0.1, a[1] + 0.01]
    assert psnr_rgb_db(a, b) == pytest.approx(30.0)


RATES = [100.0, 180.0, 330.0, 600.0]
PSNRS = [30.0, 32.5, 35.0, 37.0]


def test_bd_rate_identical_curves_is_zero():
    assert bd_rate(RATES, PSNRS, RATES, PSNRS) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("factor", [0.8, 1.1, 2.0])
def test_bd_rate_of_a_constant_rate_factor_is_exact(factor):
    # Scaling every rate by k shifts log-rate by log k at every PSNR: BD-rate = (k - 1) * 100.
    assert bd_rate(RATES, PSNRS, [r * factor for r in RATES], PSNRS) == pytest.approx(
        (factor - 1) * 100, abs=1e-9)


def test_bd_rate_sign_follows_quality():
    better = [p + 1.0 for p in PSNRS]  # same rate, more quality -> fewer bits at equal PSNR
    assert bd_rate(RATES, PSNRS, RATES, better) < 0


def test_bd_rate_refuses_disjoint_curves():
    with pytest.raises(ValueError, match="overlap"):
        bd_rate(RATES, PSNRS, RATES, [p + 20 for p in PSNRS])


# Published worked example: the x265 data in the README of FAU-LMS/bjontegaard (the JCT-VC CTC
# Excel PCHIP method in Python, verified against the sheet to 10 decimals). Its
# bd_rate(..., method="pchip") returns -4.417485350589045 (package 1.3.0); a second pair of curves
# from the VCEG-M33 style demos gives 31.379878202397627.
@pytest.mark.parametrize("anchor, test, expected", [
    (([9487.76, 4593.60, 2486.44, 1358.24], [40.037, 38.615, 36.845, 34.851]),
     ([9787.80, 4469.00, 2451.52, 1356.24], [40.121, 38.651, 36.970, 34.987]), -4.417485350589045),
    (([686.76, 309.58, 157.11, 85.95], [40.28, 37.18, 34.24, 31.42]),
     ([893.34, 407.8, 204.93, 112.75], [40.39, 37.21, 34.17, 31.24]), 31.379878202397627),
])
def test_bd_rate_matches_the_published_pchip_example(anchor, test, expected):
    assert bd_rate(*anchor, *test) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("anchor, test, message", [
    (([100.0], [30.0]), (RATES, PSNRS), "needs at least two"),  # one point
    ((RATES, PSNRS[:3]), (RATES, PSNRS), "needs at least two"),  # rates and PSNRs unpaired
    ((RATES, PSNRS), ([0.0, 180.0, 330.0, 600.0], PSNRS), "rates must be positive"),
    ((RATES, PSNRS), ([1.0, 180.0, 330.0, 600.0], PSNRS), None),  # a rate of 1 is a rate
    ((RATES, PSNRS), (RATES, [p + 7.0 for p in PSNRS]), "do not overlap"),  # touching: 37 = 37
])
def test_bd_rate_refuses_what_it_cannot_integrate_in_a_line(anchor, test, message):
    if message is None:
        assert math.isfinite(bd_rate(*anchor, *test))
        return
    with pytest.raises(ValueError, match=message):
        bd_rate(*anchor, *test)


def test_bd_rate_of_curves_with_other_counts_and_two_points():
    """A codec measured at fewer points than its anchor (a point that failed), or at two: the
    integral over their common PSNR range all the same (half the rates at three of the four
    points: near -50%, the curve through three points not quite the one through four)."""
    assert bd_rate(RATES, PSNRS, [r * 0.5 for r in RATES[:3]], PSNRS[:3]) == pytest.approx(
        -50.0, abs=0.5)
    assert bd_rate([100, 200], [30, 33], [90, 180], [30, 33]) == pytest.approx(-10.0)


def test_a_psnr_over_unpaired_frames_is_refused():
    """A decode one frame short must not be scored on the frames it has."""
    frames = [np.zeros((4, 4, 3)), np.ones((4, 4, 3))]
    planes = [YUVFrame(np.zeros((4, 4), np.uint8), np.zeros((2, 2), np.uint8),
                       np.zeros((2, 2), np.uint8))] * 2
    with pytest.raises(ValueError):
        psnr_rgb_db(frames, frames[:1])
    with pytest.raises(ValueError):
        psnr_yuv_db(planes, planes[:1])
