import math

import numpy as np
import pytest

from nvc.io import YUVFrame
from nvc.metrics import bd_rate, bpp, ms_ssim, psnr_db, psnr_rgb_db, psnr_yuv_db


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


def test_ms_ssim_identical_and_small_frames():
    rng = np.random.default_rng(0)
    a = [rng.random((144, 176, 3)).astype(np.float32)]  # QCIF: too small for five scales
    assert ms_ssim(a, a) == pytest.approx(1.0, abs=1e-6)
    assert ms_ssim(a, [np.clip(a[0] + 0.1, 0, 1)]) < 1.0


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
