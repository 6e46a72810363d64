"""Encode with adaptation: base encode, fit, adapted encode, keep the cheaper file."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from nvc.adapted import apply_unit, make_unit
from nvc.codec import CodedVideo, encode, pad_to, rgb_tensor, source_rgb
from nvc.models.ssf import model_device
from nvc.io import ColourMatrix, Video
from nvc.metrics import bpp
from nvc.models.ssf import SSF
from nvc.zoo import ZooEntry

from .loop import AdaptConfig, StepStats, fit

log = logging.getLogger(__name__)


@dataclass
class AdaptiveResult:
    coded: CodedVideo  # the file that is kept
    adapted: bool  # False: adapters did not pay for themselves and were dropped
    base_cost: float  # lambda * 255^2 * MSE + bpp, every byte counted
    adapted_cost: float
    base_bytes: int
    adapted_bytes: int
    adapter_bytes: int
    steps: int
    fit_seconds: float
    total_seconds: float


def rd_cost(video: Video, coded: CodedVideo, lam: float, matrix: ColourMatrix) -> float:
    mse = float(np.mean([np.mean((source_rgb(f, matrix) - r) ** 2)
                         for f, r in zip(video.frames, coded.reconstruction)]))
    return lam * 255 ** 2 * mse + bpp(len(coded.data), video.width, video.height, len(video.frames))


def clip_tensor(video: Video, model: SSF, matrix: ColourMatrix) -> torch.Tensor:
    device = model_device(model)
    x = torch.cat([rgb_tensor(source_rgb(f, matrix), device) for f in video.frames])
    return pad_to(x, model.cfg.multiple)


def encode_adaptive(video: Video, model: SSF, entry: ZooEntry, quality: int, intra_period: int,
                    cfg: AdaptConfig, matrix: ColourMatrix = ColourMatrix.BT709,
                    on_step=None, base: CodedVideo | None = None) -> AdaptiveResult:
    """`base`: the base model's stream of the same clip and settings, if the caller already has it."""
    t0 = time.perf_counter()
    lam = model.cfg.lambdas[quality - 1]
    if base is None:
        base = encode(video, model, entry, quality, intra_period, matrix)
    base_cost = rd_cost(video, base, lam, matrix)
    t_fit = time.perf_counter()
    fitted = fit(model, clip_tensor(video, model, matrix), quality, intra_period, cfg,
                 on_step=_with_reference(on_step, base_cost))
    fit_seconds = time.perf_counter() - t_fit
    unit = make_unit(fitted.spec, fitted.sent, cfg.prior)
    payload = unit.write()
    with torch.no_grad():
        merged = apply_unit(model, unit)  # the decoder's own path to the adapted weights
        own = dict(merged.named_parameters())
        for name, value in fitted.encoder.items():  # encoder-only: never sent, never decoded
            own[name].copy_(value)
    adapted = encode(video, merged, entry, quality, intra_period, matrix, adapters=payload)
    adapted_cost = rd_cost(video, adapted, lam, matrix)
    keep = adapted_cost < base_cost
    if not keep:
        log.info("adapters dropped: cost %.4f >= base %.4f", adapted_cost, base_cost)
    return AdaptiveResult(adapted if keep else base, keep, base_cost, adapted_cost, len(base.data),
                          len(adapted.data), len(payload), len(fitted.history), fit_seconds,
                          time.perf_counter() - t0)


def _with_reference(on_step, base_cost: float):
    if on_step is None:
        return None

    def call(stats: StepStats) -> None:
        on_step(stats, base_cost)
    return call
