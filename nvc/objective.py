"""What the encoder's choices for one frame minimise: latent refinement (nvc.refine) and the
frame-type choice (nvc.codec.frame_cost) price a coding at lambda * 255^2 * D + bits per pixel.

D is the frame's MSE or, for a stream coded for a region or a task model, the distortion that
adaptation fits (nvc.rd, nvc.task): each pixel's squared error weighted (a region of interest,
nvc.roi.pixel_weights, mean 1 a frame) and (1 - beta) of that plus beta * scale * FMSE under a
task model. `scale` brings FMSE to the MSE's units: MSE / FMSE of the first frame's unrefined
I-frame (`scaled`), one figure for the whole stream, so that every frame and every candidate of
adaptation is priced alike. Where a quality map codes the frame, each pixel's error is also
weighed by its latent cell's lambda (SSF.lambda_at), and the task's term, a figure for the whole
frame, by the mean of those lambdas.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from .rd import task_distortion
from .roi import Masks
from .task import TaskModel, TaskTerm


@dataclass(frozen=True)
class FrameObjective:
    """One frame's part of an Objective."""

    weight: np.ndarray | None = None  # (H, W) pixel weights, or None
    task: TaskTerm | None = None

    def weighed(self, err: Tensor) -> Tensor:
        """Squared errors (1, 3, h, w) of the frame's own pixels, weighted where a region asks."""
        if self.weight is None:
            return err
        h, w = err.shape[-2:]
        return err * torch.from_numpy(self.weight[:h, :w]).to(err)

    def distortion(self, weighted_mse: Tensor, lam_mean: Tensor | float, x_hat: Tensor,
                   x: Tensor) -> Tensor:
        """D times lambda where the caller folded lambda into `weighted_mse` (its mean over the
        pixels, `lam_mean`, then weighs the task's term), or plain D with lam_mean 1. x_hat, x:
        (1, 3, h, w) in [0, 1], the frame's own pixels (x_hat differentiable where refining)."""
        if self.task is None:
            return weighted_mse
        fmse = self.task.model.fmse(x_hat, x)[0] * lam_mean
        out = task_distortion(weighted_mse, fmse, self.task.weight, self.task.scale)
        assert isinstance(out, Tensor)
        return out


PLAIN = FrameObjective()


@dataclass(frozen=True)
class Objective:
    """A stream's objective: pixel weights per frame and a task model, or neither (plain MSE)."""

    weights: Masks | None = None  # (frames, H, W), each frame's mean 1 (nvc.roi.pixel_weights)
    task_model: TaskModel | None = None
    task_weight: float = 0.5  # beta
    task_scale: float | None = None  # FMSE to MSE units; None until `scaled`

    def __post_init__(self) -> None:
        if not 0 <= self.task_weight <= 1:
            raise ValueError(f"a task's weight lies in [0, 1], got {self.task_weight}")

    @classmethod
    def for_coding(cls, weights: Masks | None, quality_map: bool,
                   task_model: TaskModel | None = None, task_weight: float = 0.5) -> Objective:
        """The coder's objective for a region's pixel weights and a task model: the weights only
        where no quality map carries the region; with one, its cells' lambdas weigh the pixels
        already, and the weights on top counted the region twice (measured, BasketballPass,
        `--refine 20`, weight 8: at equal size the ROI gained 0.06-0.27 dB more for 0.7-2.3 dB
        more of the background, and the files grew up to 68% past their quality's size)."""
        return cls(None if quality_map else weights, task_model, task_weight)

    @property
    def term(self) -> TaskTerm | None:
        """The task's term of the distortion, once scaled; None without a task model."""
        if self.task_model is None:
            return None
        if self.task_scale is None:
            raise ValueError("the task's term needs its scale first (Objective.scaled)")
        return TaskTerm(self.task_model, self.task_weight, self.task_scale)

    def frame(self, index: int) -> FrameObjective:
        if self.weights is None and self.task_model is None:
            return PLAIN
        return FrameObjective(self._weight(index), self.term)

    def _weight(self, index: int) -> np.ndarray | None:
        """Frame `index`'s weights, a writable copy (an image mask's are a read-only view)."""
        return None if self.weights is None else np.array(self.weights[index], np.float32)

    def scaled(self, x: Tensor, x_hat: Tensor) -> Objective:
        """With the task's scale set from a coding of the first frame (source and reconstruction,
        (1, 3, h, w) in [0, 1]): its weighted MSE over its FMSE. Unchanged without a task model or
        where the scale is set."""
        if self.task_model is None or self.task_scale is not None:
            return self
        with torch.no_grad():
            mse = float(FrameObjective(self._weight(0)).weighed((x_hat - x) ** 2).mean())
            fmse = float(self.task_model.fmse(x_hat, x)[0])
        return replace(self, task_scale=mse / max(fmse, 1e-12))


PLAIN_STREAM = Objective()
