import json

import numpy as np
import pytest
import torch
from PIL import Image

from nvc.errors import InputError
from nvc.roi import load_mask, pixel_weights, region_psnr_db


def _mask_png(path, w=56, h=40):
    a = np.zeros((h, w), np.uint8)
    a[: h // 2, : w // 2] = 255  # a quarter of the frame
    Image.fromarray(a).save(path)
    return path


def test_mask_image_is_resized_and_repeated(tmp_path):
    mask = load_mask(_mask_png(tmp_path / "m.png", 28, 20), frames=3, width=56, height=40)
    assert mask.shape == (3, 40, 56) and mask.dtype == np.float32
    assert 0.2 < (mask > 0.5).mean() < 0.3 and mask.max() == pytest.approx(1)


def test_mask_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such mask"):
        load_mask(tmp_path / "none.png", 1, 8, 8)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read the mask"):
        load_mask(tmp_path / "bad.png", 1, 8, 8)
    with pytest.raises(InputError, match="positive"):
        pixel_weights(np.zeros((1, 4, 4)), 0)


def test_weights_average_one_and_favour_the_region():
    mask = np.zeros((2, 4, 4), np.float32)
    mask[:, :2, :2] = 1
    w = pixel_weights(mask, 4.0)
    assert np.allclose(w.mean(axis=(1, 2)), 1) and w[0, 0, 0] == pytest.approx(4 * w[0, 3, 3])


def test_region_psnr_splits_the_error():
    src = [np.zeros((4, 4, 3), np.float32)]
    dec = [np.zeros((4, 4, 3), np.float32)]
    dec[0][:2, :2] = 0.1  # error only inside the region
    mask = np.zeros((1, 4, 4), np.float32)
    mask[:, :2, :2] = 1
    r = region_psnr_db(src, dec, mask)
    assert r["roi_psnr_db"] == pytest.approx(20.0) and r["background_psnr_db"] == float("inf")


def test_weights_scale_the_distortion_term_of_the_objective(tiny_model):
    from adapt.loop import clip_objective

    model, _ = tiny_model
    frames = torch.rand(2, 3, 64, 64)
    bits = torch.zeros(())
    plain, _ = clip_objective(model, frames, 0, 12, 1.0, 64 * 64, bits)
    ones, _ = clip_objective(model, frames, 0, 12, 1.0, 64 * 64, bits,
                             weights=torch.ones(2, 1, 64, 64))
    assert ones.item() == pytest.approx(plain.item(), rel=1e-5)
    torch.manual_seed(0)
    plain, info = clip_objective(model.eval(), frames, 0, 12, 1.0, 64 * 64, bits)
    double, _ = clip_objective(model, frames, 0, 12, 1.0, 64 * 64, bits,
                               weights=torch.full((2, 1, 64, 64), 2.0))
    mse = 10 ** (-info["psnr_db"] / 10)  # one I-frame and one P-frame: mean of the two MSEs
    assert double.item() - plain.item() == pytest.approx(255 ** 2 * mse, rel=0.05)


def test_eval_with_roi_reports_region_psnr(tmp_path, tiny_weights, capsys):
    from nvc.cli import main
    from nvc.io import write_video

    from .conftest import make_video

    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=2, hw=(40, 56)))
    args = ["eval", str(clip), "--quality", "1", "--adapt", "--adapt-steps", "2", "--roi",
            str(_mask_png(tmp_path / "m.png")), "--roi-weight", "8", "--json", "--weights",
            str(tiny_weights)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    for row in report["results"] + report["adapted"]:
        assert np.isfinite(row["roi_psnr_db"]) and np.isfinite(row["background_psnr_db"])
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.nvc"), "--roi",
                 str(tmp_path / "m.png"), "--weights", str(tiny_weights)]) == 1
    assert "needs --adapt" in capsys.readouterr().err
