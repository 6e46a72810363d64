"""The adaptation loop: fit LoRA / DoRA adapters in the decoders to one clip.

Objective (per pixel of the clip): lambda * 255^2 * MSE + (latent bits + adapter bits) / pixels,
over the clip's own frames coded as they will be coded (I-frame, then unrolled P-frames). Each step
takes one random GOP and a random window (the same in every frame of it); the latent rate is scaled
to the whole frame and the adapter bits are spread over the whole clip, so the step's objective is
an unbiased estimate of the clip's. Sent tensors are rounded to the prior's
step in the forward pass (straight-through); their rate uses additive uniform noise, so its
gradient reaches them. Only B (and DoRA's magnitude deltas) are sent: A comes from the seed.
The hyper-latent z is rounded as it will be coded (straight-through), not noised.
The encoder-only transforms (g_a, h_a) may be fine-tuned too: the decoder never runs them, so they
cost no bits and leave decoding bit-exact. The iterate returned is the best one seen, not the
last: every `probe_every` steps the iterate is scored on a fixed window of the first GOP as it will
be coded (rounded latents, quantised adapters), the base included as step -1.
"""
from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from nvc.adapter_coding import SpikeSlabPrior, quantize_ste
from nvc.adapters import (
    AdaptedConv,
    AdapterKind,
    AdapterSpec,
    default_layers,
    default_ranks,
    inject,
    sent_tensors,
)
from nvc.codec import padded_hw, quantize_8bit
from nvc.errors import Stop, never
from nvc.io import ColourMatrix, Video, yuv_to_rgb
from nvc.models.ssf import SSF
from nvc.rd import likelihood_bits, mse_per_sample, psnr_db, rd_cost
from nvc.roi import Masks
from nvc.schedule import FLAT, GopSchedule
from nvc.task import TaskTerm

log = logging.getLogger(__name__)


@dataclass
class AdaptConfig:
    kind: AdapterKind = AdapterKind.LORA
    steps: int = 300
    seconds: float | None = None  # wall-clock budget; whichever of steps/seconds ends first
    lr: float = 5e-4  # measured: 2e-3 pushed most values out of the zero bin (more bytes, less gain)
    layers: tuple[str, ...] | None = None  # default: every transposed conv of the decoders
    ranks: tuple[int, ...] | None = None  # default: 16/8/8/2 by depth
    seed: int = 1
    window: int = 256  # fitting window (px, multiple of 64), clipped to the frame
    patience: int = 60  # steps without a better smoothed objective before stopping
    probe_every: int = 10  # steps between scorings of the iterate on the fixed probe window
    encoder: bool = True  # also fine-tune the encoder-only transforms (g_a, h_a): free, never sent
    encoder_lr: float = 1e-4
    force: bool = False  # keep the adapters even when they do not lower the clip's RD cost
    # The base's own best ladder position for the quality's lambda (a uniform quality map, or a
    # spatial one moved as a whole) is searched in steps of this many rungs, at most one rung
    # either way, before fitting; the adapters must beat the base there. 0: fit and judge at the
    # rung. See adapt.encode.best_base.
    position_step: float = 0.25
    task_weight: float = 0.5  # beta of (1 - beta) * MSE + beta * FMSE, when a task model is given
    prior: SpikeSlabPrior = field(default_factory=SpikeSlabPrior)


@dataclass
class StepStats:
    step: int
    objective: float
    bpp: float
    psnr_db: float
    adapter_bits: float


def encoder_only_parameters(model: SSF) -> dict[str, Tensor]:
    """Parameters of the analysis transforms and hyper-analyses, which only the encoder runs."""
    return {n: p for n, p in model.named_parameters() if ".g_a." in f".{n}" or ".h_a." in f".{n}"}


def make_spec(model: SSF, cfg: AdaptConfig) -> AdapterSpec:
    layers = list(cfg.layers or default_layers(model))
    ranks = list(cfg.ranks or default_ranks(layers))
    return AdapterSpec(cfg.kind, tuple(layers), tuple(ranks), cfg.seed)


