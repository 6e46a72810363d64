"""Encoder-side latent refinement (`nvc encode --refine STEPS`): before a frame is coded, its
latents are moved by gradient steps on the frame's own RD cost, through the decoder's synthesis and
the entropy model (Campos et al. 2019, "Content adaptive optimization for neural image compression";
Yang et al. 2020, "Improving inference for neural image compression"). What the analysis transforms
give is a good start, not the best the decoder can use; a P-frame's motion and residual latents move
together, so the motion is chosen for what the residual then costs. The decoder is unchanged: any
nvc decoder reads the stream.

The rate is smoothed as in training (uniform noise on y; z rounded as coded), the reconstruction is
the rounded latents' (straight-through). Every `check_every` steps the iterate is coded for real and
priced like the frame-type choice (codec.frame_cost: every byte of the frame, its 8-bit
reconstruction); the cheapest coding is kept, the unrefined one included, so no frame costs more at
its lambda than without refinement. The noise is seeded, so an encoder reproduces its own bytes.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .bitstream import CodedFrame, FrameType, NumericProfile
from .errors import Stop, never
from .models.ssf import SSF
from .objective import PLAIN, FrameObjective
from .rd import likelihood_bits, rd_cost

Coded = tuple[CodedFrame, Tensor]  # what SSF.compress_* return

# Adam's step on the scaled latents at the first step, in quantiser bins, by frame type; it falls
# to 0 along a half cosine over the steps. Chosen on the training clips, P 0.048 over 0.024 then
# confirmed on the evaluation clips (benchmarks/RESULTS.md, "The step size by frame type"):
# P-frames take several times the I-frames' step.
LEARNING_RATES = {FrameType.I: 0.008, FrameType.P: 0.048}
CHECK_EVERY = 10
MAX_STEPS = 10_000  # a bound on what one frame may ask (published gains level off in the thousands)


@dataclass(frozen=True)
class Refinement:
    steps: int = 0  # 0: the analysis transforms' latents, coded as they are
    # read from LEARNING_RATES when made, so the benchmarks' cache key and the encoder agree
    lr_intra: float = field(default_factory=lambda: LEARNING_RATES[FrameType.I])
    lr_inter: float = field(default_factory=lambda: LEARNING_RATES[FrameType.P])
    check_every: int = CHECK_EVERY
    seed: int = 0
    # the steps' synthesis in bfloat16 (the candidates are coded in the stream's precision as
    # ever): on a CPU with AVX512-BF16 a step takes 0.56-0.70x the time and gains a little less,
    # so more steps fit in the same time (nvc encode --refine-precision)
    bf16_steps: bool = False

    def __post_init__(self) -> None:
        if not 0 <= self.steps <= MAX_STEPS or self.check_every < 1 or \
                min(self.lr_intra, self.lr_inter) <= 0:
            raise ValueError(f"refinement needs steps >= 0, check_every >= 1 and step sizes > 0, "
                             f"not {self}")

    def lr(self, kind: FrameType, step: int) -> float:
        """The step size at `step` (1 .. steps): the kind's, decayed along a half cosine."""
        peak = self.lr_intra if kind == FrameType.I else self.lr_inter
        return peak * 0.5 * (1 + math.cos(math.pi * (step - 1) / self.steps))


Effort = int | Refinement  # what callers pass: the steps alone, or a whole Refinement


def as_refinement(effort: Effort) -> Refinement:
    return effort if isinstance(effort, Refinement) else Refinement(effort)


@dataclass
class Target:
    """What one frame is refined for."""

    lam: float | Tensor  # its lambda (SSF.lambda_at): a number, or one per latent cell
    size: tuple[int, int]  # its (h, w) before padding
    price: Callable[[Coded], float]  # the RD cost of a coding of it (codec.frame_cost)
    goal: FrameObjective = PLAIN  # its distortion beyond MSE: a region's weights, a task's term
    # asked after each step: True ends the refinement there, the iterate coded and priced with
    # the others (a Ctrl-C ending a file's coding after the frame in hand: nvc.cli)
    stop: Stop = never


def refined(model: SSF, how: Refinement, at: Target, kind: FrameType, x: Tensor,
            x_ref: Tensor | None, q: int | Tensor, profile: NumericProfile) -> Coded:
    """The cheapest coding of frame x (padded, (1, 3, H, W)) found in `how.steps` steps (fewer
    where `at.stop()` ends them)."""
    start = model.start_latents(kind, x, x_ref, q, profile)
    best = model.code_latents(kind, start, x_ref, q, profile)
    if how.steps == 0:
        return best
    best_cost = at.price(best)
    noise_source = torch.Generator(device=x.device).manual_seed(how.seed)
    latents = [y.detach().clone().requires_grad_() for y in start]
    step = torch.optim.Adam(latents)
    for i in range(1, how.steps + 1):
        step.param_groups[0]["lr"] = how.lr(kind, i)
        with torch.enable_grad():
            noise = [torch.rand(y.shape, generator=noise_source, device=y.device) - 0.5
                     for y in latents]
            x_hat, likelihoods = model.relaxed(kind, latents, x_ref, q, noise,
                                               torch.bfloat16 if how.bf16_steps else None)
            grads = torch.autograd.grad(relaxed_cost(at, x, x_hat, likelihoods), latents)
        for y, g in zip(latents, grads):
            y.grad = g
        step.step()
        last = i == how.steps or at.stop()
        if i % how.check_every == 0 or last:
            with torch.no_grad():
                candidate = model.code_latents(kind, [y.detach() for y in latents], x_ref, q,
                                               profile)
            cost = at.price(candidate)
            if cost < best_cost:
                best, best_cost = candidate, cost
        if last:
            break
    return best


def relaxed_cost(at: Target, x: Tensor, x_hat: Tensor, likelihoods: list[Tensor]) -> Tensor:
    """lambda * 255^2 * D + bpp over the frame's own pixels (not the padding), D the MSE or the
    target's objective (nvc.objective), each pixel's error weighed by its cell's lambda where a
    quality map codes it."""
    h, w = at.size
    lam = at.lam
    if isinstance(lam, Tensor) and lam.numel() > 1:  # a map of latent cells, not one lambda
        lam = F.interpolate(lam, size=x.shape[-2:], mode="nearest")[..., :h, :w]
    x, x_hat = x[..., :h, :w], x_hat[..., :h, :w]
    err = at.goal.weighed((x_hat - x) ** 2)
    lam_mean = lam.mean() if isinstance(lam, Tensor) else lam
    d = at.goal.distortion((lam * err).mean(), lam_mean, x_hat.clamp(0, 1), x)
    return rd_cost(1.0, d, likelihood_bits(likelihoods).sum() / (h * w))


def refined_intra(model: SSF, how: Refinement, at: Target, x: Tensor, q: int | Tensor,
          profile: NumericProfile) -> Coded:
    """SSF.compress_intra, refined."""
    return refined(model, how, at, FrameType.I, x, None, q, profile)


def refined_inter(model: SSF, how: Refinement, at: Target, x: Tensor, x_ref: Tensor, q: int | Tensor,
          profile: NumericProfile) -> Coded:
    """SSF.compress_inter, refined."""
    return refined(model, how, at, FrameType.P, x, x_ref, q, profile)
