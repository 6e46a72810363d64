"""encode(video, model) -> bytes, with real entropy coding; decoding.py is the mirror.

The encoder reconstructs every frame through the decoder's own path (`SSF.compress_*` return what
`SSF.decompress` will produce), so a decoder with the same weights reproduces it bit-exactly.
"""
from __future__ import annotations

import hashlib
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import InitVar, dataclass, field, replace
from fractions import Fraction
from functools import partial
from typing import BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import bitstream, memory
from .bitstream import (
    DEFAULT_PROFILE,
    FORMAT_VERSION,
    HASH_PREFIX_BYTES,
    LIMITS,
    CodedFrame,
    NumericProfile,
    QualityMap,
    SequenceHeader,
    Synthesis,
)
from .errors import MAX_THREADS, BitstreamError, InputError, NvcError, Stop, env_int, never
from .io import (
    ColourMatrix,
    Video,
    YUVFrame,
    frame_count,
    yuv_to_rgb,
)
from .metrics import bpp
from .models.ssf import SSF, model_device
from .objective import PLAIN, PLAIN_STREAM, FrameObjective, Objective
from .rd import rd_cost
from .refine import Effort, Refinement, Target, as_refinement, refined_inter, refined_intra
from .schedule import FLAT, GopSchedule, header_fields, resolve
from .workers import let_go
from .zoo import ZooEntry

Progress = Callable[[Iterable], Iterable]
# The coder's arithmetic is pinned to this many intra-op threads on both sides: CPU kernels split
# their sums by thread count, so a decoder with another count than the encoder's drifts (measured:
# BasketballPass decoded with 1 and with 2 threads differed in 5 of 6 frames). NVC_CODING_THREADS
# overrides it; streams then decode bit-exactly only where both sides use the same value.
CODING_THREADS = env_int("NVC_CODING_THREADS", 1, minimum=1, maximum=MAX_THREADS)
# Where a P-frame is also tried as an I-frame (adaptive I-frames), the trial runs on a second thread
# beside it (each computes what it would alone, so the bytes do not depend on it); 0 runs them in
# turn on one (the default on a one-core machine). NVC_PARALLEL_TRIAL overrides it.
PARALLEL_TRIAL = env_int("NVC_PARALLEL_TRIAL", 1 if (os.cpu_count() or 1) > 1 else 0, maximum=1)
# Refinement keeps a frame's synthesis activations for its backward pass, so two candidates refined
# side by side hold twice that: above this many pixels (or where nvc.memory says two do not fit) a
# frame's refined candidates are coded in turn (measured, street scaled to 3840x2160, 2 frames,
# --refine 1: peak RSS 12.6 GB beside, 8.8 GB in turn, 4.4 GB unrefined (2.8-3.2 GB since the analysis
# and synthesis run in stripes); 1080p beside: 4.4 GB). The same bytes either way.
REFINE_BESIDE_MAX_PIXELS = 1920 * 1088
# Adaptive I-frames look one frame ahead: a frame whose I-frame costs less than (1 +
# LOOK_AHEAD_GATE) times its P-frame is decided by what it and the next frame cost together
# (code_frames). NVC_LOOK_AHEAD=0 decides each frame by its own cost alone.
LOOK_AHEAD = env_int("NVC_LOOK_AHEAD", 1, maximum=1)
# A bound on time, not on the choice: the frames a look-ahead moved to intra had I-frames 1.05 to
# 1.24 times their P-frames' cost (evaluation clips; 0.5 and 1.0 wrote the same files).
LOOK_AHEAD_GATE = 0.5