def clip_objective(model: SSF, frames: Tensor, q: int | Tensor, intra_period: int, lam: float,
                   full_pixels: int, adapter_bits: Tensor, clip_frames: int | None = None,
                   weights: Tensor | None = None, task: TaskTerm | None = None,
                   schedule: GopSchedule = FLAT, intra: Sequence[bool] | None = None
                   ) -> tuple[Tensor, dict]:
    """frames: (t, 3, h, w) window of one GOP (or more) of the padded clip, starting at an I-frame;
    weights: (t, 1, h, w) per-pixel distortion weights of the same window (ROI), or None; task: a
    task model's term of the distortion (nvc.task.TaskTerm), or None; schedule: the stream's GOP
    quality schedule (each frame's q as the coder will use it); intra: which of the window's frames
    the coder codes as I-frames beyond each GOP's first (adaptive I-frames), or None: none.
    Returns the per-pixel RD objective; the adapter bits are spread over all `clip_frames`."""
    t, _, h, w = frames.shape
    mse, dist, latent_bits, ref = [], [], frames.new_zeros(()), None
    for i in range(t):
        x, q_i = frames[i: i + 1], schedule.frame_q(q, i % intra_period, intra_period, frames.device)
        # the first frame is an I-frame by construction
        if ref is None or i % intra_period == 0 or (intra is not None and intra[i]):
            out = model.forward_intra(x, q_i)
        else:
            out = model.forward_inter(x, ref, q_i)
        ref = out.x_hat
        weight = None if weights is None else weights[i: i + 1]
        mse.append(mse_per_sample(out.x_hat, x, weight)[0])
        dist.append(mse[-1] if task is None else task.distortion(mse[-1].reshape(1), out.x_hat, x)[0])
        latent_bits = latent_bits + likelihood_bits(out.likelihoods)[0]
    mse_t = torch.stack(mse)
    scale = full_pixels / (h * w)  # the window's latent bits stand for the whole frame's
    latent_bpp = latent_bits * scale / (full_pixels * t)
    adapter_bpp = adapter_bits / (full_pixels * (clip_frames or t))
    objective = rd_cost(lam, torch.stack(dist).mean(), latent_bpp + adapter_bpp)
    return objective, {"bpp": float((latent_bpp + adapter_bpp).detach()),
                       "psnr_db": float(psnr_db(mse_t).mean().detach())}


@dataclass
class Fitted:
    spec: AdapterSpec
    sent: list[Tensor]  # the fitted sent tensors, not yet quantised
    encoder: dict[str, Tensor]  # fine-tuned encoder-only parameters (empty if not fitted)
    history: list[StepStats]
    best_step: int = -1  # the step whose iterate `sent` and `encoder` are (-1: the base)
    probes: list[tuple[int, float]] = field(default_factory=list)  # (step, probe score), base = -1


class Plateau:
    """Early stopping on an exponentially smoothed objective: stalled after `patience` steps
    without the smoothed value falling by more than `tolerance`."""

    def __init__(self, patience: int, smoothing: float = 0.9, tolerance: float = 1e-4):
        self.patience, self.smoothing, self.tolerance = patience, smoothing, tolerance
        self.best, self.since_best = float("inf"), 0
        self.smoothed: float | None = None

    def update(self, objective: float) -> None:
        s = self.smoothed
        self.smoothed = objective if s is None else self.smoothing * s + (1 - self.smoothing) * objective
        if self.smoothed < self.best - self.tolerance:
            self.best, self.since_best = self.smoothed, 0
        else:
            self.since_best += 1

    @property
    def stalled(self) -> bool:
        return self.since_best >= self.patience


