"""Task-aware adaptation (issue 13): the TorchScript contract, FMSE, GSW maps, the CLI."""
import json

import numpy as np
import pytest
import torch

from adapt.loop import clip_objective
from benchmarks.task_model import build
from nvc.cli import main
from nvc.errors import InputError
from nvc.rd import task_distortion
from nvc.task import TaskModel, TaskTerm, gradient_mask, task_metrics
from nvc.writers import write_video

from .conftest import make_video


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("task")
    paths = {}
    for kind in ("features", "logits"):
        paths[kind] = root / f"{kind}.pt"
        build(kind).save(str(paths[kind]))
    return paths


class _Flat(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(1)  # (B, H, W): neither features nor logits


class _Scaled(torch.nn.Module):
    def __init__(self, inner, k: float):
        super().__init__()
        self.inner, self.k = inner, k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.k


class _Failing(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.view(-1, 7)  # 3 * 64 * 64 values: no view of 7 columns


class _Integer(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 255).long()


class _Two(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, x


def test_contract_is_checked_when_loading(tmp_path, models):
    assert not TaskModel(models["features"]).returns_logits
    assert TaskModel(models["logits"]).returns_logits
    with pytest.raises(InputError, match="no such task model file"):
        TaskModel(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(InputError, match="not a TorchScript module"):
        TaskModel(junk)
    flat = tmp_path / "flat.pt"
    torch.jit.script(_Flat()).save(str(flat))
    with pytest.raises(InputError, match=r"must return \(B, C, h, w\) features or \(B, classes\) "
                                         r"logits, got shape \(1, 64, 64\)"):
        TaskModel(flat)
    for module, message in ((_Failing(), r"the task model failed on a \(1, 3, 64, 64\) input "
                                         r"\(RuntimeError\)"),
                            (_Integer(), "the task model must return one float tensor"),
                            (_Two(), "the task model must return one float tensor")):
        path = tmp_path / f"{type(module).__name__}.pt"
        torch.jit.script(module).save(str(path))
        with pytest.raises(InputError, match=message) as e:
            TaskModel(path)
        assert str(e.value).startswith(f"{path}: ") and "\n" not in str(e.value)


def test_fmse_is_zero_on_the_source_and_scale_free(models):
    task = TaskModel(models["features"])
    torch.manual_seed(0)
    x = torch.rand(2, 3, 64, 64)
    noisy = (x + 0.05 * torch.randn_like(x)).clamp(0, 1)
    assert torch.equal(task.fmse(x, x), torch.zeros(2))
    base = task.fmse(noisy, x)
    assert base.shape == (2,) and (base > 0).all()
    task.module = torch.jit.script(_Scaled(task.module, 7.0))
    assert torch.allclose(task.fmse(noisy, x), base, rtol=1e-4)  # normalised by the variance
    assert task_distortion(0.5, 1.5, 0.25) == 0.75 and task_distortion(0.5, None, 0.25) == 0.5
    assert task_distortion(0.5, 1.5, 0.25, scale=2.0) == 0.375 + 0.75


def test_fmse_gradient_reaches_the_reconstruction(models):
    task = TaskModel(models["features"])
    x = torch.rand(1, 3, 32, 32)
    x_hat = (x + 0.1).clamp(0, 1).requires_grad_(True)
    task.fmse(x_hat, x).sum().backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0


def test_gradient_map_and_metrics(models):
    task = TaskModel(models["logits"])
    rng = np.random.default_rng(0)
    frames = [rng.random((48, 64, 3)).astype(np.float32) for _ in range(2)]
    mask = gradient_mask(task, frames)
    assert mask.shape == (2, 48, 64) and mask.min() >= 0 and mask.max() == 1.0
    assert 0.005 < (mask > 0.5).mean() < 0.9  # a map, not a constant
    same = task_metrics(task, frames, frames)
    assert same == {"fmse": 0.0, "top1_agreement": 1.0}
    worse = task_metrics(task, frames, [np.zeros_like(f) for f in frames])
    assert worse["fmse"] > 0 and 0 <= worse["top1_agreement"] <= 1


def test_the_objective_counts_the_task_term(tiny_model, models):
    model, _ = tiny_model
    task = TaskModel(models["features"])
    frames = torch.rand(2, 3, 64, 64)
    model.eval()

    def cost(**kw):
        torch.manual_seed(0)
        with torch.no_grad():
            return float(clip_objective(model, frames, 0, 2, 0.01, 64 * 64, torch.zeros(()),
                                        **kw)[0])

    plain = cost()
    assert cost(task=TaskTerm(task, 0.0)) == pytest.approx(plain, rel=1e-6)
    assert cost(task=TaskTerm(task, 0.5)) != pytest.approx(plain, rel=1e-3)
    assert cost(task=TaskTerm(task, 0.5, scale=0.0)) == pytest.approx(
        0.5 * (plain - cost(task=TaskTerm(task, 1.0, scale=0.0))) +
        cost(task=TaskTerm(task, 1.0, scale=0.0)), rel=1e-5)  # only the MSE half remains


@pytest.fixture
def clip(tmp_path):
    path = tmp_path / "clip.y4m"
    write_video(path, make_video(frames=2, hw=(40, 56)))
    return path


def test_eval_reports_task_metrics_and_adapts_with_gradient_roi(clip, models, tiny_weights,
                                                                 capsys):
    args = ["eval", str(clip), "--quality", "1", "--adapt", "--adapt-steps", "2", "--task-model",
            str(models["logits"]), "--roi", "gradient", "--json", "--weights", str(tiny_weights)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    for row in report["results"] + report["adapted"]:
        assert row["fmse"] >= 0 and 0 <= row["top1_agreement"] <= 1
        assert np.isfinite(row["roi_psnr_db"]) and np.isfinite(row["background_psnr_db"])
    assert main(["eval", str(clip), "--quality", "1", "--task-model", str(models["features"]),
                 "--weights", str(tiny_weights)]) == 0
    out = capsys.readouterr().out
    assert "base q1: FMSE" in out and "top-1" not in out


@pytest.mark.parametrize("extra, message", [
    (["--adapt", "--roi", "gradient"], "--roi gradient takes its map from the task model"),
    (["--task-model", "MODEL", "--task-weight", "1.5", "--adapt"],
     "--task-weight must be in [0, 1], got 1.5"),
    (["--task-model", "MODEL"], "--task-model sets what --adapt and --refine minimise: it needs one"),
])
def test_task_options_are_checked(clip, models, tiny_weights, tmp_path, capsys, extra, message):
    extra = [str(models["features"]) if a == "MODEL" else a for a in extra]
    out = tmp_path / "x.nvc"
    assert main(["encode", str(clip), "-o", str(out), "--weights", str(tiny_weights)] + extra) == 1
    assert message in capsys.readouterr().err and not out.exists()


def test_roi_benchmark_measures_the_adaptive_files(clip, models, tiny_weights, tmp_path, capsys):
    """benchmarks.roi scores every file it codes, the adaptive encoder's too (which keeps no
    reconstructions: they are decoded from its bytes)."""
    from benchmarks.roi import main as roi_main

    out = tmp_path / "roi"
    assert roi_main([str(clip), "--frames", "2", "--qualities", "1", "--adapt-steps", "1",
                     "--adapt-window", "64", "--variants", "roi", "--task-model",
                     str(models["logits"]), "--weights", str(tiny_weights), "--out", str(out)]) == 0
    rows = [r for name in ("mse", "roi")
            for r in json.loads((out / "results.json").read_text())["points"][name]]
    assert len(rows) == 2 and all(np.isfinite(r["psnr_rgb_db"]) and r["fmse"] >= 0 for r in rows)
