"""LightningModule around the nvc base: rate-distortion training in stages.

Stages (train/configs/stage*.yaml):
  intra  - the I-frame codec alone;
  inter  - motion + residual codecs, reference = a degraded copy of the true previous frame
           (`ref_source: proxy`) or the frozen intra codec's reconstruction (`ref_source: intra`),
           P-frames unrolled over the clip so error propagation is trained against; `unroll`
           grows the number of P-frames with the step (DCVC's recipe grows 2 -> 6 and beyond);
  joint  - everything, I-frame then unrolled P-frames, one loss.
Net and auxiliary (entropy-bottleneck quantile) parameters have separate optimizers.
Validation codes one GOP of each evaluation clip at every quality (rounded latents, the rate the
entropy models assign) and logs val/bpp, val/psnr_db per quality and val/rd_cost, the objective
ModelCheckpoint keeps the best of.
`schedule` says where each frame of a GOP sits on the quality ladder, in training and validation
alike: "flat" (every frame at the GOP's quality) or "default" (nvc.schedule.default_schedule, what the
encoder writes unless told otherwise), so that the base learns the positions it is coded at. With
`frame_lambdas` each frame's distortion is weighted by the lambda of its own position (log-linear
between rungs, as the gains are; DCVC-DC's hierarchical weights play this part), so the ladder keeps
its operating points; without, the GOP's lambda weights every frame. `val_schedule` sets the
validation's apart (None: `schedule`'s): "default" there codes each validation GOP as the encoder
would (the cycle too, in GOPs of nvc.schedule.CYCLE_FROM frames or more) while training stays flat.
With `coder_skip`, training and validation see what the coder does with the elements whose scale is
too small to code (bitstream.SKIP_BELOW_INDEX): they decode as their means and cost no bits.
With `encoders_only` only the analysis side trains (ENCODER_SIDE): the decoder, the hyper-synthesis
and the entropy models stay as loaded, so the refinement's amortisation gap (nvc.refine) is what the
run can close.
`block_lr` is the learning rate of the residual blocks an architecture grown from the base adds
(`--model.arch ssf-small-r1`, nvc.models.layers.ResBlock): new weights start far from where the base's
small fine-tuning rate would take them.
`burn_in` codes a number of P-frames drawn each step from 0..burn_in (capped by the clip) after the
I-frame without gradients, the unrolled P-frames after them: those then learn on references as worn
as a long GOP leaves them (the encoder's default GOP is 32 frames; training unrolls 5) for the cost of
forward passes only. The clip must hold 1 + burn_in + the unrolled P-frames.
`accumulate` sums the gradients of that many batches (each weighted 1/accumulate) before each
optimizer step: a larger batch than memory holds, or the batch of a multi-GPU run on fewer devices.
The step counters (`max_steps`, `lr_drops`, `unroll`, checkpoints) count optimizer steps; under DDP
the gradients are all-reduced once a step, on its last batch.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import time

import lightning as L
import torch
from lightning.pytorch.strategies import ParallelStrategy
from torch import Tensor

from nvc.bitstream import SKIP_BELOW_INDEX
from nvc.codec import pad_to
from nvc.errors import ConfigError
from nvc.models.config import ModelConfig
from nvc.models.layers import ResBlock
from nvc.models.ssf import SSF, FrameOut
from nvc.models.warp import gaussian_blur
from nvc.rd import ladder_lambda, likelihood_bits, mse_per_sample, psnr_db, rd_cost
from nvc.schedule import FLAT, GopSchedule, default_schedule
from nvc.zoo import ARCHITECTURES, load_state_into

log = logging.getLogger(__name__)
STAGES = ("intra", "inter", "joint")
SCHEDULES = ("flat", "default")
# what the encoder alone computes, in each codec (intra, motion, residual): with `encoders_only`
# nothing else trains, and every decoder-side weight stays as loaded, bit for bit
ENCODER_SIDE = ("g_a.", "latent.h_a.", "latent.log_gain")


def frame_bpp(out: FrameOut, num_pixels: int) -> Tensor:
    """Per-sample bits per pixel, (B,)."""
    return likelihood_bits(out.likelihoods) / num_pixels


def p_frames_at(step: int, unroll: list[list[int]] | None, available: int) -> int:
    """P-frames to unroll at `step`: the last [from_step, p_frames] entry reached, capped by the
    clip; all the clip's P-frames when no schedule is given."""
    n = available
    for start, frames in sorted(unroll or []):
        if step >= start:
            n = frames
    return max(1, min(n, available))