def sample_window(gen: torch.Generator, frames: int, height: int, width: int, window: tuple[int, int],
                  intra_period: int) -> tuple[int, int, int]:
    """(first frame, top, left) of a random fitting window: the start of any GOP of the clip and
    any position of the window inside the (padded) frame."""
    y0 = int(torch.randint(0, height - window[0] + 1, (1,), generator=gen))
    x0 = int(torch.randint(0, width - window[1] + 1, (1,), generator=gen))
    g0 = intra_period * int(torch.randint(0, (frames - 1) // intra_period + 1, (1,), generator=gen))
    return g0, y0, x0


class Windows:
    """A clip's padded frames (or per-pixel maps) as the fit sees them, read a window at a time
    instead of held whole: `shape` (T, C, H', W') and `device` as a tensor of the padded clip would
    have them, and `crop`, what slicing that tensor would give (the same values; tested)."""

    def __init__(self, frames: int, channels: int, height: int, width: int, multiple: int,
                 device: torch.device):
        self.height, self.width, self.device = height, width, device
        self.shape = (frames, channels, *padded_hw(height, width, multiple))

    def crop(self, g0: int, count: int, y0: int, x0: int, window: tuple[int, int]) -> Tensor:
        rows = np.minimum(np.arange(y0, y0 + window[0]), self.height - 1)  # replicate padding
        cols = np.minimum(np.arange(x0, x0 + window[1]), self.width - 1)
        out = [self.pixels(i, rows, cols) for i in range(g0, min(g0 + count, self.shape[0]))]
        return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).to(self.device)

    def pixels(self, index: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Frame `index` at `rows` x `cols` of the unpadded frame: (rows, cols, C) float32."""
        raise NotImplementedError


class VideoWindows(Windows):
    """The frames of `video` in RGB, only the window's pixels converted."""

    def __init__(self, video: Video, matrix: ColourMatrix, multiple: int, device: torch.device):
        super().__init__(len(video.frames), 3, video.height, video.width, multiple, device)
        self.video, self.matrix = video, matrix

    def pixels(self, index: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return quantize_8bit(yuv_to_rgb(self.video.frames[index], self.matrix, rows=rows,
                                        cols=cols))


class MapWindows(Windows):
    """Per-pixel maps (T, H, W), e.g. an ROI's distortion weights (a broadcast view stays one;
    nvc.roi.FrameMaps are made a frame at a time)."""

    def __init__(self, maps: Masks, multiple: int, device: torch.device):
        super().__init__(maps.shape[0], 1, maps.shape[1], maps.shape[2], multiple, device)
        self.maps = maps

    def pixels(self, index: int, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return self.maps[index][np.ix_(rows, cols)][..., None].astype(np.float32)


Clip = Tensor | Windows


def _crop(t: Clip, g0: int, count: int, y0: int, x0: int, window: tuple[int, int]) -> Tensor:
    if isinstance(t, Windows):
        return t.crop(g0, count, y0, x0, window)
    return t[g0: g0 + count, :, y0: y0 + window[0], x0: x0 + window[1]]


def fit(model: SSF, frames: Clip, quality: int, intra_period: int, cfg: AdaptConfig,
        on_step: Callable[[StepStats], None] | None = None,
        weights: Clip | None = None, task: TaskTerm | None = None,
        position: float | None = None, schedule: GopSchedule = FLAT,
        intra: Sequence[bool] | None = None, lam: float | None = None,
        stop: Stop = never) -> Fitted:
    """frames: (T, 3, H, W) padded clip in [0, 1], or a VideoWindows reading it; the objective's
    lambda is `lam` (None: the rung `quality`'s), its gains those of `position` on the ladder (0 =
    quality 1; None: the rung), each frame moved from there by the GOP `schedule` as the coder
    moves it; weights: (T, 1, H, W) per-pixel distortion weights (ROI; mean 1 a frame; or
    MapWindows reading them) or None for plain MSE; task: a task model's term of the distortion
    (nvc.task.TaskTerm) or None;
    intra: (T,) whether the coder codes each frame as an I-frame (the base's stream says; adaptive
    I-frames), None: only each GOP's first; stop: asked before each step, True ends the fit there
    as its time budget would (the step just taken probed; a Ctrl-C, nvc.cli).
    The same clip and settings give the same adapters: the rate proxy's noise is drawn from the
    global generator, seeded here from cfg.seed (its state outside is restored); torch seeds it
    anew in every process, and two runs of one benchmark kept different files (measured: 3,527 and
    3,230 bytes, BasketballPass q1, 4 frames, 40 steps)."""
    cuda = [frames.device] if frames.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(cfg.seed)
        return _fit(model, frames, quality, intra_period, cfg, on_step, weights, task, position,
                    schedule, intra, model.cfg.lambdas[quality - 1] if lam is None else lam, stop)


def _fit(model: SSF, frames: Clip, quality: int, intra_period: int, cfg: AdaptConfig,
         on_step: Callable[[StepStats], None] | None, weights: Clip | None,
         task: TaskTerm | None, position: float | None, schedule: GopSchedule,
         intra: Sequence[bool] | None, lam: float, stop: Stop) -> Fitted:
    spec = make_spec(model, cfg)
    work = copy.deepcopy(model)
    work.requires_grad_(False)
    wrappers: list[AdaptedConv] = inject(work, spec)
    params = sent_tensors(wrappers)
    for p in params:
        p.requires_grad_(True)
    step_size = cfg.prior.step
    for wr in wrappers:
        wr.sent_transform = lambda t: quantize_ste(t, step_size)
    work.train()  # noise-proxy likelihoods of y, so the latent rate has gradients
    for codec in work.latent_codecs():
        codec.round_z = True
    groups = [{"params": params, "lr": cfg.lr}]
    encoder = encoder_only_parameters(work) if cfg.encoder else {}
    if encoder:
        for tensor in encoder.values():
            tensor.requires_grad_(True)
        groups.append({"params": list(encoder.values()), "lr": cfg.encoder_lr})
    opt = torch.optim.Adam(groups)
    q: int | Tensor = quality - 1 if position is None else torch.full(
        (1, 1, 1, 1), float(position), device=frames.device)  # a uniform quality map
    t, _, hp, wp = frames.shape
    win = (min(cfg.window, hp), min(cfg.window, wp))
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[StepStats] = []
    plateau = Plateau(cfg.patience)
    y_c, x_c = (hp - win[0]) // 2, (wp - win[1]) // 2  # the probe: the first GOP's centre
    probe_window = _crop(frames, 0, intra_period, y_c, x_c, win)
    probe_weights = None if weights is None else _crop(weights, 0, intra_period, y_c, x_c, win)
    probes: list[tuple[int, float]] = []

    def probe(step: int) -> float:
        work.eval()
        with torch.no_grad():
            bits = cfg.prior.bits(quantize_ste(torch.cat([p.reshape(-1) for p in params]),
                                               step_size), noisy=False)
            cost, _ = clip_objective(work, probe_window, q, intra_period, lam, hp * wp, bits,
                                     clip_frames=t, weights=probe_weights, task=task,
                                     schedule=schedule, intra=None if intra is None else
                                     intra[:intra_period])
        work.train()
        probes.append((step, float(cost)))
        return float(cost)

    best_probe = probe(-1)  # the base (adapters at zero): a safe fallback
    best_sent = [p.detach().clone() for p in params]
    best_encoder = {n: p.detach().clone() for n, p in encoder.items()}
    best_step = -1
    t0 = time.perf_counter()

    def ended() -> bool:  # a Ctrl-C, or the time budget spent
        return stop() or cfg.seconds is not None and time.perf_counter() - t0 > cfg.seconds
    for step in range(cfg.steps):
        if ended():
            break
        g0, y0, x0 = sample_window(gen, t, hp, wp, win, intra_period)
        window = _crop(frames, g0, intra_period, y0, x0, win)  # one GOP
        window_weights = None if weights is None else _crop(weights, g0, intra_period, y0, x0, win)
        adapter_bits = cfg.prior.bits(torch.cat([p.reshape(-1) for p in params]))
        objective, info = clip_objective(work, window, q, intra_period, lam, hp * wp, adapter_bits,
                                         clip_frames=t, weights=window_weights, task=task,
                                         schedule=schedule, intra=None if intra is None else
                                         intra[g0: g0 + intra_period])
        if not torch.isfinite(objective):
            log.warning("adaptation stopped at step %d: non-finite objective", step)
            break
        opt.zero_grad()
        objective.backward()
        opt.step()
        stats = StepStats(step, float(objective.detach()), info["bpp"], info["psnr_db"],
                          float(adapter_bits.detach()))
        history.append(stats)
        if on_step:
            on_step(stats)
        plateau.update(stats.objective)
        last = step == cfg.steps - 1 or plateau.stalled or ended()
        if (step + 1) % cfg.probe_every == 0 or last:
            score = probe(step)
            if score < best_probe and math.isfinite(score):
                best_probe, best_step = score, step
                best_sent = [p.detach().clone() for p in params]
                best_encoder = {n: p.detach().clone() for n, p in encoder.items()}
        if plateau.stalled:
            log.info("adaptation stopped at step %d: objective no longer falling", step)
            break
    if not all(torch.isfinite(t).all() for t in best_sent + list(best_encoder.values())):
        best_sent, best_encoder = [torch.zeros_like(t) for t in best_sent], {}  # send nothing
    return Fitted(spec, best_sent, best_encoder, history, best_step, probes)
