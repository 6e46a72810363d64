"""Quantisation and entropy coding of adapter parameters under a spike-and-slab prior.

Every sent value v is quantised to k = round(v / step) and coded with nvc's rANS coder under
the discretised mixture  p(k) = pi N(k step; 0, s_spike^2) + (1 - pi) N(k step; 0, s_slab^2)
integrated over the bin; symbols beyond +-MAX_SYMBOL take the coder's escape path. The same
`quantize` serves fitting (straight-through), the encoder's reconstruction and serialisation, so
the decoder sees exactly what the encoder used (STYLE 8).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .models import rans
from .models.range_coder import legacy_decode

MAX_SYMBOL = 30
CODER_PRECISION = 16


@dataclass(frozen=True)
class SpikeSlabPrior:
    """Defaults: most mass at zero (a zero costs ~0.1 bit), a wide slab for the useful values."""

    step: float = 5e-3  # quantisation step of the reference work
    pi_spike: float = 0.95
    sigma_spike: float = 1.25e-3  # step / 4: the zero bin holds 95% of the spike
    sigma_slab: float = 5e-2

    def _cdf(self, x: Tensor) -> Tensor:
        def phi(z):
            return 0.5 * (1 + torch.erf(z / math.sqrt(2)))
        return self.pi_spike * phi(x / self.sigma_spike) + (1 - self.pi_spike) * phi(x / self.sigma_slab)

    def likelihood(self, v: Tensor) -> Tensor:
        """Probability of the bin around v (differentiable in v), floored for stable logs."""
        half = self.step / 2
        return (self._cdf(v + half) - self._cdf(v - half)).clamp_min(1e-9)

    def bits(self, v: Tensor, noisy: bool = True) -> Tensor:
        """Rate of v in bits; with `noisy`, uniform noise stands in for rounding (a proxy whose
        gradient reaches v, unlike rounding's)."""
        if noisy:
            v = v + (torch.rand_like(v) - 0.5) * self.step
        return -torch.log2(self.likelihood(v)).sum()

    def quantized_cdf(self) -> list[int]:
        k = torch.arange(-MAX_SYMBOL, MAX_SYMBOL + 1, dtype=torch.float64) * self.step
        pmf = self.likelihood(k).double()
        tail = (1 - pmf.sum()).clamp_min(1e-9)
        return rans.quantized_cdf(torch.cat((pmf, tail.view(1))).float().numpy(),
                                  CODER_PRECISION).tolist()


def quantize(v: Tensor, step: float) -> Tensor:
    """Integer symbols of v (as a float tensor)."""
    return torch.round(v / step)


def quantize_ste(v: Tensor, step: float) -> Tensor:
    """v rounded to the step grid in the forward pass, identity gradient (fitting)."""
    return v + (quantize(v, step) * step - v).detach()


def _tables(prior: SpikeSlabPrior) -> rans.Tables:
    cdf = prior.quantized_cdf()
    return rans.Tables([cdf], [len(cdf)], [-MAX_SYMBOL])


def encode_symbols(symbols: list[int], prior: SpikeSlabPrior) -> bytes:
    """The coded parameters: nvc's rANS (format 9), all symbols under the prior's one table."""
    return rans.encode(_tables(prior), np.asarray(symbols, dtype=np.int32),
                       np.zeros(len(symbols), dtype=np.int32))


def decode_symbols(data: bytes, count: int, prior: SpikeSlabPrior, legacy: bool = False
                   ) -> list[int]:
    """`count` symbols back; `legacy`: coded by CompressAI's rANS (formats before 9)."""
    tables = _tables(prior)
    if legacy:
        return legacy_decode(tables, data, np.zeros(count, dtype=np.int32)).tolist()
    return rans.decode(tables, data, np.zeros(count, dtype=np.int32),
                       "adapter parameters").tolist()
