"""The one rate-distortion objective: distortion terms, latent bits, adapter bits.

Training, validation, adaptation and the keep-or-drop decision all price a coded clip with
`rd_cost`, in CompressAI's convention: cost = lambda * 255^2 * D + bits per pixel, D the MSE
(ROI-weighted where a mask is given) or `task_distortion` where a task model judges the frames.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .models.entropy import ladder_interpolate

PIXEL_RANGE = 255  # MSE is scaled to 8-bit code values, as lambda is defined for


def likelihood_bits(likelihoods: Sequence[Tensor]) -> Tensor:
    """Per-sample bits, (B,), of every latent of one frame."""
    return torch.stack([-torch.log2(lik).flatten(1).sum(1) for lik in likelihoods]).sum(0)


def mse_per_sample(a: Tensor, b: Tensor, weight: Tensor | None = None) -> Tensor:
    """(B,) mean squared error; `weight` (B or 1, 1, H, W), if given, weights pixels (its mean
    over each image should be 1 so that weighted and plain MSE share a scale)."""
    err = (a - b) ** 2
    if weight is not None:
        err = err * weight
    return err.flatten(1).mean(1)


def task_distortion(mse: Tensor | float, fmse: Tensor | float | None, beta: float,
                    scale: float = 1.0) -> Tensor | float:
    """(1 - beta) * MSE + beta * scale * FMSE (nvc.task.TaskTerm); plain MSE without a task model.
    `scale` brings FMSE to the MSE's units."""
    return mse if fmse is None else (1 - beta) * mse + beta * scale * fmse


def psnr_db(mse: Tensor) -> Tensor:
    return -10 * torch.log10(mse.clamp_min(1e-10))


def rd_cost(lam: Tensor | float, mse: Tensor, bpp: Tensor) -> Tensor:
    """lambda * 255^2 * MSE + bpp, elementwise (broadcasts over frames and samples)."""
    return lam * PIXEL_RANGE ** 2 * mse + bpp


def ladder_lambda(lambdas: Sequence[float], positions: Tensor) -> Tensor:
    """The lambda at ladder `positions` (any shape, 0 = the first rung): log-linear between rungs,
    extended along the first segment below the first rung, the top rung's above the top (as the
    gains are interpolated, nvc.models.entropy.ladder_interpolate)."""
    log_lam = torch.tensor(lambdas, dtype=torch.float32, device=positions.device).log()
    return ladder_interpolate(log_lam, positions.float()).exp()
