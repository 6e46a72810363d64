"""The encoder's per-frame objective (nvc.objective): a region's pixel weights and a task model's
term price the refinement and the frame-type choice as they price adaptation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.task_model import build
from nvc import bitstream
from nvc.cli import main
from nvc.codec import code_frames, encode, frame_cost, pad_to, rgb_tensor, source_rgb
from nvc.decoding import decode_stream
from nvc.objective import PLAIN, FrameObjective, Objective
from nvc.rd import PIXEL_RANGE
from nvc.refine import Target, relaxed_cost
from nvc.roi import pixel_weights
from nvc.task import TaskModel, TaskTerm
from nvc.writers import write_y4m
from nvc.zoo import load_model

from .conftest import make_video


@pytest.fixture(scope="module")
def task(tmp_path_factory) -> TaskModel:
    path = tmp_path_factory.mktemp("objective") / "logits.pt"
    build("logits").save(str(path))
    return TaskModel(path)


@pytest.fixture(scope="module")
def coded_frame(tiny_weights):
    model, _ = load_model(path=tiny_weights)
    src = source_rgb(make_video(1, (48, 64), seed=2).frames[0])
    with torch.no_grad():
        coded = model.compress_intra(pad_to(rgb_tensor(src, torch.device("cpu")),
                                            model.cfg.multiple), 1)
    rec = coded[1][0, :, :48, :64].permute(1, 2, 0).clamp(0, 1).mul(255).round().div(255).numpy()
    return src, coded, rec


def _t(a: np.ndarray) -> torch.Tensor:
    return rgb_tensor(a, torch.device("cpu"))


def test_pixel_weights_price_each_pixels_error(coded_frame):
    src, coded, rec = coded_frame
    lam = 0.01
    rate = frame_cost(0.0, src, coded)
    weight = np.zeros((48, 64), np.float32)
    weight[:24] = 2.0  # the top half counts twice, the bottom not at all
    weighted = frame_cost(lam, src, coded, FrameObjective(weight))
    expected = lam * PIXEL_RANGE ** 2 * float(np.mean((rec - src) ** 2 * weight[..., None]))
    assert weighted - rate == pytest.approx(expected, rel=1e-4)
    ones = FrameObjective(np.ones((48, 64), np.float32))
    assert frame_cost(lam, src, coded, ones) == pytest.approx(frame_cost(lam, src, coded), rel=1e-6)


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0])
def test_a_task_term_prices_fmse_at_its_share(coded_frame, task, beta):
    src, coded, rec = coded_frame
    lam, scale = 0.01, 37.0
    rate = frame_cost(0.0, src, coded)
    mse = float(np.mean((rec - src) ** 2))
    fmse = float(task.fmse(_t(rec), _t(src))[0])
    goal = FrameObjective(task=TaskTerm(task, beta, scale))
    expected = lam * PIXEL_RANGE ** 2 * ((1 - beta) * mse + beta * scale * fmse)
    assert frame_cost(lam, src, coded, goal) - rate == pytest.approx(expected, rel=1e-4)
    # the refinement's relaxed cost is the same distortion, differentiable through the task model
    x_hat = _t(rec).requires_grad_()
    cost = relaxed_cost(Target(lam, (48, 64), lambda c: 0.0, goal), _t(src), x_hat,
                        [torch.ones(1, 1, 3, 4)])
    assert cost.item() == pytest.approx(expected, rel=1e-4)
    if beta:
        cost.backward()
        assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0


def test_the_stream_objective_scales_fmse_to_the_mse_units(coded_frame, task):
    src, _, rec = coded_frame
    assert Objective().frame(0) is PLAIN
    unscaled = Objective(task_model=task, task_weight=0.3)
    with pytest.raises(ValueError, match="needs its scale"):
        unscaled.frame(0)
    scaled = unscaled.scaled(_t(src), _t(rec))
    mse, fmse = float(np.mean((rec - src) ** 2)), float(task.fmse(_t(rec), _t(src))[0])
    assert scaled.task_scale == pytest.approx(mse / fmse, rel=1e-4)
    assert scaled.scaled(_t(src), _t(src)).task_scale == scaled.task_scale  # set once
    term = scaled.frame(0).task
    assert term is not None and term.weight == 0.3
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        Objective(task_model=task, task_weight=1.5)


def test_a_quality_map_carries_the_region_instead_of_the_weights():
    weights = np.ones((2, 4, 4), np.float32)
    assert Objective.for_coding(weights, quality_map=False).weights is weights
    assert Objective.for_coding(weights, quality_map=True).weights is None


def test_an_image_masks_weights_stay_one_map():
    mask = np.broadcast_to(np.linspace(0, 1, 12, dtype=np.float32).reshape(1, 3, 4), (500, 3, 4))
    w = pixel_weights(mask, 4.0)
    assert w.shape == (500, 3, 4) and w.strides[0] == 0  # not 500 copies
    assert np.allclose(w, pixel_weights(np.ascontiguousarray(mask), 4.0))


def test_refinement_under_a_task_descends_through_the_task_model(tiny_model, tiny_weights, task,
                                                                  monkeypatch):
    model, entry = tiny_model
    video = make_video(3, (48, 64), seed=5)
    with_grad = []
    fmse = task.fmse

    def counted(x_hat, x):
        with_grad.append(x_hat.requires_grad)
        return fmse(x_hat, x)
    monkeypatch.setattr(task, "fmse", counted)
    objective = Objective(task_model=task, task_weight=0.5)
    first = encode(video, model, entry, 2, refine=4, objective=objective)
    assert any(with_grad) and not all(with_grad)  # the steps' gradients and the codings' prices
    again = encode(video, model, entry, 2, refine=4, objective=objective)
    assert first.data == again.data
    frames = decode_stream(bitstream.unpack(first.data), *load_model(path=tiny_weights)).frames
    assert all(np.array_equal(a, b) for a, b in zip(frames, first.reconstruction))
    coded = list(code_frames(video, model, 2, 12, refine=0, objective=objective))
    assert len(coded) == 3


def test_nvc_encode_refines_for_a_task_and_a_region(tmp_path, tiny_weights, capsys):
    from PIL import Image

    src = tmp_path / "clip.y4m"
    write_y4m(src, make_video(2, (48, 64)))
    model_path = tmp_path / "task.pt"
    build("features").save(str(model_path))
    mask = tmp_path / "mask.png"
    Image.fromarray(np.tile(np.arange(64, dtype=np.uint8) * 4, (48, 1))).save(mask)
    for extra in (["--task-model", str(model_path)], ["--roi", str(mask)],
                  ["--roi", str(mask), "--roi-quality", "0"]):
        out = tmp_path / "clip.nvc"
        assert main(["encode", str(src), "-o", str(out), "--weights", str(tiny_weights),
                     "--refine", "3"] + extra) == 0, capsys.readouterr().err
        assert len(bitstream.unpack(out.read_bytes()).frames) == 2
    capsys.readouterr()

