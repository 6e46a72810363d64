"""Task-aware distortion (coding for machines): a user's TorchScript model judges the decoded frames.

Contract: `torch.jit.load(MODEL.pt)` gives a module that takes RGB (B, 3, H, W) in [0, 1] and
returns a float tensor: features (B, C, h, w) or logits (B, classes). nvc ships no such model
(`python -m benchmarks.task_model` builds the project's own test models).

- FMSE: the mean squared error between the model's outputs on the source and on the
  reconstruction, normalised by the variance of the source's outputs (per frame);
- distortion = (1 - beta) * MSE + beta * k * FMSE (TaskTerm, nvc.rd.task_distortion), in fitting,
  in the keep-or-drop decision, in refinement and in the frame-type choice alike (nvc.objective);
  k = MSE / FMSE of the first frame coded as an unrefined I-frame brings FMSE to the MSE's units, so
  beta is about the task's share of the distortion where coding starts (without k, FMSE, a relative
  error, outweighs an MSE on [0, 1] pixels some 40 times and the rate points lose their meaning:
  measured, the adapted file grew 3.5x);
- GSW (`--roi gradient`): the magnitude of the gradient of the model's output energy with respect to
  the source pixels, per frame, scaled to [0, 1]: an importance map for nvc.roi.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .errors import InputError
from .rd import task_distortion

PROBE_SIDE = 64  # the contract is checked on a (1, 3, 64, 64) input when the model is loaded
GSW_PERCENTILE = 99.0  # gradient magnitudes are scaled so that this percentile maps to 1


class TaskModel:
    def __init__(self, path: str | Path, device: str | torch.device = "cpu"):
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such task model file")
        try:
            with warnings.catch_warnings():  # TorchScript is the contract, deprecated or not
                warnings.simplefilter("ignore", FutureWarning)
                self.module = torch.jit.load(str(path), map_location=device).eval()
        except (RuntimeError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise InputError(f"{path}: not a TorchScript module ({first})") from None
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.path, self.device = path, torch.device(device)
        probe = self._run(torch.rand(1, 3, PROBE_SIDE, PROBE_SIDE, device=device))
        if probe.dim() not in (2, 4) or probe.shape[0] != 1:
            raise InputError(f"{path}: the task model must return (B, C, h, w) features or "
                             f"(B, classes) logits, got shape {tuple(probe.shape)}")
        self.returns_logits = probe.dim() == 2

    def _run(self, x: Tensor) -> Tensor:
        """The model's outputs for x, on x's device (the model runs on its own)."""
        try:
            out = self.module(x.to(self.device))
        except Exception as e:  # a user's model: any failure is an input error
            raise InputError(f"{self.path}: the task model failed on a {tuple(x.shape)} input "
                             f"({type(e).__name__})") from None
        if not isinstance(out, Tensor) or not out.is_floating_point():
            raise InputError(f"{self.path}: the task model must return one float tensor")
        return out.to(x.device)

    def fmse(self, x_hat: Tensor, x: Tensor) -> Tensor:
        """(B,) feature MSE of x_hat against x, normalised by the variance of x's outputs."""
        with torch.no_grad():
            ref = self._run(x).flatten(1)
        out = self._run(x_hat).flatten(1)
        return ((out - ref) ** 2).mean(1) / ref.var(1, unbiased=False).clamp_min(1e-12)

    def top1(self, x: Tensor) -> Tensor:
        """(B,) predicted class; only for models that return logits."""
        with torch.no_grad():
            return self._run(x).argmax(1)

    def gradient_map(self, x: Tensor) -> Tensor:
        """(B, H, W) in [0, 1]: |d (sum of squared outputs) / d pixel| (L2 over RGB), scaled per
        frame so that its GSW_PERCENTILE-th percentile is 1, then clipped."""
        x = x.detach().clone().requires_grad_(True)
        (self._run(x).float() ** 2).sum().backward()
        assert x.grad is not None
        g = x.grad.norm(dim=1)
        scale = torch.quantile(g.flatten(1), GSW_PERCENTILE / 100, dim=1).clamp_min(1e-12)
        return (g / scale[:, None, None]).clamp(0, 1)


@dataclass(frozen=True)
class TaskTerm:
    """A task model's part of the distortion: (1 - weight) * MSE + weight * scale * FMSE."""

    model: TaskModel
    weight: float  # beta
    scale: float = 1.0  # FMSE to MSE units: the base reconstruction's MSE / FMSE

    def distortion(self, mse: Tensor, x_hat: Tensor, x: Tensor) -> Tensor:
        """(B,) distortion of x_hat against x given its (B,) pixel MSE."""
        out = task_distortion(mse, self.model.fmse(x_hat, x), self.weight, self.scale)
        assert isinstance(out, Tensor)
        return out


def gradient_maps(task: TaskModel, frames_rgb: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
    """The GSW importance map of each source frame (RGB float (H, W, 3)) in turn: (H, W) float32."""
    for f in frames_rgb:
        x = torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1)[None].float()
        yield task.gradient_map(x)[0].numpy().astype(np.float32)


def gradient_mask(task: TaskModel, frames_rgb: Iterable[np.ndarray]) -> np.ndarray:
    """gradient_maps of a clip, held: (frames, H, W)."""
    return np.stack(list(gradient_maps(task, frames_rgb)))


class TaskScores:
    """FMSE over the clip (mean of frames) and, for logits, the share of frames whose top-1 class
    survives coding, gathered one frame at a time (`add`)."""

    def __init__(self, task: TaskModel):
        self.task = task
        self.fmse: list[float] = []
        self.agree: list[float] = []

    def add(self, source: np.ndarray, decoded: np.ndarray) -> None:
        """One frame: RGB float (H, W, 3) source and reconstruction."""
        xs, xd = (torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float()
                  for a in (source, decoded))
        with torch.no_grad():
            self.fmse.append(float(self.task.fmse(xd, xs)[0]))
            if self.task.returns_logits:
                self.agree.append(float(self.task.top1(xs)[0] == self.task.top1(xd)[0]))

    def result(self) -> dict[str, float]:
        out = {"fmse": float(np.mean(self.fmse))}
        if self.agree:
            out["top1_agreement"] = float(np.mean(self.agree))
        return out


def task_metrics(task: TaskModel, source: Iterable[np.ndarray], decoded: Iterable[np.ndarray]
                 ) -> dict[str, float]:
    """TaskScores of a clip."""
    scores = TaskScores(task)
    for s, d in zip(source, decoded):
        scores.add(s, d)
    return scores.result()
