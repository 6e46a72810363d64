"""Building blocks shared by the intra, motion and residual codecs (STYLE 6: compose, don't copy)."""
from __future__ import annotations

from collections import OrderedDict

import torch
from compressai.layers import GDN
from torch import Tensor, nn


def conv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2)


def deconv(in_ch: int, out_ch: int, kernel: int = 5, stride: int = 2) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(
        in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, output_padding=stride - 1
    )


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


# Without autograd (coding), the layers at the largest scales, where the activations are the mid
# channels at half resolution, run in stripes of this many full-resolution rows; on this project's CPU
# the result is bit for bit one pass's (the convolutions' sums do not depend on the height), a
# 3840x2160 I-frame's synthesis peaks at 1.5 GB instead of 3.5 GB and takes 0.9x the time.
STRIPE_ROWS = 256


def analyze(g_a: nn.Sequential, x: Tensor, kernel: int, stripe_rows: int = STRIPE_ROWS) -> Tensor:
    """g_a(x) (`kernel`: its convolutions' size), its first two downsamplings in stripes of
    `stripe_rows` input rows where no autograd runs."""
    if torch.is_grad_enabled() or x.shape[-2] <= stripe_rows:
        return g_a(x)
    layers = list(g_a)
    return _run(layers[3:], _striped(layers[:3], x, 1, 4, stripe_rows, kernel))


def synthesize(g_s: nn.Sequential, y: Tensor, kernel: int, stripe_rows: int = STRIPE_ROWS
               ) -> Tensor:
    """g_s(y) (`kernel`: its convolutions' size), its last two upsamplings in stripes of
    `stripe_rows` output rows where no autograd runs."""
    if torch.is_grad_enabled() or y.shape[-2] * 16 <= stripe_rows:
        return g_s(y)
    layers = list(g_s)
    return _striped(layers[-3:], _run(layers[:-3], y), 4, 1, stripe_rows // 4, kernel)


def _run(layers: list[nn.Module], x: Tensor) -> Tensor:
    for layer in layers:
        x = layer(x)
    return x


def _striped(layers: list[nn.Module], x: Tensor, up: int, down: int, rows: int, kernel: int
             ) -> Tensor:
    """`layers` (two k x k stride-2 convolutions or transposed convolutions around a pointwise
    activation: output rows = input rows * up / down) over stripes of `rows` input rows, each read
    with a halo of rows either side wide enough for both kernels (3 (k // 2) rows, rounded up to
    the 4 that keeps the strides aligned) and cropped back to its own rows."""
    halo = -(-3 * (kernel // 2) // 4) * 4
    h = x.shape[-2]
    out = []
    for top in range(0, h, rows):
        bottom = min(top + rows, h)
        lo, hi = max(top - halo, 0), min(bottom + halo, h)
        y = _run(layers, x[..., lo:hi, :])
        first = (top - lo) * up // down
        out.append(y[..., first:first + (bottom - top) * up // down, :])
    return torch.cat(out, dim=-2)


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
