"""Building blocks shared by the intra, motion and residual codecs (STYLE 6: compose, don't copy)."""
from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .priors import LowerBound


def conv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


class _NonNegative(nn.Module):
    """A parameter kept at or above `minimum` as the square of a bounded one (smooth near 0); the
    small pedestal keeps the gradient alive there."""

    pedestal: Tensor

    def __init__(self, minimum: float = 0.0, offset: float = 2.0 ** -18):
        super().__init__()
        self.register_buffer("pedestal", torch.tensor([offset ** 2]))
        self.lower_bound = LowerBound((minimum + offset ** 2) ** 0.5)

    def init(self, x: Tensor) -> Tensor:
        """The stored value that stands for x."""
        return torch.sqrt(torch.max(x + self.pedestal, self.pedestal))

    def forward(self, x: Tensor) -> Tensor:
        return self.lower_bound(x) ** 2 - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalization (Balle et al., 2016): y_i = x_i / sqrt(beta_i +
    sum_j gamma_ij x_j^2), or times it for the inverse (the synthesis side). Parameter names are
    CompressAI's, so weights move between the two."""

    def __init__(self, ch: int, inverse: bool = False, beta_min: float = 1e-6,
                 gamma_init: float = 0.1):
        super().__init__()
        self.inverse = inverse
        self.beta_reparam = _NonNegative(beta_min)
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(ch)))
        self.gamma_reparam = _NonNegative()
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(ch)))

    def forward(self, x: Tensor) -> Tensor:
        ch = x.shape[1]
        gamma = self.gamma_reparam(self.gamma).reshape(ch, ch, 1, 1)
        norm = F.conv2d(x ** 2, gamma, self.beta_reparam(self.beta))
        return x * (torch.sqrt(norm) if self.inverse else torch.rsqrt(norm))


def _activation(kind: str, ch: int, inverse: bool = False) -> nn.Module:
    if kind == "gdn":
        return GDN(ch, inverse=inverse)
    return nn.ReLU(inplace=True)


class ResBlock(nn.Module):
    """x + conv(relu(conv(x))), 3x3 convolutions, the second zero-initialised: a transform grown by
    blocks computes what it computed before until training moves them."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)
        for p in self.conv2.parameters():
            nn.init.zeros_(p)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


def _with_blocks(layers: list[nn.Module], after: int, ch: int, blocks: int) -> nn.Sequential:
    """`layers` named "0", "1", ... as a plain Sequential names them, with `blocks` ResBlocks
    ("r0", "r1", ...) after position `after`: the layers keep the names (parameters, adapter
    paths) they have in a transform without blocks."""
    named = [(str(i), m) for i, m in enumerate(layers)]
    named[after + 1:after + 1] = [(f"r{j}", ResBlock(ch)) for j in range(blocks)]
    return nn.Sequential(OrderedDict(named))


def analysis(in_ch: int, mid: int, latent: int, act: str = "relu", kernel: int = 5,
             blocks: int = 0) -> nn.Sequential:
    """g_a: four k x k stride-2 convolutions (5x5 in the shipped base), 16x down; `blocks`
    residual blocks at 1/8 scale, before the last."""
    return _with_blocks([
        conv(in_ch, mid, kernel), _activation(act, mid),
        conv(mid, mid, kernel), _activation(act, mid),
        conv(mid, mid, kernel), _activation(act, mid),
        conv(mid, latent, kernel),
    ], after=5, ch=mid, blocks=blocks)


def synthesis(latent: int, mid: int, out_ch: int, act: str = "relu", kernel: int = 5,
              blocks: int = 0) -> nn.Sequential:
    """g_s: four k x k stride-2 transposed convolutions (5x5 in the shipped base), 16x up (the
    layers adapters attach to); `blocks` residual blocks at 1/8 scale, after the first."""
    return _with_blocks([
        deconv(latent, mid, kernel), _activation(act, mid, inverse=True),
        deconv(mid, mid, kernel), _activation(act, mid, inverse=True),
        deconv(mid, mid, kernel), _activation(act, mid, inverse=True),
        deconv(mid, out_ch, kernel),
    ], after=1, ch=mid, blocks=blocks)


def hyper_analysis(latent: int, hyper: int) -> nn.Sequential:
    """h_a: 4x down."""
    return nn.Sequential(
        conv(latent, hyper, kernel=3, stride=1), nn.ReLU(inplace=True),
        conv(hyper, hyper), nn.ReLU(inplace=True),
        conv(hyper, hyper),
    )


def hyper_synthesis(hyper: int, latent: int) -> nn.Sequential:
    """h_s: 4x up, emits (means, scales) of the latent."""
    return nn.Sequential(
        deconv(hyper, hyper), nn.ReLU(inplace=True),
        deconv(hyper, latent * 3 // 2), nn.ReLU(inplace=True),
        conv(latent * 3 // 2, latent * 2, kernel=3, stride=1),
    )