@contextmanager
def pinned_threads() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(CODING_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


SYNTHESIS_DTYPES = {Synthesis.FLOAT32: torch.float32, Synthesis.BFLOAT16: torch.bfloat16}


@contextmanager
def coding(model: SSF, synthesis: Synthesis) -> Iterator[None]:
    """Around each frame, on both sides: the pinned thread count and the stream's synthesis
    precision (set per frame, so an encoder and a decoder may share the model)."""
    with pinned_threads(), model.synthesis_in(SYNTHESIS_DTYPES[synthesis]):
        yield


def no_progress(it: Iterable) -> Iterable:
    return it


@dataclass
class CodedVideo:
    data: bytes
    reconstruction: list[np.ndarray]  # RGB float32 (H, W, 3) in [0, 1], 8-bit quantised; empty
    # where encode was asked not to keep them
    frame_bytes: list[int] = field(default_factory=list)  # each frame unit, framing included
    seconds: float = 0.0
    digests: list[bytes] = field(default_factory=list)  # frame_digest of each reconstruction


def frame_digest(rgb: np.ndarray) -> bytes:
    """A reconstruction's identity bit for bit: what a decoder's frame is checked against."""
    return hashlib.sha256(rgb.tobytes()).digest()


def quantize_8bit(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 1) * 255).astype(np.float32) / 255


def source_rgb(frame: YUVFrame, matrix: ColourMatrix = ColourMatrix.BT709) -> np.ndarray:
    """What nvc codes and measures against: the source in RGB, quantised to 8 bits like a PNG."""
    return quantize_8bit(yuv_to_rgb(frame, matrix))


