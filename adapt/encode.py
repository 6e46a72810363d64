"""Encode with adaptation: the base's best file for the quality's lambda, a fit from there, then
the clip coded with the adapters and with the encoder-only fine-tuning alone (free: nothing is
sent); the file of lowest RD cost is kept.

The base's best file is searched along the ladder (`best_base`): the rungs are not the RD optimum
of every clip at their own lambdas (BasketballPass, ssf-small-v7: the cost at lambda 1 still falls
half a rung above rung 1), and adapters judged against the rung win by moving along the base's
curve, which buys nothing a plain encode at another quality would not."""
from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from nvc import bitstream
from nvc.adapted import apply_unit, make_unit
from nvc.adapters import LAYER_TABLE
from nvc.bitstream import FrameType, QualityMap, Synthesis
from nvc.codec import CodedVideo, Progress, encode, padded_hw, quality_argument, scaled_objective, source_rgb
from nvc.errors import Stop, never
from nvc.io import ColourMatrix, Video, random_access
from nvc.metrics import bpp
from nvc.models.config import LADDER_BELOW
from nvc.models.ssf import SSF, model_device
from nvc.objective import Objective
from nvc.rd import ladder_lambda, task_distortion
from nvc.rd import rd_cost as _rd_cost
from nvc.refine import Effort
from nvc.roi import Masks, shifted_quality_map, uniform_position, uniform_quality_map
from nvc.schedule import GopSchedule, resolve
from nvc.task import TaskModel, TaskScores, TaskTerm
from nvc.zoo import ZooEntry

from .loop import AdaptConfig, MapWindows, StepStats, VideoWindows, fit

log = logging.getLogger(__name__)


@dataclass
class AdaptiveResult:
    coded: CodedVideo  # the file that is kept
    adapted: bool  # False: adapters did not pay for themselves and were dropped
    mode: str  # what the kept file used: "adapters", "encoder-only" or "base"
    base_cost: float  # lambda * 255^2 * MSE + bpp, every byte counted
    adapted_cost: float | None  # None: not coded (the fit found nothing better than the base)
    base_bytes: int
    adapted_bytes: int | None
    adapter_bytes: int
    steps: int
    fit_seconds: float
    total_seconds: float
    position: float  # ladder position every candidate was coded at (0 = quality 1)
    candidates: dict[str, tuple[int, float]]  # each file tried: (bytes, RD cost)
    base: CodedVideo  # the base's file at the rung: what the encoder writes without --adapt


class ClipCost:
    """A coded clip's RD cost (lambda * 255^2 * D + bpp, every byte of the file), its distortion
    gathered one reconstruction at a time in the clip's order (`add`, e.g. as the coder makes
    them), so that no clip is held. `weights` (frames, H, W), mean 1 a frame, weight the squared
    error pixel by pixel (ROI); `task` adds the task model's term (the same distortion as the
    fit's)."""

    def __init__(self, video: Video, matrix: ColourMatrix, weights: Masks | None = None,
                 task: TaskTerm | None = None):
        self.video, self.matrix, self.weights, self.task = video, matrix, weights, task
        self._sources = iter(video.frames)  # read in step with the reconstructions
        self.mse: list[float] = []
        self.task_scores = None if task is None else TaskScores(task.model)

    def add(self, rgb: np.ndarray) -> None:
        src = source_rgb(next(self._sources), self.matrix)
        err = (src - rgb) ** 2
        if self.weights is not None:
            err = err * self.weights[len(self.mse)][..., None]
        self.mse.append(float(np.mean(err)))
        if self.task_scores is not None:
            self.task_scores.add(src, rgb)

    def cost(self, num_bytes: int, lam: float) -> float:
        if len(self.mse) != len(self.video.frames):
            raise ValueError(f"{len(self.mse)} of {len(self.video.frames)} frames were scored")
        mse = float(np.mean(self.mse))
        d = mse if self.task is None or self.task_scores is None else task_distortion(
            mse, self.task_scores.result()["fmse"], self.task.weight, self.task.scale)
        rate = bpp(num_bytes, self.video.width, self.video.height, len(self.video.frames))
        return float(_rd_cost(lam, torch.as_tensor(d), torch.as_tensor(rate)))


def rd_cost(video: Video, coded: CodedVideo, lam: float, matrix: ColourMatrix,
            weights: Masks | None = None, task: TaskTerm | None = None) -> float:
    """The clip's RD cost as coded (ClipCost) from the reconstructions it kept."""
    scored = ClipCost(video, matrix, weights, task)
    for rgb in coded.reconstruction:
        scored.add(rgb)
    return scored.cost(len(coded.data), lam)


@dataclass
class BaseChoice:
    position: float  # on the ladder, 0 = quality 1
    qmap: QualityMap | None  # the map coded: uniform at the position, or the caller's map shifted
    # there from the rung; at the rung itself, the caller's map (None: none)
    coded: CodedVideo
    cost: float


