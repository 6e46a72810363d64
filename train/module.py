"""LightningModule around the nvc base: rate-distortion training in stages.

Stages (a schedule that works on little compute):
  intra  - the I-frame codec alone;
  inter  - motion + residual codecs, reference = a degraded copy of the true previous frame
           (`ref_source: proxy`) or the frozen intra codec's reconstruction (`ref_source: intra`),
           P-frames unrolled over the clip so error propagation is trained against;
  joint  - everything, I-frame then unrolled P-frames, one loss.
Net and auxiliary (entropy-bottleneck quantile) parameters have separate optimizers.
"""
from __future__ import annotations

import dataclasses
import logging
import time

import lightning as L
import torch
from torch import Tensor

from nvc.models.config import ModelConfig
from nvc.models.ssf import SSF, FrameOut
from nvc.models.warp import gaussian_blur
from nvc.zoo import ARCHITECTURES, load_state_into

log = logging.getLogger(__name__)
STAGES = ("intra", "inter", "joint")


def frame_bpp(out: FrameOut, num_pixels: int) -> Tensor:
    """Per-sample bits per pixel, (B,)."""
    bits = sum(-torch.log2(lik).flatten(1).sum(1) for lik in out.likelihoods)
    return bits / num_pixels


def mse_per_sample(a: Tensor, b: Tensor) -> Tensor:
    return ((a - b) ** 2).flatten(1).mean(1)


def psnr_db(mse: Tensor) -> Tensor:
    return -10 * torch.log10(mse.clamp_min(1e-10))


class VideoCodecModule(L.LightningModule):
    def __init__(self, arch: str = "ssf-small", stage: str = "intra", lr: float = 1e-4,
                 aux_lr: float = 1e-3, ref_source: str = "proxy",
                 init_from: list[str] | None = None, grad_clip: float = 1.0,
                 lambdas: list[float] | None = None, lr_drops: list[int] | None = None,
                 lr_drop_factor: float = 0.3):
        super().__init__()
        if stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
        if arch not in ARCHITECTURES:
            raise ValueError(f"unknown arch {arch!r}; known: {sorted(ARCHITECTURES)}")
        self.save_hyperparameters()
        self.cfg: ModelConfig = ARCHITECTURES[arch]
        if lambdas:  # lambda per rate point, from the YAML config
            self.cfg = dataclasses.replace(self.cfg, lambdas=tuple(lambdas))
        self.model = SSF(self.cfg)
        for path in init_from or []:
            load_state_into(self.model, path)
        self.automatic_optimization = False
        self._t_last: float | None = None
        active = {id(p) for mod in self._active_modules() for p in mod.parameters()}
        for p in self.model.parameters():  # frozen codecs: no gradients, nothing unused under DDP
            p.requires_grad_(id(p) in active)

    # -- parameters ---------------------------------------------------------------------------
    def _active_modules(self):
        m = self.model
        return {"intra": [m.intra], "inter": [m.motion, m.residual],
                "joint": [m.intra, m.motion, m.residual]}[self.hparams.stage]

    def _params(self, aux: bool):
        return [p for mod in self._active_modules() for n, p in mod.named_parameters()
                if n.endswith("quantiles") == aux]

    def current_lr(self) -> float:
        """The learning rate at this step: `lr` times `lr_drop_factor` per milestone passed."""
        passed = sum(self.global_step >= m for m in self.hparams.lr_drops or [])
        return self.hparams.lr * self.hparams.lr_drop_factor ** passed

    def configure_optimizers(self):
        return (torch.optim.Adam(self._params(aux=False), lr=self.hparams.lr),
                torch.optim.Adam(self._params(aux=True), lr=self.hparams.aux_lr))

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
        q = torch.randint(0, self.cfg.num_qualities, (b,), device=clip.device)
        lam = torch.tensor(self.cfg.lambdas, device=clip.device)[q]
        stage = self.hparams.stage
        outs, targets = [], []
        if stage == "intra":
            outs.append(self.model.forward_intra(clip[:, 0], q))
            targets.append(clip[:, 0])
        else:
            if stage == "joint":
                first = self.model.forward_intra(clip[:, 0], q)
                outs.append(first)
                targets.append(clip[:, 0])
                ref = first.x_hat
            else:
                ref = self._first_reference(clip[:, 0], q)
            for k in range(1, t):
                out = self.model.forward_inter(clip[:, k], ref, q)
                outs.append(out)
                targets.append(clip[:, k])
                ref = out.x_hat
        mse = torch.stack([mse_per_sample(o.x_hat, x) for o, x in zip(outs, targets)])  # (F, B)
        bpp = torch.stack([frame_bpp(o, h * w) for o in outs])
        loss = (lam * 255 ** 2 * mse + bpp).mean()
        return {"loss": loss, "bpp": bpp.mean(), "psnr": psnr_db(mse).mean(),
                "mse": mse.mean()}

    def training_step(self, batch: Tensor, batch_idx: int) -> Tensor:
        opt, aux_opt = self.optimizers()
        lr = self.current_lr()
        for group in opt.param_groups:  # a function of the step, so resumed runs agree
            group["lr"] = lr
        stats = self.rd_loss(batch)
        aux = sum(mod.latent.aux_loss() for mod in self._active_modules())
        # One backward (DDP allows one per step): the aux loss reaches only the quantiles (CompressAI
        # stops its gradient into the density model) and the RD loss never reaches them, so the sum
        # gives each optimizer exactly its own gradients.
        opt.zero_grad()
        aux_opt.zero_grad()
        self.manual_backward(stats["loss"] + aux)
        self.clip_gradients(opt, gradient_clip_val=self.hparams.grad_clip,
                            gradient_clip_algorithm="norm")
        opt.step()
        aux_opt.optimizer.step()  # the raw optimizer: global_step counts RD steps only
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

    @torch.no_grad()
    def _log_images(self, batch: Tensor) -> None:
        exp = self.logger.experiment
        if hasattr(exp, "add_images"):
            out = self.model.forward_intra(batch[:1, 0], 0)
            exp.add_images("train/intra_reconstruction",
                           torch.cat((batch[:1, 0], out.x_hat)), self.global_step)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["nvc_config"] = self.cfg.to_json()
