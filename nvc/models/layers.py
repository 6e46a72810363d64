"""Building blocks shared by the intra, motion and residual codecs (STYLE 6: compose, don't copy)."""
from __future__ import annotations

from compressai.layers import GDN
from torch import nn


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


def analysis(in_ch: int, mid: int, latent: int, act: str = "relu", kernel: int = 5
             ) -> nn.Sequential:
    """g_a: four k x k stride-2 convolutions (5x5 in the shipped base), 16x down."""
    return nn.Sequential(
        conv(in_ch, mid, kernel), _activation(act, mid),
        conv(mid, mid, kernel), _activation(act, mid),
        conv(mid, mid, kernel), _activation(act, mid),
        conv(mid, latent, kernel),
    )


def synthesis(latent: int, mid: int, out_ch: int, act: str = "relu", kernel: int = 5
              ) -> nn.Sequential:
    """g_s: four k x k stride-2 transposed convolutions (5x5 in the shipped base), 16x up (the
    layers adapters attach to)."""
    return nn.Sequential(
        deconv(latent, mid, kernel), _activation(act, mid, inverse=True),
        deconv(mid, mid, kernel), _activation(act, mid, inverse=True),
        deconv(mid, mid, kernel), _activation(act, mid, inverse=True),
        deconv(mid, out_ch, kernel),
    )


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
