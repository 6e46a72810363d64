"""Frozen model configuration, stored inside every checkpoint and rebuilt from it (STYLE 4)."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

# Rate points of the shipped base, lambda in CompressAI's convention:
# loss = lambda * 255^2 * MSE + bpp  (one variable-rate model, one gain vector per quality).
DEFAULT_LAMBDAS = (0.013, 0.025, 0.0483, 0.0932)

# A quality map's positions may lie this many rungs below the first: the log gains extend the first
# segment's slope. Measured (ssf-small-v5, BasketballPass, 12 frames): each rung down halves the
# rate as the ladder's rungs do (-1: 3,326 B, 22.5 dB; -2: 1,794 B, 20.0 dB; rung 1: 6,274 B,
# 25.1 dB); above the top the quality saturates (+1 rung: +60% rate for +0.34 dB), so it stops there.
LADDER_BELOW = 2.0

# What a config may ask for (ModelConfig.__post_init__): far beyond any trained here (96-128
# channels, kernel 5, 5 levels whose coarsest blur is 12 pixels, 4 qualities), well short of what
# would exhaust a machine's memory before a single tensor is read.
MAX_WIDTH, MAX_KERNEL, MAX_RES_BLOCKS, MAX_SCALE_LEVELS, MAX_BLUR, MAX_QUALITIES = \
    1024, 15, 16, 8, 64.0, 16


@dataclass(frozen=True)
class ModelConfig:
    """Sizes of the SSF-style base. Every field is data; nothing is inferred from weights."""

    name: str = "ssf-small"
    intra_mid: int = 96  # N of the intra analysis/synthesis transforms
    intra_latent: int = 128  # M of the intra latent
    inter_mid: int = 64  # N of the motion and residual transforms
    inter_latent: int = 96  # M of the motion and residual latents
    hyper_channels: int = 64  # channels of every hyperprior path
    kernel: int = 5  # kernel size of every analysis and synthesis convolution (odd)
    res_blocks: int = 0  # residual blocks at 1/8 scale in every analysis and synthesis transform
    scale_levels: int = 5  # depth of the scale-space volume (level 0 = unblurred)
    sigma0: float = 1.5  # blur of level 1 in pixels; level k has sigma0 * 2**(k-1)
    lambdas: tuple[float, ...] = DEFAULT_LAMBDAS

    def __post_init__(self) -> None:
        """ValueError (one line) for a config no model should be built from: a weights file's is
        read from the file, and a width of millions would be allocated before any tensor of it is
        compared."""
        problem = self._problem()
        if problem:
            raise ValueError(f"model config: {problem}")

    def _problem(self) -> str | None:
        if not isinstance(self.name, str):
            return f"name must be text, got {self.name!r}"
        widths = ("intra_mid", "intra_latent", "inter_mid", "inter_latent", "hyper_channels")
        for name in widths + ("kernel", "res_blocks", "scale_levels"):
            if type(getattr(self, name)) is not int:
                return f"{name} must be an integer, got {getattr(self, name)!r}"
        for name in widths:
            if not 1 <= getattr(self, name) <= MAX_WIDTH:
                return f"{name} {getattr(self, name)} outside 1..{MAX_WIDTH}"
        if not (self.kernel % 2 and 1 <= self.kernel <= MAX_KERNEL):
            return f"kernel {self.kernel} is not odd and 1..{MAX_KERNEL}"
        if not 0 <= self.res_blocks <= MAX_RES_BLOCKS:
            return f"res_blocks {self.res_blocks} outside 0..{MAX_RES_BLOCKS}"
        if not 2 <= self.scale_levels <= MAX_SCALE_LEVELS:
            return f"scale_levels {self.scale_levels} outside 2..{MAX_SCALE_LEVELS}"
        if not (_number(self.sigma0) and 0 < self.sigma0 * 2 ** (self.scale_levels - 2) <= MAX_BLUR):
            return f"sigma0 {self.sigma0!r} puts the coarsest blur outside (0, {MAX_BLUR:g}] pixels"
        if not (isinstance(self.lambdas, tuple) and 1 <= len(self.lambdas) <= MAX_QUALITIES
                and all(_number(v) and v > 0 for v in self.lambdas)):
            return f"lambdas must be 1 to {MAX_QUALITIES} numbers above 0, got {self.lambdas!r}"
        return None

    @property
    def num_qualities(self) -> int:
        return len(self.lambdas)

    @property
    def multiple(self) -> int:
        """Frame sizes are padded to this: 16x main path times 4x hyper path."""
        return 64

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        """The config `to_json` wrote; ValueError (one line) for text that is not one nvc builds."""
        try:
            raw = json.loads(text)
        except (TypeError, ValueError) as e:
            raise ValueError(f"model config: not JSON ({e})") from None
        if not isinstance(raw, dict):
            raise ValueError("model config: not a JSON object")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown model config fields: {sorted(unknown)}")
        if isinstance(raw.get("lambdas"), list):
            raw["lambdas"] = tuple(raw["lambdas"])
        return cls(**raw)


def _number(v) -> bool:
    """A finite int or float, not a bool."""
    return type(v) in (int, float) and math.isfinite(v)


def width_variant(intra_mid: int, inter_mid: int, kernel: int = 5) -> ModelConfig:
    """The base with other transform widths, its latents scaled alike (96/64 -> 128/96 as in the
    shipped base), and another kernel size: "ssf-{intra_mid}-{inter_mid}" (then "-k{kernel}" where
    it is not 5), for the width and kernel search of issue 10."""
    base = ModelConfig()
    suffix = "" if kernel == base.kernel else f"-k{kernel}"
    return dataclasses.replace(base, name=f"ssf-{intra_mid}-{inter_mid}{suffix}",
                               intra_mid=intra_mid,
                               intra_latent=base.intra_latent * intra_mid // base.intra_mid,
                               inter_mid=inter_mid,
                               inter_latent=base.inter_latent * inter_mid // base.inter_mid,
                               kernel=kernel)


TINY = ModelConfig(
    name="ssf-tiny", intra_mid=8, intra_latent=8, inter_mid=8, inter_latent=8, hyper_channels=8,
    scale_levels=3, lambdas=(0.01, 0.04),
)