def padded_hw(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The frame size the model codes: (height, width) rounded up to `multiple` (see pad_to)."""
    return height + (-height) % multiple, width + (-width) % multiple


def pad_to(x: Tensor, multiple: int) -> Tensor:
    """Replicate-pad (B, C, H, W) on the bottom/right to multiples of `multiple`."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    return F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x


def rgb_tensor(rgb: np.ndarray, device: torch.device) -> Tensor:
    """(H, W, 3) float RGB as a (1, 3, H, W) tensor on `device`."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].to(device)


def to_numpy(x: Tensor, h: int, w: int) -> np.ndarray:
    """(1, 3, H', W') -> RGB float32 (h, w, 3), 8-bit quantised: the same values as quantize_8bit
    (the same IEEE operations; tested), but rounded to uint8 where the model runs: a GPU sends a
    quarter of the bytes and leaves the host two passes over the frame instead of five (on this
    project's CPU both forms take 7-8 ms a 1080p frame)."""
    u8 = x[0, :, :h, :w].permute(1, 2, 0).float().clamp(0, 1).mul_(255).round_().to(torch.uint8)
    out = u8.contiguous().cpu().numpy().astype(np.float32)
    out /= 255
    return out


def weights_hash(entry: ZooEntry) -> bytes:
    return bytes.fromhex(entry.sha256)[:HASH_PREFIX_BYTES]


def _check_settings(video: Video, model: SSF, quality: int, intra_period: int) -> None:
    if frame_count(video) == 0:
        raise InputError("no frames to encode")
    if (frame_count(video) or 0) > LIMITS.max_frames:
        raise InputError(f"{frame_count(video)} frames are more than a stream holds "
                         f"({LIMITS.max_frames}, a day at 60 fps); code part of it with --frames")
    if not 1 <= quality <= model.cfg.num_qualities:
        raise InputError(f"quality must be 1..{model.cfg.num_qualities}, got {quality}")
    if not 1 <= intra_period <= LIMITS.max_frames:  # a longer one would not read back
        raise InputError(f"intra period must be 1..{LIMITS.max_frames}, got {intra_period}")


def sequence_header(video: Video, model: SSF, entry: ZooEntry, quality: int, intra_period: int,
                    matrix: ColourMatrix, profile: NumericProfile = DEFAULT_PROFILE,
                    synthesis: Synthesis = Synthesis.FLOAT32,
                    schedule: GopSchedule = FLAT) -> SequenceHeader:
    fps = Fraction(video.fps).limit_denominator(1 << 20)
    if not 0 < fps <= LIMITS.max_fps:  # a stream nvc decode would refuse: none is written
        raise InputError(f"{video.source or 'the input'}: a frame rate of {float(video.fps):.3g} "
                         f"fps lies outside the format's range (1/{1 << 20} to {LIMITS.max_fps}); "
                         "set one with --fps")
    model.tables_for(FORMAT_VERSION)  # the stream is coded with, and records, its format's tables
    header = SequenceHeader(entry.model_id, weights_hash(entry), video.width, video.height,
                            fps.numerator, fps.denominator, frame_count(video) or 0,  # 0: live
                            intra_period, quality, int(matrix), profile, model.tables_crc(),
                            synthesis, **header_fields(schedule),
                            sample_aspect=(video.aspect.numerator, video.aspect.denominator)
                            if video.aspect else (1, 1))
    try:  # what the checks above do not name: still no stream its decoder would refuse
        SequenceHeader.read(header.write(FORMAT_VERSION), FORMAT_VERSION)
    except BitstreamError as e:
        raise InputError(f"{video.source or 'the input'}: its stream would not read back ({e})") \
            from None
    return header


def quality_argument(quality: int, qmap: QualityMap | None, device: torch.device
                     ) -> int | Tensor:
    """What the model's coder takes as q: the quality index, or the map's positions (1, 1, h, w)."""
    if qmap is None:
        return quality - 1
    from .roi import map_positions

    return torch.from_numpy(map_positions(qmap))[None, None].to(device)


@dataclass
class Candidates:
    """A frame between a GOP's I-frames coded as a P-frame and as an I-frame, with the RD cost of
    each at the frame's lambda (frame_cost, under the frame's objective)."""
    lam: float | Tensor
    src: np.ndarray  # (h, w, 3) the frame's source
    p_frame: tuple[CodedFrame, Tensor]
    i_frame: tuple[CodedFrame, Tensor]
    known_p_cost: InitVar[float | None] = None  # the P-frame's cost, where the caller has it
    objective: FrameObjective = PLAIN
    p_cost: float = field(init=False)
    i_cost: float = field(init=False)

    def __post_init__(self, known_p_cost: float | None) -> None:
        self.p_cost = frame_cost(self.lam, self.src, self.p_frame, self.objective) \
            if known_p_cost is None else known_p_cost
        self.i_cost = frame_cost(self.lam, self.src, self.i_frame, self.objective)

    def kept(self, intra: bool | None = None) -> tuple[CodedFrame, Tensor]:
        """The I-frame or the P-frame; by default the cheaper (ties keep the P-frame)."""
        return self.i_frame if (self.i_cost < self.p_cost if intra is None else intra) \
            else self.p_frame


@torch.no_grad()
def code_frames(video: Video, model: SSF, quality: int, intra_period: int,
                matrix: ColourMatrix = ColourMatrix.BT709, progress: Progress = no_progress,
                profile: NumericProfile = DEFAULT_PROFILE,
                qmap: QualityMap | None = None, synthesis: Synthesis = Synthesis.FLOAT32,
                schedule: GopSchedule = FLAT, adaptive_intra: bool = True, refine: Effort = 0,
                objective: Objective = PLAIN_STREAM, stop: Stop = never
                ) -> Iterator[tuple[CodedFrame, np.ndarray]]:
    """Code frame by frame, yielding each coded frame and the decoder's reconstruction of it;
    only the reference frames are kept, so memory does not grow with the clip. `qmap`: a quality
    per latent position (nvc.roi.quality_map) instead of one for the frame; `synthesis`: the
    precision the decoder's synthesis will run in (the references are built the same way);
    `schedule`: where each frame of a GOP sits on the ladder (nvc.schedule); `adaptive_intra`: a
    frame between the GOP's I-frames may be coded as an I-frame (format 8; the stream's intra
    period still starts each GOP with one): where that costs less at its position's lambda than
    the P-frame, or, with LOOK_AHEAD and an I-frame within LOOK_AHEAD_GATE of the P-frame's cost,
    where the frame and the next one, coded as a P-frame from either, cost less together (an
    I-frame is also the better reference); `refine`: gradient steps on each coding's latents
    before it is coded (nvc.refine; 0: none), or a Refinement; `objective`: what the refinement
    and the frame-type choice minimise besides bits (nvc.objective: MSE, or a region's weights and
    a task model's term; a task's scale is set from frame 0 where unset); `stop`: True ends the
    refinement of the frame in hand at the step in hand (nvc.refine.Target; a Ctrl-C ending a
    file's coding after that frame, nvc.cli)."""
    device = model_device(model)
    q, h, w = quality_argument(quality, qmap, device), video.height, video.width
    ref: Tensor | None = None
    held: Candidates | None = None  # a frame whose type waits for the next frame
    how = as_refinement(refine)
    pixels = math.prod(padded_hw(h, w, model.cfg.multiple))
    memory.require(how, h, w, pixels, device)
    side_by_side = PARALLEL_TRIAL and not (how.steps and (
        h * w > REFINE_BESIDE_MAX_PIXELS or not memory.fits(how, pixels, device, 2)))
    pool = ThreadPoolExecutor(2, thread_name_prefix="nvc-intra-trial") \
        if adaptive_intra and side_by_side else None

    def beside(fn: Callable, *args) -> Callable[[], tuple[CodedFrame, Tensor]]:
        """fn(*args) on the pool (or, without one, when its result is asked for)."""
        return partial(fn, *args) if pool is None else pool.submit(fn, *args).result

    def out(coded: tuple[CodedFrame, Tensor]) -> tuple[CodedFrame, np.ndarray]:
        return coded[0], to_numpy(coded[1], h, w)

    try:
        for i, frame in enumerate(progress(video.frames)):
            src = source_rgb(frame, matrix)
            x = pad_to(rgb_tensor(src, device), model.cfg.multiple)
            q_i = schedule.frame_q(q, i % intra_period, intra_period, device)
            lam = model.lambda_at(q_i)
            if i == 0:
                objective = scaled_objective(objective, model, src, q_i, synthesis, profile)
            goal = objective.frame(i)
            intra, inter = frame_coders(model, how, lam, src, goal, stop)
            ready: list[tuple[CodedFrame, Tensor]] = []  # frames decided, yielded outside `coding`
            with coding(model, synthesis):
                if i % intra_period == 0 or not adaptive_intra:
                    assert held is None  # a frame is held only where a P-frame follows it
                    if i % intra_period == 0:
                        coded = intra(x, q_i, profile)
                    else:
                        assert ref is not None  # frame 0 is always an I-frame
                        coded = inter(x, ref, q_i, profile)
                    ref = coded[1]
                    ready.append(coded)
                else:
                    trial = beside(intra, x, q_i, profile)
                    p_cost = None
                    if held is None:
                        assert ref is not None
                        p_frame = inter(x, ref, q_i, profile)
                    else:  # the held frame is decided here: this frame coded from each candidate
                        after_i = beside(inter, x, held.i_frame[1], q_i, profile)
                        after_p = inter(x, held.p_frame[1], q_i, profile)
                        from_i = after_i()
                        cost_i = frame_cost(lam, src, from_i, goal)
                        cost_p = frame_cost(lam, src, after_p, goal)
                        keep_i = held.i_cost + cost_i < held.p_cost + cost_p
                        ready.append(held.kept(keep_i))
                        p_frame, p_cost = (from_i, cost_i) if keep_i else (after_p, cost_p)
                    now = Candidates(lam, src, p_frame, trial(), p_cost, goal)
                    # held even where no frame follows (unknown until one comes, in a live pipe):
                    # the clip's end then keeps the cheaper one, as not holding it would
                    next_is_p = (i + 1) % intra_period != 0
                    if LOOK_AHEAD and next_is_p and now.i_cost < (1 + LOOK_AHEAD_GATE) * now.p_cost:
                        held = now
                    else:
                        held = None
                        ready.append(now.kept())
                        ref = ready[-1][1]
            yield from (out(coded) for coded in ready)
        if held is not None:  # the clip's last frame
            yield out(held.kept())
    finally:  # a consumer that stops early leaves no trial running
        if pool is not None:
            let_go(pool)


def frame_coders(model: SSF, how: Refinement, lam: float | Tensor, src: np.ndarray,
                 goal: FrameObjective = PLAIN, stop: Stop = never
                 ) -> tuple[Callable[..., tuple[CodedFrame, Tensor]], ...]:
    """compress_intra and compress_inter for the frame `src`, refined where `how` asks (nvc.refine,
    priced by frame_cost at `lam` under `goal`); each runs without gradients unless refining (grad
    mode is per thread, and the intra trial runs on another)."""
    if not how.steps:
        return torch.no_grad()(model.compress_intra), torch.no_grad()(model.compress_inter)
    at = Target(lam, (src.shape[0], src.shape[1]), partial(frame_cost, lam, src, goal=goal), goal,
                stop)
    return (torch.no_grad()(partial(refined_intra, model, how, at)),
            torch.no_grad()(partial(refined_inter, model, how, at)))


def frame_cost(lam: float | Tensor, src: np.ndarray, coded: tuple[CodedFrame, Tensor],
               goal: FrameObjective = PLAIN) -> float:
    """lambda * 255^2 * D + bpp of a coded frame: every byte of its frame unit, its 8-bit
    reconstruction against the source (h, w, 3); D the MSE, or what `goal` adds to it (a region's
    pixel weights, a task model's term: nvc.objective). `lam`: the frame's lambda, or per latent
    cell (1, 1, h', w') where a quality map codes it (SSF.lambda_at), each pixel's error then
    weighed by its cell's lambda, as the map's positions weigh the rate against it."""
    h, w = src.shape[:2]
    rec = to_numpy(coded[1], h, w)
    err = (rec - src) ** 2
    rate = bpp(len(bitstream.pack_frame(coded[0])), w, h, 1)
    lam_mean = 1.0  # of the lambdas folded into err, for a task's term
    if isinstance(lam, Tensor):
        cells = lam[0, 0].cpu().numpy()  # (1, 1) where the map is uniform
        rows, cols = (n // c for n, c in zip(coded[1].shape[-2:], cells.shape))  # pixels a cell
        lam_px = np.repeat(np.repeat(cells, rows, 0), cols, 1)[:h, :w, None]
        err *= lam_px
        lam, lam_mean = 1.0, float(lam_px.mean())
    if goal.weight is not None:
        err *= goal.weight[:h, :w, None]
    d = torch.tensor(float(err.mean()))
    if goal.task is not None:
        with torch.no_grad():
            d = goal.distortion(d, lam_mean, rgb_tensor(rec, torch.device("cpu")),
                                rgb_tensor(src, torch.device("cpu")))
    return float(rd_cost(lam, d, torch.tensor(rate)))


def scaled_objective(objective: Objective, model: SSF, src: np.ndarray, q: int | Tensor,
                     synthesis: Synthesis, profile: NumericProfile) -> Objective:
    """`objective` with its task's scale set, where unset, from the first frame (`src`, RGB) coded
    as an unrefined I-frame at `q`, its position in the stream (nvc.objective)."""
    if objective.task_model is None or objective.task_scale is not None:
        return objective
    x = pad_to(rgb_tensor(src, model_device(model)), model.cfg.multiple)
    with torch.no_grad(), coding(model, synthesis):
        _, x_hat = model.compress_intra(x, q, profile)
    cpu = torch.device("cpu")
    return objective.scaled(rgb_tensor(src, cpu),
                            rgb_tensor(to_numpy(x_hat, src.shape[0], src.shape[1]), cpu))


def encode(video: Video, model: SSF, entry: ZooEntry, quality: int, intra_period: int = 12,
           matrix: ColourMatrix = ColourMatrix.BT709, progress: Progress = no_progress,
           adapters: bytes | None = None,
           profile: NumericProfile = DEFAULT_PROFILE,
           qmap: QualityMap | None = None,
           synthesis: Synthesis = Synthesis.FLOAT32,
           schedule: GopSchedule | None = None, adaptive_intra: bool = True,
           refine: Effort = 0, objective: Objective = PLAIN_STREAM, keep: bool = True,
           on_reconstruction: Callable[[np.ndarray], None] | None = None) -> CodedVideo:
    """Code `video` at `quality` (1 = lowest rate) with an I-frame every `intra_period` frames;
    the bytes, a digest of every reconstruction and, with `keep`, the reconstructions themselves
    are kept (for evaluation; `encode_to` streams to a file); `on_reconstruction` sees each
    reconstruction (RGB) as it is made. The float
    `profile` exists to measure what the exact one costs; its streams decode bit-exactly only on
    the encoder's kind of machine. `schedule`: the GOP's quality schedule (None: the default for
    `quality`, nvc.schedule); `adaptive_intra`, `refine`, `objective`: see code_frames."""
    _check_settings(video, model, quality, intra_period)
    schedule = resolve(schedule, quality, model.cfg.num_qualities, intra_period)
    t0 = time.perf_counter()
    parts = [bitstream.pack_head(sequence_header(video, model, entry, quality, intra_period,
                                                 matrix, profile, synthesis, schedule), adapters,
                                 quality_map=None if qmap is None else qmap.write())]
    recon: list[np.ndarray] = []
    frame_bytes: list[int] = []
    digests: list[bytes] = []
    for cf, rgb in code_frames(video, model, quality, intra_period, matrix, progress, profile,
                               qmap, synthesis, schedule, adaptive_intra, refine, objective):
        parts.append(bitstream.pack_frame(cf, len(frame_bytes)))
        frame_bytes.append(len(parts[-1]))
        digests.append(frame_digest(rgb))
        if keep:
            recon.append(rgb)
        if on_reconstruction is not None:
            on_reconstruction(rgb)
    return CodedVideo(b"".join(parts), recon, frame_bytes, time.perf_counter() - t0, digests)


def encode_to(sink: BinaryIO, video: Video, model: SSF, entry: ZooEntry, quality: int,
              intra_period: int = 12, matrix: ColourMatrix = ColourMatrix.BT709,
              progress: Progress = no_progress, qmap: QualityMap | None = None,
              profile: NumericProfile = DEFAULT_PROFILE,
              on_reconstruction: Callable[[np.ndarray], None] | None = None,
              synthesis: Synthesis = Synthesis.FLOAT32,
              schedule: GopSchedule | None = None, adaptive_intra: bool = True, refine: Effort = 0,
              objective: Objective = PLAIN_STREAM, stop: Stop = never
              ) -> tuple[int, float, int]:
    """Stream: read, code and write one frame at a time (memory bounded by the model and one
    reference frame); `on_reconstruction` sees each frame's reconstruction (RGB) as it is made.
    A video whose frame count is not known in advance (a pipe read live: `frame_count` None) is
    written as a live stream (format 10: the count follows the last frame in an end unit).
    A video whose frames end before its count (nvc encode's first Ctrl-C ends a file's input)
    has the count in the head rewritten, which needs a sink open for reading too (a file:
    nvc.writers.open_output); `stop`: see code_frames. Returns (bytes written, seconds, frames).
    """
    _check_settings(video, model, quality, intra_period)
    schedule = resolve(schedule, quality, model.cfg.num_qualities, intra_period)
    t0 = time.perf_counter()
    header = sequence_header(video, model, entry, quality, intra_period, matrix, profile,
                             synthesis, schedule)
    quality_map = None if qmap is None else qmap.write()
    head = bitstream.pack_head(header, quality_map=quality_map)
    written = count = 0
    for cf, rgb in code_frames(video, model, quality, intra_period, matrix, progress, profile,
                               qmap, synthesis, schedule, adaptive_intra, refine, objective, stop):
        # the head goes out with the first frame: a pipe that brings none leaves nothing written
        written += sink.write((b"" if count else head) + bitstream.pack_frame(cf, count))
        if hasattr(sink, "flush"):  # a pipe's reader gets each frame as it is coded
            sink.flush()
        count += 1
        if on_reconstruction is not None:
            on_reconstruction(rgb)
    if not count:
        raise InputError(f"{video.source or 'the input'}: no frames to read")
    if frame_count(video) is None:
        written += sink.write(bitstream.pack_end(count))
    elif count < header.frame_count:  # the input ended early: the head says how many came
        written = _recount(sink, head, bitstream.pack_head(replace(header, frame_count=count),
                                                           quality_map=quality_map))
    return written, time.perf_counter() - t0, count


def _recount(sink: BinaryIO, head: bytes, shorter: bytes) -> int:
    """The stream in `sink` with its `head` replaced by `shorter` (a smaller frame count); its
    new length."""
    from .writers import shorten_head

    try:
        return shorten_head(sink, len(head), shorter)
    except (OSError, AttributeError, ValueError):  # io.UnsupportedOperation is an OSError
        raise NvcError("the input ended before its frame count and the output cannot be "
                       "rewritten (a pipe, a device): no stream was finished") from None
