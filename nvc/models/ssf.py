"""The SSF-style base: an intra codec, a motion codec and a residual codec (Agustsson et al. 2020).

Contract (STYLE 5): `forward_*` return dataclasses with reconstructions and likelihoods for
training; `compress_*` return coded strings plus the exact reconstruction the decoder will make;
`decompress_*` take the strings back.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..bitstream import DEFAULT_PROFILE, FLOAT64_TABLES_SINCE, CodedFrame, FrameType, NumericProfile
from ..rd import ladder_lambda
from .config import ModelConfig
from .entropy import LatentCodec
from .layers import analysis, synthesis
from .stripes import analyze, synthesize
from .warp import scale_space_warp


@dataclass
class FrameOut:
    x_hat: Tensor  # (B, 3, H, W)
    likelihoods: list[Tensor]


class IntraCodec(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.g_a = analysis(3, cfg.intra_mid, cfg.intra_latent, act="gdn", kernel=cfg.kernel,
                            blocks=cfg.res_blocks)
        self.g_s = synthesis(cfg.intra_latent, cfg.intra_mid, 3, act="gdn", kernel=cfg.kernel,
                             blocks=cfg.res_blocks)
        self.latent = LatentCodec(cfg.intra_latent, cfg.hyper_channels, cfg.lambdas)


class MotionCodec(nn.Module):
    """Codes (x, x_ref) into a scale-space flow (dx, dy in pixels, scale level)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.g_a = analysis(6, cfg.inter_mid, cfg.inter_latent, kernel=cfg.kernel,
                            blocks=cfg.res_blocks)
        self.g_s = synthesis(cfg.inter_latent, cfg.inter_mid, 3, kernel=cfg.kernel,
                             blocks=cfg.res_blocks)
        self.latent = LatentCodec(cfg.inter_latent, cfg.hyper_channels, cfg.lambdas)


