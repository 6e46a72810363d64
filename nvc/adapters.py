"""LoRA / DoRA for Conv2d and ConvTranspose2d: inject, merge, extract, load (STYLE 7).

peft's conv LoRA is the model: A mirrors the base kernel (in -> r channels, same kernel, stride and
padding), B is 1x1 (r -> out) and starts at zero, so the wrapped layer equals the base at step 0.
The update is folded into one kernel, dW = (alpha / r) * B . A, for either layer type:
    Conv2d          W (out, in, k, k):  dW[o, i] = sum_r B[o, r] A[r, i]
    ConvTranspose2d W (in, out, k, k):  dW[i, o] = sum_r A[i, r] B[o, r]
DoRA (Liu et al. 2024) is a hook on the same class: W' = m * (W + dW) / ||W + dW||_c with the
per-output-channel magnitude m initialised to ||W||_c.

A is drawn from a seed (`seed`, layer index) and frozen by default, so only B (and m for DoRA)
needs to be sent; the decoder regenerates A from the seed in the header. FULL is the same hook with
dW a full tensor: fine-tuning every decoder weight, coded like the adapters, for comparison.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class AdapterKind(IntEnum):
    LORA = 1
    DORA = 2
    FULL = 3  # every weight of the layer fine-tuned (the baseline adapters are measured against)


@dataclass(frozen=True)
class AdapterSpec:
    """What the decoder needs to rebuild the adapters (stored in the adapter unit)."""

    kind: AdapterKind
    layers: tuple[str, ...]  # module paths, e.g. "intra.g_s.0"
    ranks: tuple[int, ...]
    seed: int
    alpha: float = 0.0  # 0 means alpha = rank (update scale 1)


def regenerate_a(shape: tuple[int, ...], seed: int, index: int) -> Tensor:
    """The frozen A of layer `index`: Kaiming-uniform like peft's default, from a CPU generator so
    every platform draws the same numbers."""
    g = torch.Generator().manual_seed(seed * 1000003 + index)
    fan_in = shape[1] * math.prod(shape[2:]) if len(shape) > 2 else shape[1]
    bound = 1.0 / math.sqrt(fan_in)
    return (torch.rand(shape, generator=g) * 2 - 1) * bound


class AdaptedConv(nn.Module):
    """Wraps one Conv2d or ConvTranspose2d; the base weight stays frozen."""

    def __init__(self, base: nn.Conv2d | nn.ConvTranspose2d, rank: int, kind: AdapterKind,
                 a: Tensor | None, alpha: float = 0.0):
        super().__init__()
        self.base, self.rank, self.kind = base, rank, kind
        self.scale = (alpha or rank) / max(rank, 1)
        self.transposed = isinstance(base, nn.ConvTranspose2d)
        w = base.weight
        out_ch = w.shape[1] if self.transposed else w.shape[0]
        full = kind == AdapterKind.FULL
        if not full and a is None:
            raise ValueError("LoRA and DoRA need the A matrix")
        self.lora_a = None if a is None or full else nn.Parameter(a.to(w), requires_grad=False)
        self.lora_b = None if full else nn.Parameter(torch.zeros(out_ch, rank, device=w.device,
                                                                 dtype=w.dtype))
        self.full_delta = nn.Parameter(torch.zeros_like(w)) if full else None
        # DoRA: m = ||W||_c + magnitude_delta; the delta starts at 0 and is what travels.
        self.magnitude_delta = nn.Parameter(torch.zeros_like(self._column_norm(w))) \
            if kind == AdapterKind.DORA else None
        for p in base.parameters():
            p.requires_grad_(False)
        # Applied to every sent tensor inside `weight()`; fitting sets a straight-through quantiser.
        self.sent_transform: Callable[[Tensor], Tensor] | None = None

    @staticmethod
    def a_shape(base: nn.Conv2d | nn.ConvTranspose2d, rank: int) -> tuple[int, ...]:
        w = base.weight
        if isinstance(base, nn.ConvTranspose2d):
            return (w.shape[0], rank, *w.shape[2:])
        return (rank, *w.shape[1:])

    def _column_norm(self, w: Tensor) -> Tensor:
        """||W||_c per output channel, shaped to broadcast against W."""
        if self.transposed:
            return torch.linalg.vector_norm(w, dim=(0, 2, 3), keepdim=True)
        return torch.linalg.vector_norm(w, dim=(1, 2, 3), keepdim=True)

    def _sent(self, t: Tensor) -> Tensor:
        return t if self.sent_transform is None else self.sent_transform(t)

    def delta(self) -> Tensor:
        if self.full_delta is not None:
            return self._sent(self.full_delta)
        assert self.lora_a is not None and self.lora_b is not None
        b = self._sent(self.lora_b)
        if self.transposed:
            return torch.einsum("irkl,or->iokl", self.lora_a, b) * self.scale
        return torch.einsum("or,rikl->oikl", b, self.lora_a) * self.scale

    def weight(self) -> Tensor:
        w = self.base.weight + self.delta()
        if self.magnitude_delta is not None:
            m = self._column_norm(self.base.weight) + self._sent(self.magnitude_delta)
            w = m * w / self._column_norm(w)
        return w

    def forward(self, x: Tensor) -> Tensor:
        m = self.base
        if self.transposed:
            return F.conv_transpose2d(x, self.weight(), m.bias, m.stride,
                                      m.padding,  # type: ignore[arg-type]  # int pairs here
                                      m.output_padding, m.groups, m.dilation)
        return F.conv2d(x, self.weight(), m.bias, m.stride, m.padding, m.dilation, m.groups)

    def merged(self) -> nn.Module:
        """A plain layer with the adapted weight folded in (decode-time cost = the base's)."""
        with torch.no_grad():
            self.base.weight.copy_(self.weight())
        return self.base


# Every layer an adapter unit may name, in the order format 2 indexes them: the transposed
# convolutions of the intra, motion and residual decoders (tests check it against the model).
LAYER_TABLE: tuple[str, ...] = tuple(f"{codec}.g_s.{i}" for codec in ("intra", "motion", "residual")
                                     for i in (0, 2, 4, 6))


def default_layers(model: nn.Module) -> list[str]:
    """Every transposed convolution of the intra, motion and residual decoders (g_s)."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.ConvTranspose2d) and ".g_s." in f".{name}"]


def default_ranks(layers: list[str], by_depth: tuple[int, ...] = (16, 8, 8, 2)) -> list[int]:
    """The reference layout: rank by position within each decoder (first deconv 16, last 2)."""
    ranks: list[int] = []
    seen: dict[str, int] = {}
    for name in layers:
        decoder = name.rsplit(".", 1)[0]
        depth = seen.get(decoder, 0)
        seen[decoder] = depth + 1
        ranks.append(by_depth[min(depth, len(by_depth) - 1)])
    return ranks


def _parent(model: nn.Module, path: str) -> tuple[nn.Module, str]:
    parent_path, _, child = path.rpartition(".")
    return (model.get_submodule(parent_path) if parent_path else model), child


def inject(model: nn.Module, spec: AdapterSpec) -> list[AdaptedConv]:
    """Wrap the named layers in place; returns the wrappers in spec order."""
    if len(spec.layers) != len(spec.ranks):
        raise ValueError("one rank per adapted layer")
    wrappers = []
    for index, (path, rank) in enumerate(zip(spec.layers, spec.ranks)):
        parent, child = _parent(model, path)
        base = getattr(parent, child)
        if not isinstance(base, (nn.Conv2d, nn.ConvTranspose2d)):
            raise ValueError(f"{path} is a {type(base).__name__}, not a convolution")
        if rank < 1:
            raise ValueError(f"{path}: rank {rank}, where an adapter's rank is at least 1")
        a = None if spec.kind == AdapterKind.FULL else \
            regenerate_a(AdaptedConv.a_shape(base, rank), spec.seed, index)
        wrapper = AdaptedConv(base, rank, spec.kind, a, spec.alpha)
        setattr(parent, child, wrapper)
        wrappers.append(wrapper)
    return wrappers


def merge(model: nn.Module) -> None:
    """Fold every adapter into its layer and remove the wrappers."""
    for name, m in list(model.named_modules()):
        if isinstance(m, AdaptedConv):
            parent, child = _parent(model, name)
            setattr(parent, child, m.merged())


def sent_tensors(wrappers: list[AdaptedConv]) -> list[Tensor]:
    """What travels in the stream, in order: each layer's B, then its magnitude delta for DoRA.
    All start at zero, so one zero-centred prior codes them."""
    out: list[Tensor] = []
    for w in wrappers:
        sent = w.full_delta if w.full_delta is not None else w.lora_b
        assert sent is not None
        out.append(sent)
        if w.magnitude_delta is not None:
            out.append(w.magnitude_delta)
    return out


def load_sent(wrappers: list[AdaptedConv], tensors: list[Tensor]) -> None:
    expected = sent_tensors(wrappers)
    if len(tensors) != len(expected):
        raise ValueError(f"expected {len(expected)} adapter tensors, got {len(tensors)}")
    with torch.no_grad():
        for dst, src in zip(expected, tensors):
            if dst.shape != src.shape:
                raise ValueError(f"adapter tensor shape {tuple(src.shape)} != {tuple(dst.shape)}")
            dst.copy_(src)