class VideoCodecModule(L.LightningModule):
    def __init__(self, arch: str = "ssf-small", stage: str = "intra", lr: float = 1e-4,
                 aux_lr: float = 1e-3, ref_source: str = "proxy",
                 init_from: list[str] | None = None, grad_clip: float = 1.0,
                 lambdas: list[float] | None = None, lr_drops: list[int] | None = None,
                 lr_drop_factor: float = 0.3, unroll: list[list[int]] | None = None,
                 channels_last: bool = False, schedule: str = "flat", intra_period: int = 12,
                 frame_lambdas: bool = True, coder_skip: bool = False,
                 encoders_only: bool = False, block_lr: float | None = None,
                 accumulate: int = 1, burn_in: int = 0, val_schedule: str | None = None):
        super().__init__()
        if stage not in STAGES:
            raise ConfigError(f"stage must be one of {STAGES}, got {stage!r}")
        for name, value in (("schedule", schedule), ("val_schedule", val_schedule or schedule)):
            if value not in SCHEDULES:
                raise ConfigError(f"{name} must be one of {SCHEDULES}, got {value!r}")
        if intra_period < 2:
            raise ConfigError(f"intra_period must be at least 2, got {intra_period}")
        if burn_in < 0:
            raise ConfigError(f"burn_in must be at least 0, got {burn_in}")
        if accumulate < 1:
            raise ConfigError(f"accumulate must be at least 1, got {accumulate}")
        if arch not in ARCHITECTURES:
            raise ConfigError(f"unknown arch {arch!r}; known: {sorted(ARCHITECTURES)}")
        for name, rate in (("lr", lr), ("aux_lr", aux_lr), ("grad_clip", grad_clip),
                           ("block_lr", block_lr or lr)):
            if not rate > 0:  # NaN fails too
                raise ConfigError(f"{name} must be above 0, got {rate}")
        if not 0 < lr_drop_factor <= 1:
            raise ConfigError(f"lr_drop_factor must lie in (0, 1], got {lr_drop_factor}")
        bad = next((e for e in unroll or [] if len(e) != 2 or e[0] < 0 or e[1] < 1), None)
        if bad is not None:
            raise ConfigError(f"unroll entries are [from_step >= 0, p_frames >= 1], got {bad}")
        self.save_hyperparameters()
        self.cfg: ModelConfig = ARCHITECTURES[arch]
        if lambdas:  # lambda per rate point, from the YAML config
            try:
                self.cfg = dataclasses.replace(self.cfg, lambdas=tuple(lambdas))
            except ValueError as e:  # ModelConfig's own check: one line, as the others above
                raise ConfigError(str(e)) from None
        self.model = SSF(self.cfg)
        for path in init_from or []:
            load_state_into(self.model, path)
        for codec in (self.model.intra, self.model.motion, self.model.residual):
            codec.latent.skip_below = SKIP_BELOW_INDEX if coder_skip else 0
        self.automatic_optimization = False
        self._t_last: float | None = None
        self._batches = 0  # batches since the run (or its resumption) started
        self._val_costs: dict[str, float] = {}  # this validation's, by clip
        active = {id(p) for mod in self._active_modules() for n, p in mod.named_parameters()
                  if not encoders_only or n.startswith(ENCODER_SIDE)}
        for p in self.model.parameters():  # frozen codecs: no gradients, nothing unused under DDP
            p.requires_grad_(id(p) in active)

    def on_fit_start(self) -> None:
        self._check_burn_in(getattr(self.trainer.datamodule, "frames", None))

    def setup(self, stage: str) -> None:
        if self.hparams.channels_last:  # NHWC convolutions: faster on tensor cores
            self.model.to(memory_format=torch.channels_last)

    def _check_burn_in(self, frames: int | None) -> None:
        """A burn-in the training clips have no room for would be cut short without a word."""
        burn, unroll = self.hparams.burn_in, self.hparams.unroll
        if not burn or self.hparams.stage == "intra" or frames is None:
            return
        if not unroll:
            raise ConfigError("burn_in needs an unroll schedule (model.unroll): without one every "
                              "P-frame of the clip is unrolled")
        most = max(p for _, p in unroll)
        if frames < 1 + burn + most:
            raise ConfigError(f"burn_in {burn} before {most} unrolled P-frames needs clips of "
                              f"{1 + burn + most} frames; data.frames is {frames}")

    # -- parameters ---------------------------------------------------------------------------
    def _active_modules(self):
        m = self.model
        return {"intra": [m.intra], "inter": [m.motion, m.residual],
                "joint": [m.intra, m.motion, m.residual]}[self.hparams.stage]

    def _params(self, aux: bool):
        return [p for mod in self._active_modules() for n, p in mod.named_parameters()
                if p.requires_grad and n.endswith("quantiles") == aux]

    def current_lr(self) -> float:
        """The learning rate at this step: `lr` times `lr_drop_factor` per milestone passed."""
        passed = sum(self.global_step >= m for m in self.hparams.lr_drops or [])
        return self.hparams.lr * self.hparams.lr_drop_factor ** passed

    def configure_optimizers(self):
        aux = self._params(aux=True)  # none when the entropy models are frozen (encoders_only)
        blocks = {id(p) for m in self.model.modules() if isinstance(m, ResBlock)
                  for p in m.parameters()}
        groups = [{"params": [p for p in self._params(aux=False) if (id(p) in blocks) == new],
                   "lr_scale": (self.hparams.block_lr or self.hparams.lr) / self.hparams.lr
                   if new else 1.0} for new in (False, True)]
        return [torch.optim.Adam([g for g in groups if g["params"]], lr=self.hparams.lr)] + \
            ([torch.optim.Adam(aux, lr=self.hparams.aux_lr)] if aux else [])

    # -- where frames sit on the ladder --------------------------------------------------------
    def gop_schedule(self, q: int, intra_period: int, name: str | None = None) -> GopSchedule:
        """The schedule (`name`, else `schedule`'s) of a GOP of `intra_period` frames at quality
        index `q` (0-based)."""
        if (name or self.hparams.schedule) == "flat":
            return FLAT
        return default_schedule(q + 1, self.cfg.num_qualities, intra_period)

    def frame_positions(self, q: Tensor, index: int, intra_period: int,
                        name: str | None = None) -> Tensor:
        """Ladder positions (B,) of frame `index` of each sample's GOP of `intra_period` frames
        under the schedule `name` (else `schedule`), q: (B,) quality indexes; never below
        LADDER_BELOW rungs under the first (the model clamps the top)."""
        return torch.tensor([self.gop_schedule(qi, intra_period, name).position(qi, index, intra_period)
                             for qi in q.tolist()], dtype=torch.float32, device=q.device)

    def model_q(self, q: Tensor, positions: Tensor) -> Tensor:
        """What the model is given: the quality indexes where the schedule is flat, else the
        positions as (B, 1, 1, 1) quality maps."""
        return q if self.hparams.schedule == "flat" else positions.view(-1, 1, 1, 1)

    def frame_lambda(self, q: Tensor, positions: Tensor) -> Tensor:
        """The lambda (B,) weighting a frame's distortion: its position's (log-linear between rungs,
        extended along the first segment below the first rung, the top rung's above it), or the
        GOP's without `frame_lambdas`."""
        if not self.hparams.frame_lambdas:
            return torch.tensor(self.cfg.lambdas, device=q.device)[q]
        return ladder_lambda(self.cfg.lambdas, positions)

    # -- loss ---------------------------------------------------------------------------------
    def _first_reference(self, x0: Tensor, q: Tensor) -> Tensor:
        if self.hparams.ref_source == "intra":
            with torch.no_grad():
                return self.model.forward_intra(x0, q).x_hat
        # Proxy of an intra reconstruction at 28-36 dB: a little blur and noise.
        sigma = float(torch.empty(1).uniform_(0.3, 1.0))
        noisy = gaussian_blur(x0, sigma) + torch.randn_like(x0) * float(torch.empty(1).uniform_(0, 0.02))
        return noisy.clamp(0, 1)

    def rd_loss(self, clip: Tensor) -> dict[str, Tensor]:
        """clip: (B, T, 3, H, W) in [0, 1]."""
        b, t, _, h, w = clip.shape
        p_frames = burn = 0
        if self.hparams.stage != "intra" and t < 2:
            raise ConfigError(f"stage {self.hparams.stage} codes P-frames: its clips need 2 frames "
                              f"or more (data.frames), got {t}")
        if self.hparams.stage != "intra":
            p_frames = p_frames_at(self.global_step, self.hparams.unroll, t - 1)
            if self.hparams.burn_in:
                burn = int(torch.randint(0, min(self.hparams.burn_in, t - 1 - p_frames) + 1, ()))
        q = torch.randint(0, self.cfg.num_qualities, (b,), device=clip.device)
        stage = self.hparams.stage
        outs, targets, lams = [], [], []
        if stage == "intra":
            outs.append(self.model.forward_intra(clip[:, 0], q))
            targets.append(clip[:, 0])
            lams.append(self.frame_lambda(q, q.float()))
        else:
            if stage == "joint":
                pos = self.frame_positions(q, 0, self.hparams.intra_period)
                first = self.model.forward_intra(clip[:, 0], self.model_q(q, pos))
                outs.append(first)
                targets.append(clip[:, 0])
                lams.append(self.frame_lambda(q, pos))
                ref = first.x_hat
            else:
                ref = self._first_reference(clip[:, 0], q)
            for k in range(1, 1 + burn + p_frames):
                pos = self.frame_positions(q, k, self.hparams.intra_period)
                # the burn-in: references worn down a GOP, without gradients
                with torch.no_grad() if k <= burn else contextlib.nullcontext():
                    out = self.model.forward_inter(clip[:, k], ref, self.model_q(q, pos))
                ref = out.x_hat
                if k > burn:
                    outs.append(out)
                    targets.append(clip[:, k])
                    lams.append(self.frame_lambda(q, pos))
        mse = torch.stack([mse_per_sample(o.x_hat, x) for o, x in zip(outs, targets)])  # (F, B)
        bpp = torch.stack([frame_bpp(o, h * w) for o in outs])
        loss = rd_cost(torch.stack(lams), mse, bpp).mean()
        return {"loss": loss, "bpp": bpp.mean(), "psnr": psnr_db(mse).mean(),
                "mse": mse.mean(), "p_frames": torch.tensor(float(p_frames)),
                "burn_in": torch.tensor(float(burn))}

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        opts = self.optimizers()
        opt, *aux_opt = opts if isinstance(opts, list) else [opts]
        lr = self.current_lr()
        for group in opt.param_groups:  # a function of the step, so resumed runs agree
            group["lr"] = lr * group.get("lr_scale", 1.0)  # older checkpoints: none
        stats = self.rd_loss(batch)
        # none to train where the entropy models are frozen (encoders_only)
        aux_losses = [mod.latent.aux_loss() for mod in self._active_modules()] if aux_opt else []
        aux = sum(aux_losses, torch.zeros((), device=batch.device))
        n = self.hparams.accumulate
        first, last = self._batches % n == 0, self._batches % n == n - 1
        self._batches += 1
        if first:
            for o in [opt, *aux_opt]:
                o.zero_grad()
        # One backward a batch (DDP allows one per step): the aux loss reaches only the quantiles
        # (CompressAI stops its gradient into the density model) and the RD loss never reaches
        # them, so the sum gives each optimizer exactly its own gradients.
        with self._gradient_sync(last):
            self.manual_backward((stats["loss"] + aux) / n)
        if last:
            self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip,
                                gradient_clip_algorithm="norm")
            opt.step()
            for o in aux_opt:
                o.optimizer.step()  # the raw optimizer: global_step counts RD steps only
            now = time.perf_counter()
            if self._t_last is not None:
                self.log("train/steps_per_s", 1.0 / max(now - self._t_last, 1e-9), prog_bar=True)
            self._t_last = now
        self.log_dict({f"train/{k}": v.detach() for k, v in stats.items()}, prog_bar=True)
        self.log("train/aux_loss", aux.detach())
        self.log("train/lr", lr)
        if batch_idx % 500 == 0 and self.logger is not None and hasattr(self.logger, "experiment"):
            self._log_images(batch)
        return stats["loss"]

    def _gradient_sync(self, sync: bool):
        """Under DDP, the gradients are all-reduced by a backward only when `sync`: the last batch
        of an accumulated step."""
        strategy = self.trainer.strategy
        if sync or not isinstance(strategy, ParallelStrategy):
            return contextlib.nullcontext()
        return strategy.block_backward_sync()

    # -- validation ---------------------------------------------------------------------------
    @torch.no_grad()
    def gop_stats(self, clip: Tensor, q: int) -> tuple[Tensor, Tensor]:
        """clip: (T, 3, H, W) in [0, 1], any size: code it as one GOP (I then P-frames) with rounded
        latents, in float32 whatever the trainer's precision (what the codec does at inference).
        Returns per-frame MSE and bpp, each (T,)."""
        with torch.autocast(clip.device.type, enabled=False):
            return self._gop_stats(clip.float(), q)

    def _gop_stats(self, clip: Tensor, q: int) -> tuple[Tensor, Tensor]:
        h, w = clip.shape[-2:]
        x = pad_to(clip, self.cfg.multiple)
        schedule = self.gop_schedule(q, len(clip), self.hparams.val_schedule)
        mse, bpp, ref = [], [], None
        for k in range(x.shape[0]):
            fq = schedule.frame_q(q, k, x.shape[0], x.device)
            out = (self.model.forward_intra(x[k:k + 1], fq) if ref is None
                   else self.model.forward_inter(x[k:k + 1], ref, fq))
            ref = out.x_hat
            mse.append(mse_per_sample(out.x_hat[..., :h, :w], clip[k:k + 1]))
            bpp.append(frame_bpp(out, h * w))
        return torch.cat(mse), torch.cat(bpp)

    def validation_step(self, batch: Tensor, batch_idx: int) -> None:
        clip = batch[0]
        costs = []
        for q in range(self.cfg.num_qualities):
            mse, bpp = self.gop_stats(clip, q)
            self.log(f"val/bpp_q{q + 1}", bpp.mean(), batch_size=1)
            self.log(f"val/psnr_db_q{q + 1}", psnr_db(mse).mean(), batch_size=1)
            qs = torch.tensor([q], device=clip.device)
            lam = torch.cat([self.frame_lambda(qs, self.frame_positions(
                qs, k, len(clip), self.hparams.val_schedule)) for k in range(len(clip))])  # each frame's
            costs.append(rd_cost(lam, mse, bpp).mean())
        cost = torch.stack(costs).mean()
        self.log("val/rd_cost", cost, prog_bar=True, batch_size=1)
        self.log(f"val_clip/rd_cost_{batch_idx}", cost, batch_size=1)  # clip order: val_clips
        self._val_costs[f"val_clip/rd_cost_{batch_idx}"] = float(cost)

    def on_validation_epoch_start(self) -> None:
        self._val_costs = {}

    def on_validation_epoch_end(self) -> None:
        """Lightning logs nothing of its sanity check: when that is a whole validation
        (`num_sanity_val_steps: -1`), its costs go to the logger here, at the starting step: the
        run's starting point, as loaded, beside what training makes of it."""
        if self.trainer.sanity_checking and self.logger is not None and self._val_costs:
            costs = dict(self._val_costs)
            costs["val/rd_cost"] = sum(costs.values()) / len(costs)
            self.logger.log_metrics(costs, step=self.global_step)

    @torch.no_grad()
    def _log_images(self, batch: Tensor) -> None:
        exp = self.logger.experiment
        if hasattr(exp, "add_images"):
            out = self.model.forward_intra(batch[:1, 0], 0)
            exp.add_images("train/intra_reconstruction",
                           torch.cat((batch[:1, 0], out.x_hat)), self.global_step)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["nvc_config"] = self.cfg.to_json()
