"""Scale-space warping (Agustsson et al. 2020) with the flow in pixels.

CompressAI's ScaleSpaceFlow adds the decoded flow to a normalised [-1, 1] grid, so a flow learned on
256x256 crops means something else at 1080p (CompressAI issue #307). Here the motion decoder emits
(dx, dy) in pixels and the scale in volume levels; the conversion to grid_sample's normalised
coordinates happens here, from the actual frame size, so the model is resolution-independent.
"""
from __future__ import annotations

import math
from functools import partial

import torch
import torch.nn.functional as F
from torch import Tensor

from . import stripes


def _gaussian_kernel(sigma: float, device, dtype) -> Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with replicate padding. x: (B, C, H, W)."""
    k = _gaussian_kernel(sigma, x.device, x.dtype)
    r = k.numel() // 2
    c = x.shape[1]
    x = F.pad(x, (r, r, 0, 0), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    x = F.pad(x, (0, 0, r, r), mode="replicate")
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def scale_space_volume(x: Tensor, levels: int, sigma0: float) -> Tensor:
    """(B, C, H, W) -> (B, C, levels, H, W); level 0 is x, level k is blurred by sigma0 * 2**(k-1).
    The levels are blurred on the stripe threads where no autograd runs (each whole: the same
    bits)."""
    sigmas = [sigma0 * 2 ** (k - 1) for k in range(1, levels)]
    return torch.stack([x, *stripes.in_parallel(partial(gaussian_blur, x), sigmas, x.device)], dim=2)


def scale_space_warp(x_ref: Tensor, flow: Tensor, levels: int, sigma0: float) -> Tensor:
    """Warp x_ref (B, C, H, W) by flow (B, 3, H, W) = (dx px, dy px, scale level); without
    autograd the rows are sampled in stripes on the stripe threads (each output pixel is computed
    from its own flow alone: the same bits). Always in float32, under autocast too: training under
    bf16 autocast warps as the codec does (outside autocast), and the CPU's bfloat16 depthwise
    convolutions with the coarse levels' long kernels can take minutes a frame (torch 2.15,
    channels_last)."""
    with torch.autocast(x_ref.device.type, enabled=False):
        x_ref, flow = x_ref.float(), flow.float()
        vol = scale_space_volume(x_ref, levels, sigma0)
        h = x_ref.shape[-2]
        rows = stripes.STRIPE_ROWS if stripes.striped(x_ref.device) else h
        return torch.cat(stripes.in_parallel(partial(_sample, vol, flow, levels, rows),
                                             range(0, h, rows), x_ref.device), dim=-2)


def _sample(vol: Tensor, flow: Tensor, levels: int, rows: int, top: int) -> Tensor:
    """Rows top .. top + rows of the warp."""
    _, _, _, h, w = vol.shape
    bottom = min(top + rows, h)
    f = flow[..., top:bottom, :]
    ys, xs = torch.meshgrid(
        torch.arange(top, bottom, device=vol.device, dtype=vol.dtype),
        torch.arange(w, device=vol.device, dtype=vol.dtype), indexing="ij")
    px = xs + f[:, 0]
    py = ys + f[:, 1]
    level = f[:, 2].clamp(0, levels - 1)
    # align_corners=True: pixel centre 0 -> -1, pixel centre (n-1) -> +1.
    gx = 2 * px / max(w - 1, 1) - 1
    gy = 2 * py / max(h - 1, 1) - 1
    gz = 2 * level / max(levels - 1, 1) - 1
    grid = torch.stack((gx, gy, gz), dim=-1).unsqueeze(1)  # (B, 1, rows, W, 3)
    out = F.grid_sample(vol, grid, mode="bilinear", padding_mode="border", align_corners=True)
    return out.squeeze(2)
