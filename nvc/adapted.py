"""Adapters between the container and the model: build the adapter unit from fitted tensors, and
rebuild a merged model from a unit. Encoder and decoder both go through `apply_unit`, so the encoder
reconstructs with exactly the weights the decoder will merge."""
from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor

from .adapter_coding import SpikeSlabPrior, decode_symbols, encode_symbols, quantize
from .adapters import AdapterKind, AdapterSpec, inject, load_sent, merge, sent_tensors
from .bitstream import AdapterUnit
from .errors import BitstreamError
from .models.ssf import SSF, model_device


def unit_prior(unit: AdapterUnit) -> SpikeSlabPrior:
    return SpikeSlabPrior(unit.step, unit.pi_spike, unit.sigma_spike, unit.sigma_slab)


def spec_of(unit: AdapterUnit) -> AdapterSpec:
    if unit.kind not in AdapterKind._value2member_map_:
        raise BitstreamError(f"damaged adapter unit: unknown adapter type {unit.kind}")
    return AdapterSpec(AdapterKind(unit.kind), unit.layers, unit.ranks, unit.seed, unit.alpha)


def _as_stored(x: float) -> float:
    """The value a float field has after the container's float32 round trip."""
    return float(np.float32(x))


def make_unit(spec: AdapterSpec, tensors: list[Tensor], prior: SpikeSlabPrior) -> AdapterUnit:
    """Quantise and entropy-code the sent tensors (B, and DoRA's magnitude deltas). The prior is
    first rounded to what the container stores, so encoder and decoder build identical CDFs."""
    prior = SpikeSlabPrior(*(_as_stored(v) for v in (prior.step, prior.pi_spike,
                                                      prior.sigma_spike, prior.sigma_slab)))
    spec = AdapterSpec(spec.kind, spec.layers, spec.ranks, spec.seed, _as_stored(spec.alpha))
    symbols = torch.cat([quantize(t.detach().cpu().float(), prior.step).reshape(-1)
                         for t in tensors]).long().tolist()
    return AdapterUnit(int(spec.kind), spec.seed, spec.alpha, prior.step, prior.pi_spike,
                       prior.sigma_spike, prior.sigma_slab, spec.layers, spec.ranks, len(symbols),
                       encode_symbols(symbols, prior))


def apply_unit(base: SSF, unit: AdapterUnit) -> SSF:
    """A copy of `base` with the unit's dequantised adapters merged into its weights."""
    model = copy.deepcopy(base)
    spec = spec_of(unit)
    try:
        wrappers = inject(model, spec)
    except (AttributeError, ValueError) as e:
        raise BitstreamError(f"adapter unit does not fit this model: {e}") from None
    shapes = [t.shape for t in sent_tensors(wrappers)]
    expected = sum(s.numel() for s in shapes)
    if unit.symbol_count != expected:
        raise BitstreamError(f"damaged adapter unit: {unit.symbol_count} values, layers need {expected}")
    try:
        symbols = decode_symbols(unit.coded, unit.symbol_count, unit_prior(unit),
                                 unit.legacy_coder)
    except (RuntimeError, ValueError) as e:
        raise BitstreamError(f"damaged adapter unit: {e}") from None
    flat = torch.tensor(symbols, dtype=torch.float32) * unit.step
    device = model_device(base)
    pieces = flat.split([s.numel() for s in shapes])
    load_sent(wrappers, [p.reshape(s).to(device) for p, s in zip(pieces, shapes)])
    merge(model)
    return model