class ResidualCodec(nn.Module):
    """Codes x - warp(x_ref); its synthesis also sees the motion latent."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.g_a = analysis(3, cfg.inter_mid, cfg.inter_latent, kernel=cfg.kernel,
                            blocks=cfg.res_blocks)
        self.g_s = synthesis(2 * cfg.inter_latent, cfg.inter_mid, 3, kernel=cfg.kernel,
                             blocks=cfg.res_blocks)
        self.latent = LatentCodec(cfg.inter_latent, cfg.hyper_channels, cfg.lambdas)


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


class SSF(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.intra = IntraCodec(cfg)
        self.motion = MotionCodec(cfg)
        self.residual = ResidualCodec(cfg)
        self._synthesis_dtype: torch.dtype | None = None  # None: as the caller runs (training)
        self.table_dtype: torch.dtype | None = None  # the coder's tables' build (update)

    # -- shared decoder path ------------------------------------------------------------------
    @contextmanager
    def synthesis_in(self, dtype: torch.dtype) -> Iterator[None]:
        """Run the three synthesis transforms under autocast to `dtype` (float32: plainly), their
        outputs returned as float32; coding sets it around each frame on both sides."""
        before, self._synthesis_dtype = self._synthesis_dtype, dtype
        try:
            yield
        finally:
            self._synthesis_dtype = before

    def _g_a(self, g_a: nn.Sequential, x: Tensor) -> Tensor:
        return analyze(g_a, x, self.cfg.kernel)

    def _g_s(self, g_s: nn.Sequential, y: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        """g_s(y) in `dtype`, or where not given in the precision `synthesis_in` set."""
        dtype = self._synthesis_dtype if dtype is None else dtype
        if dtype is None:
            return synthesize(g_s, y, self.cfg.kernel)
        with torch.autocast(y.device.type, dtype=dtype, enabled=dtype != torch.float32):
            return synthesize(g_s, y, self.cfg.kernel).float()

    def _intra_decode(self, y_hat: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        return self._g_s(self.intra.g_s, y_hat, dtype).clamp(0, 1)

    def _warp(self, x_ref: Tensor, y_m_hat: Tensor, dtype: torch.dtype | None = None) -> Tensor:
        flow = self._g_s(self.motion.g_s, y_m_hat, dtype)
        return scale_space_warp(x_ref, flow, self.cfg.scale_levels, self.cfg.sigma0)

    def _inter_decode(self, x_pred: Tensor, y_m_hat: Tensor, y_r_hat: Tensor,
                      dtype: torch.dtype | None = None) -> Tensor:
        r_hat = self._g_s(self.residual.g_s, torch.cat((y_r_hat, y_m_hat), dim=1), dtype)
        return (x_pred + r_hat).clamp(0, 1)

    # -- training -----------------------------------------------------------------------------
    def forward_intra(self, x: Tensor, q: Tensor | int) -> FrameOut:
        """x: (B, 3, H, W) in [0, 1], H and W multiples of cfg.multiple."""
        out = self.intra.latent(self.intra.g_a(x), q)
        return FrameOut(self._intra_decode(out.y_hat), list(out.likelihoods))

    def forward_inter(self, x: Tensor, x_ref: Tensor, q: Tensor | int) -> FrameOut:
        m = self.motion.latent(self.motion.g_a(torch.cat((x, x_ref), dim=1)), q)
        x_pred = self._warp(x_ref, m.y_hat)
        r = self.residual.latent(self.residual.g_a(x - x_pred), q)
        return FrameOut(self._inter_decode(x_pred, m.y_hat, r.y_hat),
                        list(m.likelihoods) + list(r.likelihoods))

    def lambda_at(self, q: int | Tensor) -> float | Tensor:
        """The lambda a frame coded at `q` is coded for: a quality index's own, or for a quality
        map (1, 1, h, w) of ladder positions each latent cell's (nvc.rd.ladder_lambda)."""
        if isinstance(q, int):
            return self.cfg.lambdas[q]
        return ladder_lambda(self.cfg.lambdas, q)

    # -- coding (batch of one) ----------------------------------------------------------------
    # `profile` picks how the entropy parameters are computed (bitstream.NumericProfile); `q` is a
    # quality index or a quality map (1, 1, H/16, W/16) of ladder positions (LatentCodec._gains).
    def compress_intra(self, x: Tensor, q: int | Tensor, profile: NumericProfile = DEFAULT_PROFILE
                       ) -> tuple[CodedFrame, Tensor]:
        return self.code_latents(FrameType.I, self.start_latents(FrameType.I, x, None, q, profile),
                                 None, q, profile)

    def compress_inter(self, x: Tensor, x_ref: Tensor, q: int | Tensor,
                       profile: NumericProfile = DEFAULT_PROFILE
                       ) -> tuple[CodedFrame, Tensor]:
        m_strings, y_m_hat = self.motion.latent.compress(
            self._g_a(self.motion.g_a, torch.cat((x, x_ref), dim=1)), q, profile)
        x_pred = self._warp(x_ref, y_m_hat)
        r_strings, y_r_hat = self.residual.latent.compress(self._g_a(self.residual.g_a, x - x_pred),
                                                           q, profile)
        return (CodedFrame(FrameType.P, [m_strings, r_strings]),
                self._inter_decode(x_pred, y_m_hat, y_r_hat))

    # -- latents chosen by the encoder (nvc.refine) ----------------------------------------------
    # A frame's latents, scaled by their gains (LatentCodec.scaled: a quantiser bin is 1 wide), in
    # the order of its CodedFrame: [intra] or [motion, residual].
    def start_latents(self, kind: FrameType, x: Tensor, x_ref: Tensor | None, q: int | Tensor,
                      profile: NumericProfile = DEFAULT_PROFILE) -> list[Tensor]:
        """What the analysis transforms give x: what compress_* code, where refinement starts (the
        residual's from the prediction by the coded motion)."""
        if kind == FrameType.I:
            return [self.intra.latent.scaled(self._g_a(self.intra.g_a, x), q)]
        x_ref = self._reference(x_ref)
        y_m = self.motion.latent.scaled(self._g_a(self.motion.g_a, torch.cat((x, x_ref), dim=1)), q)
        _, y_m_hat = self.motion.latent.compress_scaled(y_m, q, profile)
        x_pred = self._warp(x_ref, y_m_hat)
        return [y_m, self.residual.latent.scaled(self._g_a(self.residual.g_a, x - x_pred), q)]

    def code_latents(self, kind: FrameType, latents: list[Tensor], x_ref: Tensor | None,
                     q: int | Tensor, profile: NumericProfile = DEFAULT_PROFILE
                     ) -> tuple[CodedFrame, Tensor]:
        """The coded frame of these scaled latents and the reconstruction the decoder will make."""
        coded = [c.compress_scaled(y, q, profile) for c, y in zip(self._codecs(kind), latents)]
        return (CodedFrame(kind, [strings for strings, _ in coded]),
                self.synthesize(kind, [y_hat for _, y_hat in coded], x_ref))

    def relaxed(self, kind: FrameType, latents: list[Tensor], x_ref: Tensor | None,
                q: int | Tensor, noise: list[Tensor], dtype: torch.dtype | None = None
                ) -> tuple[Tensor, list[Tensor]]:
        """A differentiable stand-in for code_latents (LatentCodec.relaxed, one noise tensor a
        latent): the reconstruction, its synthesis in `dtype` where given (the coding's precision
        otherwise; a parameter, not the model's state, as a trial codes beside it on another
        thread), and the likelihoods of every latent."""
        outs = [c.relaxed(y, q, n) for c, y, n in zip(self._codecs(kind), latents, noise)]
        return (self.synthesize(kind, [y_hat for y_hat, _ in outs], x_ref, dtype),
                [lik for _, liks in outs for lik in liks])

    def _codecs(self, kind: FrameType) -> list[LatentCodec]:
        return ([self.intra.latent] if kind == FrameType.I
                else [self.motion.latent, self.residual.latent])

    @staticmethod
    def _reference(x_ref: Tensor | None) -> Tensor:
        if x_ref is None:
            raise ValueError("a P-frame needs a reference frame")
        return x_ref

    def decode_latents(self, frame: CodedFrame, padded_hw: tuple[int, int], q: int | Tensor,
                       profile: NumericProfile = DEFAULT_PROFILE) -> list[Tensor]:
        """Entropy decoding alone: the y_hat of each of the frame's latents. It needs no reference
        frame (each hyperprior sees only its own z), so it can run ahead of `synthesize`."""
        latent_hw = (padded_hw[0] // 16, padded_hw[1] // 16)
        codecs = self._codecs(frame.kind)
        if len(frame.latents) != len(codecs):
            raise ValueError(f"a {frame.kind.name}-frame has {len(codecs)} latents, "
                             f"not {len(frame.latents)}")
        return [c.decompress(s, latent_hw, q, profile) for c, s in zip(codecs, frame.latents)]

    def synthesize(self, kind: FrameType, y_hats: list[Tensor], x_ref: Tensor | None,
                   dtype: torch.dtype | None = None) -> Tensor:
        """The frame from its decoded latents (and, for a P-frame, the reference); the synthesis
        transforms in `dtype` where given."""
        if kind == FrameType.I:
            return self._intra_decode(y_hats[0], dtype)
        y_m_hat, y_r_hat = y_hats
        return self._inter_decode(self._warp(self._reference(x_ref), y_m_hat, dtype), y_m_hat,
                                  y_r_hat, dtype)

    def extrapolate(self, x_ref: Tensor, y_m_hat: Tensor, dtype: torch.dtype | None = None
                    ) -> Tensor:
        """A lost frame's concealment: the reference moved again as a P-frame's motion latent
        moved its own (the motion carried on), no residual."""
        return self._warp(x_ref, y_m_hat, dtype).clamp(0, 1)

    def decompress(self, frame: CodedFrame, x_ref: Tensor | None, padded_hw: tuple[int, int],
                   q: int | Tensor, profile: NumericProfile = DEFAULT_PROFILE) -> Tensor:
        return self.synthesize(frame.kind, self.decode_latents(frame, padded_hw, q, profile), x_ref)

    # -- entropy-model upkeep -----------------------------------------------------------------
    def latent_codecs(self) -> list[LatentCodec]:
        return [self.intra.latent, self.motion.latent, self.residual.latent]

    def update(self, dtype: torch.dtype = torch.float64) -> None:
        """Build the range coder's tables, their masses computed in `dtype` (float32: those of
        streams before format 14), on the CPU as every model is loaded (one on another device is
        moved there and back: float32 tables a GPU built could differ from the encoder's)."""
        device = next(self.parameters()).device
        self.cpu()
        for codec in self.latent_codecs():
            codec.update(dtype=dtype)
        self.table_dtype = dtype
        self.to(device)

    def tables_for(self, version: int) -> None:
        """The range coder's tables as streams of format `version` are coded with (float64 from
        format 14, float32 before), rebuilt if they are not (the encoder asks for its own
        format's, a decoder for its stream's)."""
        dtype = torch.float64 if version >= FLOAT64_TABLES_SINCE else torch.float32
        if self.table_dtype != dtype:
            self.update(dtype)

    def table_margin(self) -> float:
        """How far this build's values lay from changing a table (nvc.models.priors): the error
        a machine may make and build the same tables."""
        return min(m.margin for codec in self.latent_codecs()
                   for m in (codec.entropy_bottleneck, codec.gaussian_conditional))

    def tables_crc(self) -> int:
        """crc32 of every table the range coder reads. update() builds them in float arithmetic
        on this machine; a stream records the encoder's value and a decoder whose tables differ
        refuses it instead of decoding garbage."""
        crc = 0
        for codec in self.latent_codecs():
            for t in codec.tables():
                crc = zlib.crc32(t.detach().to("cpu", torch.int64).numpy().astype("<i8").tobytes(), crc)
        return crc

    def aux_loss(self) -> Tensor:
        return torch.stack([c.aux_loss() for c in self.latent_codecs()]).sum()

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        for name, codec in (("intra", self.intra), ("motion", self.motion),
                            ("residual", self.residual)):
            codec.latent.load_cdf_buffers(state_dict, f"{name}.latent.")
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
