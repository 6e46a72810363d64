"""Entropy parameters that are exact on every device: a fixed-point copy of the hyper-synthesis.

The range decoder depends on one thing the network computes: the CDF index of every latent
element, picked from its predicted scale. A float h_s moves its scales by an ulp with the thread
count, the CPU's instruction set, the GPU or the torch version, and an index that moves with them
makes the decoder read garbage (CompressAI #279, DCVC #118). Here h_s runs on integers, in the
spirit of Balle et al., "Integer networks for data compression with latent-variable models"
(ICLR 2019), applied after training:

- z enters as its integer symbols plus the median rounded to FRAC_IN fractional bits;
- each layer's weights are rounded once per output channel to at most WEIGHT_BITS bits (a power-
  of-two scale from frexp), its bias to the accumulator's scale;
- every product and sum is an integer below 2^53, so float64 holds it exactly whatever the order
  of summation, provided the convolution only multiplies and adds: torch's float64 convolutions
  on the CPU (im2col and dgemm), else unfold + matmul (the FFT or Winograd algorithms a GPU
  convolution library may pick are not exact);
- each layer rescales by a power of two (round half up, by floor) and clamps to ACT_LIMIT;
- the scale index of an element counts the SCALE_THRESHOLDS its fixed-point scale exceeds.

The means come out of the same integers, so the decoder's dequantisation is exact too. Nothing
here depends on a float rounding mode beyond IEEE-754 float64 arithmetic on integers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FRAC_IN = 12  # fractional bits of z and of every hidden activation
FRAC_OUT = 12  # fractional bits of the emitted means and scales
WEIGHT_BITS = 16  # |integer weight| <= 2^WEIGHT_BITS, per output channel
ACT_LIMIT = float(2 ** 22)  # activations are clamped to +-ACT_LIMIT (+-1024 in real units)
EXACT_LIMIT = 2.0 ** 53  # float64 holds every integer below this exactly

# The scale table entropy.SCALE_TABLE (CompressAI's: 64 steps from 0.11 to 256, log-spaced)
# times 2^FRAC_OUT, rounded: fixed integers, so no device computes them. An element takes index i
# when its scale exceeds the first i of them (CompressAI's build_indexes, on integers).
SCALE_THRESHOLDS = (
    451, 510, 576, 652, 737, 834, 943, 1066, 1206, 1364, 1542, 1744, 1973, 2231, 2523, 2854, 3227,
    3650, 4128, 4668, 5280, 5971, 6753, 7637, 8637, 9768, 11047, 12494, 14130, 15980, 18072, 20439,
    23115, 26142, 29565, 33437, 37815, 42767, 48367, 54701, 61863, 69964, 79126, 89487, 101205,
    114457, 129445, 146395, 165565, 187246, 211765, 239494, 270856, 306323, 346435, 391799,
    443104, 501127, 566748, 640962, 724893, 819815, 927167)


@dataclass(frozen=True)
class ExactLayer:
    """One convolution in fixed point: weights in the module's layout and bias (O,) as integer-
    valued float64, `divisor` (O,) = 2^shift that brings the accumulator to the output's fractional
    bits."""

    weight: Tensor  # Conv2d (O, C, k, k); ConvTranspose2d (C, O, k, k)
    bias: Tensor
    divisor: Tensor
    transposed: bool
    stride: int
    padding: int
    output_padding: int
    relu: bool


def _fixed_point(m: nn.Conv2d | nn.ConvTranspose2d, frac_out: int, relu: bool) -> ExactLayer:
    if m.groups != 1 or m.dilation != (1, 1) or isinstance(m.padding, str):
        raise ValueError("exact hyper-synthesis supports plain convolutions only")
    transposed = isinstance(m, nn.ConvTranspose2d)
    w = m.weight.detach().to("cpu", torch.float64)
    w_out = w.transpose(0, 1) if transposed else w  # output channel first
    out_ch = w_out.shape[0]
    bias = torch.zeros(out_ch, dtype=torch.float64) if m.bias is None else \
        m.bias.detach().to("cpu", torch.float64)
    weights, biases, divisors = [], [], []
    for c in range(out_ch):
        peak = float(w_out[c].abs().max())
        exponent = math.frexp(peak)[1] if peak > 0 else 0  # peak < 2^exponent
        frac_w = WEIGHT_BITS - exponent
        shift = FRAC_IN + frac_w - frac_out
        if shift < 1:
            raise ValueError(f"weights too large for fixed point (peak {peak})")
        weights.append(torch.round(w_out[c] * 2.0 ** frac_w))
        biases.append(torch.round(bias[c] * 2.0 ** (FRAC_IN + frac_w)))
        divisors.append(2.0 ** shift)
    weight = torch.stack(weights)
    bias_t = torch.stack(biases)
    if weight[0].numel() * ACT_LIMIT * 2.0 ** WEIGHT_BITS + float(bias_t.abs().max()) >= EXACT_LIMIT:
        raise ValueError("layer too wide for exact float64 accumulation")
    output_padding = int(m.output_padding[0]) if transposed else 0
    return ExactLayer(weight.transpose(0, 1).contiguous() if transposed else weight, bias_t,
                      torch.tensor(divisors, dtype=torch.float64), transposed, int(m.stride[0]),
                      int(m.padding[0]), output_padding, relu)


def _accumulate_unfolded(layer: ExactLayer, x: Tensor) -> Tensor:
    """The convolution as unfold + matmul, transposed ones over a zero-stuffed input: exact on any
    device whose matmul adds integers exactly (dgemm does; a library's FFT or Winograd
    convolution would not)."""
    w, s, p = layer.weight.to(x.device), layer.stride, layer.padding
    if layer.transposed:
        k = w.shape[-1]
        b, c, h, wd = x.shape
        stuffed = x.new_zeros(b, c, (h - 1) * s + 1, (wd - 1) * s + 1)
        stuffed[:, :, ::s, ::s] = x
        lo, hi = k - 1 - p, k - 1 - p + layer.output_padding
        x, w, s = F.pad(stuffed, (lo, hi, lo, hi)), w.transpose(0, 1).flip(2, 3), 1
    else:
        x = F.pad(x, (p, p, p, p))
    out_ch, _, k, _ = w.shape
    b, _, h, wd = x.shape
    cols = F.unfold(x, k, stride=s)  # (B, C*k*k, L): a copy, no arithmetic
    acc = w.reshape(out_ch, -1) @ cols
    return acc.reshape(b, out_ch, (h - k) // s + 1, (wd - k) // s + 1)


def _accumulate(layer: ExactLayer, x: Tensor, unfolded: bool = False) -> Tensor:
    """conv(x, W) on integers. On the CPU, torch's float64 convolutions are im2col / col2im and
    dgemm (no oneDNN or FFT path for float64), so they are exact and 3-7x faster than unfolding;
    elsewhere the unfolded form (tests check both give the same integers)."""
    if unfolded or x.device.type != "cpu":
        return _accumulate_unfolded(layer, x)
    if layer.transposed:
        return F.conv_transpose2d(x, layer.weight, None, layer.stride, layer.padding,
                                  layer.output_padding)
    return F.conv2d(x, layer.weight, None, layer.stride, layer.padding)


def _run(layer: ExactLayer, x: Tensor, unfolded: bool = False) -> Tensor:
    acc = _accumulate(layer, x, unfolded) + layer.bias.to(x.device)[:, None, None]
    divisor = layer.divisor.to(x.device)[:, None, None]
    y = torch.floor((acc + divisor / 2) / divisor)  # round half up: exact for powers of two
    return y.clamp(0, ACT_LIMIT) if layer.relu else y


class ExactHyperSynthesis:
    """Built from a trained h_s (Conv2d / ConvTranspose2d layers, each optionally followed by a
    ReLU); `params` returns the means and the scale indexes from z's integer symbols."""

    def __init__(self, h_s: nn.Sequential):
        convs: list[tuple[nn.Conv2d | nn.ConvTranspose2d, bool]] = []
        for m in h_s:
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                convs.append((m, False))
            elif isinstance(m, nn.ReLU) and convs and not convs[-1][1]:
                convs[-1] = (convs[-1][0], True)
            else:
                raise ValueError(f"exact hyper-synthesis cannot run a {type(m).__name__}")
        if not convs or convs[-1][1]:
            raise ValueError("h_s must end with a convolution")
        self.layers = [_fixed_point(m, FRAC_OUT if i == len(convs) - 1 else FRAC_IN, relu)
                       for i, (m, relu) in enumerate(convs)]

    def fixed_point(self, z_symbols: Tensor, medians: Tensor, unfolded: bool = False) -> Tensor:
        """z_symbols (B, C, h, w) integers, medians (1, C, 1, 1): h_s's output times 2^FRAC_OUT."""
        x = z_symbols.double() * 2.0 ** FRAC_IN + torch.round(medians.double() * 2.0 ** FRAC_IN)
        x = x.clamp(-ACT_LIMIT, ACT_LIMIT)
        for layer in self.layers:
            x = _run(layer, x, unfolded)
        return x

    def params(self, z_symbols: Tensor, medians: Tensor) -> tuple[Tensor, Tensor]:
        """(means as float32, scale indexes as int32)."""
        means, scales = self.fixed_point(z_symbols, medians).chunk(2, dim=1)
        thresholds = torch.tensor(SCALE_THRESHOLDS, dtype=torch.float64, device=scales.device)
        indexes = torch.bucketize(scales.contiguous(), thresholds).int()
        return (means / 2.0 ** FRAC_OUT).float(), indexes