def best_base(rung: BaseChoice, encode_at: Callable[[float], BaseChoice], step: float,
              lowest: float, highest: float, stop: Stop = never
              ) -> BaseChoice:
    """The base's file of lowest RD cost among ladder positions `step` apart from the rung's, within
    [lowest, highest]: up while the cost falls, else down (the cost is taken to have one minimum
    along the ladder); one base encode a position, two when the rung is already the best. Once
    `stop()` says so, the best so far (asked before each encode)."""
    best = rung
    for direction in (1, -1):
        p = rung.position + direction * step
        while lowest - 1e-9 <= p <= highest + 1e-9 and not stop():
            tried = encode_at(p)
            if tried.cost >= best.cost:
                break
            best, p = tried, p + direction * step
        if best is not rung:
            break
    return best


def encode_adaptive(video: Video, model: SSF, entry: ZooEntry, quality: int, intra_period: int,
                    cfg: AdaptConfig, matrix: ColourMatrix = ColourMatrix.BT709,
                    on_step=None, weights: Masks | None = None,
                    task: TaskModel | None = None, qmap: QualityMap | None = None,
                    synthesis: Synthesis = Synthesis.FLOAT32,
                    schedule: GopSchedule | None = None,
                    adaptive_intra: bool = True, refine: Effort = 0,
                    progress: Callable[[str], Progress] = lambda what: iter,
                    stop: Stop = never) -> AdaptiveResult:
    """`progress(what)`: wraps the frames of each candidate file's coding (what: "base", "base at
    quality 2.25", "adapted", "encoder-only"), e.g. in a progress bar.
    `weights`: per-pixel distortion weights (frames, H, W) from nvc.roi, and `task`: a task model
    (nvc.task, weighted by cfg.task_weight), used by the fit, by the keep-or-drop decision and by
    every candidate's coder (refinement and frame types; the weights there only without `qmap`:
    nvc.objective.Objective.for_coding) alike, with one scale for the task's term (the first
    frame's, nvc.objective); None for plain MSE. `qmap`: the spatial
    quality map (nvc.roi.quality_map) of the rung; the search for the base's best position moves
    it along the ladder as a whole, and every candidate is coded with the map found (the fit
    itself runs at the uniform position). Without ROI `weights`, a uniform `qmap` is a quality
    between the rungs (nvc.roi.rate_point: `quality` its nearest rung): the lambda is its
    position's (nvc.rd.ladder_lambda) and the search and the fit start there.
    `synthesis`: the stream's synthesis precision (the fit runs in float32); `schedule`: the GOP's
    quality schedule (nvc.schedule), coded and fitted alike; None: the default for each position
    the search codes, slid with it as `nvc encode --quality 2.5` slides it (with ROI `weights`,
    the rung's);
    `adaptive_intra`: every candidate may code frames between the GOP's I-frames as I-frames
    (nvc.codec.code_frames; the fit codes intra the frames the base's best file codes intra);
    `refine`: gradient steps on every candidate's latents before they are coded (nvc.refine; the
    fit itself fits to the analysis transforms' latents). `stop`: True ends the adaptation where
    it is (a Ctrl-C, nvc.cli): the search for the base's position keeps the best tried, the fit
    the best adapters probed, and the candidates are coded and the cheapest kept as ever."""
    t0 = time.perf_counter()
    video = random_access(video)  # the fit reads windows of any GOP (a no-op where it can already)
    # A quality between the rungs (nvc.roi.rate_point: the nearest rung and a uniform map) codes the
    # whole clip at its position: the lambda, the search and the fit start there; a region's map
    # (ROI weights) at the rung's lambda.
    rung = float(quality - 1)
    if qmap is not None and weights is None:
        rung = uniform_position(qmap, rung)
    fixed = schedule

    def schedule_at(position: float) -> GopSchedule:
        """The schedule given, else the default slid to `position` as `nvc encode --quality`
        slides it (a region's map keeps its rung's)."""
        at = rung if qmap is not None and weights is not None else position
        return resolve(fixed, at + 1, model.cfg.num_qualities, intra_period)
    schedule = schedule_at(rung)
    # a rung's lambda exactly as ever (the log-linear one differs in the last bits there)
    lam = model.cfg.lambdas[quality - 1] if rung == quality - 1 else \
        float(ladder_lambda(model.cfg.lambdas, torch.tensor(rung)))

    objective = Objective.for_coding(weights, qmap is not None, task, cfg.task_weight)
    if task is not None:  # FMSE in the MSE's units, from the first frame (nvc.objective)
        device = model_device(model)
        q0 = schedule.frame_q(quality_argument(quality, qmap, device), 0, intra_period, device)
        objective = scaled_objective(objective, model, source_rgb(video.frames[0], matrix), q0,
                                     synthesis, bitstream.DEFAULT_PROFILE)
    term = objective.term

    def code(what: str, coder: SSF, qmap: QualityMap | None, schedule: GopSchedule,
             adapters: bytes | None = None) -> tuple[CodedVideo, float]:
        """The clip as this encoder writes it, every candidate with the same settings, and its RD
        cost, scored frame by frame as coded (the reconstructions are not kept)."""
        scored = ClipCost(video, matrix, weights, term)
        coded = encode(video, coder, entry, quality, intra_period, matrix, adapters=adapters,
                       qmap=qmap, synthesis=synthesis, schedule=schedule,
                       adaptive_intra=adaptive_intra, refine=refine, objective=objective,
                       keep=False, on_reconstruction=scored.add, progress=progress(what))
        return coded, scored.cost(len(coded.data), lam)

    choice = at_rung = BaseChoice(rung, qmap, *code("base", model, qmap, schedule))
    if cfg.position_step > 0:
        padded = padded_hw(video.height, video.width, model.cfg.multiple)
        qualities = model.cfg.num_qualities

        def encode_at(position: float) -> BaseChoice:
            moved = (uniform_quality_map(position, padded) if qmap is None else
                     shifted_quality_map(qmap, position - rung, qualities))  # a spatial map (ROI)
            return BaseChoice(position, moved, *code(f"base at quality {position + 1:g}", model,
                                                     moved, schedule_at(position)))
        choice = best_base(choice, encode_at, cfg.position_step,
                           max(rung - 1, -LADDER_BELOW), min(rung + 1, qualities - 1), stop)
        if choice.position != rung:
            log.info("the base's best position for the lambda of quality %g: quality %.2f (RD "
                     "cost %.4f)", rung + 1, choice.position + 1, choice.cost)
    base, base_cost, qmap = choice.coded, choice.cost, choice.qmap
    schedule = schedule_at(choice.position)  # the fit's and every candidate's from here
    device, multiple = model_device(model), model.cfg.multiple
    t_fit = time.perf_counter()
    fitted = fit(model, VideoWindows(video, matrix, multiple, device), quality, intra_period, cfg,
                 on_step=_with_reference(on_step, base_cost), task=term, lam=lam,
                 weights=None if weights is None else MapWindows(weights, multiple, device),
                 position=None if choice.position == quality - 1 else choice.position,
                 schedule=schedule,
                 intra=[f.kind == FrameType.I for f in bitstream.unpack(base.data).frames],
                 stop=stop)
    fit_seconds = time.perf_counter() - t_fit
    unit = make_unit(fitted.spec, fitted.sent, cfg.prior)
    payload = unit.write(LAYER_TABLE)

    def result(mode: str, kept: CodedVideo, adapted: CodedVideo | None, adapted_cost: float | None,
               candidates: list[tuple[str, CodedVideo, float]]) -> AdaptiveResult:
        return AdaptiveResult(kept, mode == "adapters", mode, base_cost, adapted_cost, len(base.data),
                              None if adapted is None else len(adapted.data), len(payload),
                              len(fitted.history), fit_seconds, time.perf_counter() - t0,
                              choice.position, {name: (len(c.data), cost) for name, c, cost in
                                                candidates}, at_rung.coded)
    if fitted.best_step < 0 and not cfg.force:
        # No probe beat the base's (a fit stopped before its first probe, or one that never
        # helped): the adapters sent would be zeros and the encoder the base's, so the adapted
        # file is the base's with an adapter unit more, and the encoder-only one is the base's.
        log.info("adapters dropped: the fit found none better than the base (%d steps)",
                 len(fitted.history))
        return result("base", base, None, None, [("base", base, base_cost)])
    merged = _with_encoder(apply_unit(model, unit), fitted.encoder)  # the decoder's own path
    adapted, adapted_cost = code("adapted", merged, qmap, schedule, payload)
    candidates = [("base", base, base_cost), ("adapters", adapted, adapted_cost)]  # ties: base
    if fitted.encoder and not cfg.force:
        # The encoder-only fine-tuning alone costs no bits: it can beat the adapters' file too
        # (BasketballPass, v7: every full fine-tuning file kept was encoder-only).
        candidates.append(("encoder-only", *code("encoder-only", _with_encoder(model, fitted.encoder),
                                                  qmap, schedule)))
    mode, kept, kept_cost = candidates[1] if cfg.force else min(candidates, key=lambda c: c[2])
    if mode != "adapters":
        log.info("adapters dropped (RD cost %.4f): kept %s (%.4f)", adapted_cost, mode, kept_cost)
    return result(mode, kept, adapted, adapted_cost, candidates)


def _with_encoder(model: SSF, encoder: dict[str, torch.Tensor]) -> SSF:
    """`model` (a copy when anything changes) with the fine-tuned encoder-only parameters: never
    sent, never run by the decoder."""
    if not encoder:
        return model
    out = copy.deepcopy(model)
    with torch.no_grad():
        own = dict(out.named_parameters())
        for name, value in encoder.items():
            own[name].copy_(value)
    return out


def _with_reference(on_step, base_cost: float):
    if on_step is None:
        return None

    def call(stats: StepStats) -> None:
        on_step(stats, base_cost)
    return call
