"""Exact properties of the adapter maths and of their coding (issue 12: mutation-tested)."""
import copy
import math

import pytest
import torch
from torch import nn

from nvc.adapter_coding import CODER_PRECISION, MAX_SYMBOL, SpikeSlabPrior, quantize, quantize_ste
from nvc.adapters import (
    LAYER_TABLE,
    AdaptedConv,
    AdapterKind,
    AdapterSpec,
    default_layers,
    default_ranks,
    inject,
    load_sent,
    merge,
    regenerate_a,
    sent_tensors,
)
from nvc.models.config import TINY
from nvc.models.ssf import SSF


def test_quantize_ste_is_the_grid_forward_and_identity_backward():
    v = torch.tensor([0.0, 0.0026, -0.0074, 0.0124, 1.0], requires_grad=True)
    out = quantize_ste(v, 0.005)
    assert torch.allclose(out, torch.tensor([0.0, 0.005, -0.005, 0.01, 1.0]), atol=1e-7)
    assert quantize(v, 0.005).tolist() == [0.0, 1.0, -1.0, 2.0, 200.0]
    (out * torch.arange(5.0)).sum().backward()
    assert v.grad.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_prior_cdf_is_the_discretised_mixture():
    prior = SpikeSlabPrior()
    cdf = prior.quantized_cdf()
    assert len(cdf) == 2 * MAX_SYMBOL + 3  # a start, 61 symbols, the escape
    assert cdf[0] == 0 and cdf[-1] == 1 << CODER_PRECISION
    assert all(b > a for a, b in zip(cdf, cdf[1:]))
    mass = [(b - a) / (1 << CODER_PRECISION) for a, b in zip(cdf, cdf[1:])]
    for symbol in (0, 1, -1, 4, -10, MAX_SYMBOL):
        expected = float(prior.likelihood(torch.tensor(symbol * prior.step, dtype=torch.float64)))
        assert mass[symbol + MAX_SYMBOL] == pytest.approx(expected, abs=2e-4), symbol
    assert mass[MAX_SYMBOL] > 0.9  # the spike: a zero costs ~0.1 bit
    assert 0 < mass[-1] < 1e-3  # the escape's mass is the (tiny) tail beyond +-MAX_SYMBOL


def test_prior_bits_noisy_and_exact():
    prior = SpikeSlabPrior()
    v = torch.tensor([0.0, 0.005, -0.05])
    exact = prior.bits(v, noisy=False)
    expected = -sum(math.log2(float(prior.likelihood(x))) for x in v)
    assert float(exact) == pytest.approx(expected, rel=1e-5)
    torch.manual_seed(0)
    assert float(prior.bits(v)) != pytest.approx(float(exact), rel=1e-6)


LAYERS = [nn.Conv2d(4, 6, 3, padding=1), nn.ConvTranspose2d(4, 6, 3, padding=1)]


@pytest.mark.parametrize("layer", LAYERS)
def test_dora_keeps_each_output_channels_norm_at_its_magnitude(layer):
    torch.manual_seed(0)
    transposed = isinstance(layer, nn.ConvTranspose2d)
    dims = (0, 2, 3) if transposed else (1, 2, 3)
    norms = torch.linalg.vector_norm(layer.weight, dim=dims)
    a = regenerate_a(AdaptedConv.a_shape(layer, 2), seed=3, index=0)
    w = AdaptedConv(copy.deepcopy(layer), 2, AdapterKind.DORA, a)
    assert w.magnitude_delta.shape == ((1, 6, 1, 1) if transposed else (6, 1, 1, 1))
    with torch.no_grad():
        w.lora_b.normal_(0, 0.5)
        w.magnitude_delta.copy_(torch.linspace(0, 0.5, 6).reshape(w.magnitude_delta.shape))
    out_norms = torch.linalg.vector_norm(w.weight(), dim=dims)
    assert torch.allclose(out_norms, norms + torch.linspace(0, 0.5, 6), atol=1e-5)
    assert not torch.allclose(w.weight(), layer.weight, atol=1e-3)


def test_a_is_seeded_per_layer_and_bounded():
    a = regenerate_a((3, 4, 5, 5), seed=2, index=1)
    assert torch.equal(a, regenerate_a((3, 4, 5, 5), seed=2, index=1))
    assert not torch.equal(a, regenerate_a((3, 4, 5, 5), seed=2, index=2))
    assert not torch.equal(a, regenerate_a((3, 4, 5, 5), seed=3, index=1))
    bound = 1 / math.sqrt(4 * 25)
    assert a.abs().max() <= bound and a.abs().max() > 0.9 * bound
    assert regenerate_a((3, 7), seed=0, index=0).abs().max() <= 1 / math.sqrt(7)


def test_lora_scale_and_alpha():
    layer = nn.Conv2d(3, 4, 1)
    a = regenerate_a(AdaptedConv.a_shape(layer, 2), seed=0, index=0)
    plain = AdaptedConv(copy.deepcopy(layer), 2, AdapterKind.LORA, a)
    scaled = AdaptedConv(copy.deepcopy(layer), 2, AdapterKind.LORA, a, alpha=8.0)
    assert plain.scale == 1.0 and scaled.scale == 4.0
    with torch.no_grad():
        plain.lora_b.fill_(0.1)
        scaled.lora_b.fill_(0.1)
    assert torch.allclose(scaled.delta(), 4 * plain.delta())
    expected = 0.1 * a.sum(0)  # dW[o, i] = sum_r B[o, r] A[r, i]
    assert torch.allclose(plain.delta()[0], expected, atol=1e-6)
    with pytest.raises(ValueError, match="^LoRA and DoRA need the A matrix$"):
        AdaptedConv(copy.deepcopy(layer), 2, AdapterKind.LORA, None)


def test_base_is_frozen_and_only_sent_tensors_train():
    layer = nn.ConvTranspose2d(3, 4, 3, padding=1)
    a = regenerate_a(AdaptedConv.a_shape(layer, 2), seed=0, index=0)
    w = AdaptedConv(layer, 2, AdapterKind.DORA, a)
    assert not any(p.requires_grad for p in layer.parameters())
    assert not w.lora_a.requires_grad and w.lora_b.requires_grad
    assert [t.shape for t in sent_tensors([w])] == [(4, 2), (1, 4, 1, 1)]


def test_sent_transform_applies_to_every_sent_tensor():
    layer = nn.Conv2d(3, 4, 1)
    a = regenerate_a(AdaptedConv.a_shape(layer, 2), seed=0, index=0)
    w = AdaptedConv(copy.deepcopy(layer), 2, AdapterKind.DORA, a)
    with torch.no_grad():
        w.lora_b.fill_(0.0123)
        w.magnitude_delta.fill_(0.0123)
    w.sent_transform = lambda t: torch.zeros_like(t)
    assert torch.allclose(w.weight(), layer.weight, atol=1e-6)


def test_default_layout():
    model = SSF(TINY)
    layers = default_layers(model)
    assert tuple(layers) == LAYER_TABLE
    assert default_ranks(layers)[:4] == [16, 8, 8, 2]
    assert default_ranks(layers) == [16, 8, 8, 2] * 3
    assert default_ranks(["x.g_s.0"] * 6, (3, 1)) == [3, 1, 1, 1, 1, 1]
    assert default_ranks(["x.g_s.0", "y.g_s.0", "x.g_s.2"]) == [16, 16, 8]


def test_inject_refusals_and_merge_removes_every_wrapper():
    model = SSF(TINY)
    with pytest.raises(ValueError, match="^one rank per adapted layer$"):
        inject(model, AdapterSpec(AdapterKind.LORA, ("intra.g_s.0",), (2, 2), 0))
    with pytest.raises(ValueError, match="^intra.g_s.1 is a GDN, not a convolution$"):
        inject(model, AdapterSpec(AdapterKind.LORA, ("intra.g_s.1",), (2,), 0))
    spec = AdapterSpec(AdapterKind.LORA, ("intra.g_s.0", "motion.g_s.6"), (2, 3), 4)
    wrappers = inject(model, spec)
    assert [w.rank for w in wrappers] == [2, 3]
    assert isinstance(model.motion.g_s[6], AdaptedConv)
    assert torch.equal(wrappers[1].lora_a, regenerate_a(wrappers[1].lora_a.shape, 4, 1))
    merge(model)
    assert not any(isinstance(m, AdaptedConv) for m in model.modules())
    assert isinstance(model.motion.g_s[6], nn.ConvTranspose2d)


def test_load_sent_refusals():
    layer = nn.Conv2d(3, 4, 1)
    a = regenerate_a(AdaptedConv.a_shape(layer, 2), seed=0, index=0)
    w = AdaptedConv(layer, 2, AdapterKind.LORA, a)
    with pytest.raises(ValueError, match="^expected 1 adapter tensors, got 2$"):
        load_sent([w], [torch.zeros(4, 2), torch.zeros(1)])
    with pytest.raises(ValueError, match=r"^adapter tensor shape \(2, 4\) != \(4, 2\)$"):
        load_sent([w], [torch.zeros(2, 4)])
    load_sent([w], [torch.full((4, 2), 0.5)])
    assert torch.equal(w.lora_b, torch.full((4, 2), 0.5))


def test_a_is_pinned_across_versions():
    """A is never sent: every nvc must regenerate the same numbers from (seed, layer index)."""
    assert torch.allclose(regenerate_a((2, 3), seed=1, index=0), torch.tensor(
        [[-0.4632321894, 0.0067207427, 0.2850861549], [0.0709478855, -0.4730308652, -0.1732773930]]))
    assert torch.allclose(regenerate_a((1, 2, 1, 1), seed=7, index=3).flatten(),
                          torch.tensor([0.5762214065, -0.4074187279]))
    big = regenerate_a((64, 64), seed=0, index=0)
    assert big.min() < -0.1 and big.max() > 0.1 and abs(float(big.mean())) < 0.01


def test_prior_likelihood_of_zero_and_noise_proxy():
    prior = SpikeSlabPrior()
    expected = 0.95 * math.erf(2.5e-3 / (1.25e-3 * math.sqrt(2))) + \
        0.05 * math.erf(2.5e-3 / (0.05 * math.sqrt(2)))
    assert float(prior.likelihood(torch.tensor(0.0, dtype=torch.float64))) == \
        pytest.approx(expected, rel=1e-6)
    torch.manual_seed(0)
    zeros = torch.zeros(20000)
    per_value = float(prior.bits(zeros)) / zeros.numel()  # noise within the zero bin: ~0.14 bit
    assert 0.05 < per_value < 0.5


def test_rank_one_scale_and_transposed_alpha():
    layer = nn.ConvTranspose2d(3, 4, 1)
    a = regenerate_a(AdaptedConv.a_shape(layer, 1), seed=0, index=0)
    assert AdaptedConv(copy.deepcopy(layer), 1, AdapterKind.LORA, a).scale == 1.0
    a2 = regenerate_a(AdaptedConv.a_shape(layer, 2), seed=0, index=0)
    plain = AdaptedConv(copy.deepcopy(layer), 2, AdapterKind.LORA, a2)
    scaled = AdaptedConv(copy.deepcopy(layer), 2, AdapterKind.LORA, a2, alpha=8.0)
    with torch.no_grad():
        plain.lora_b.fill_(0.1)
        scaled.lora_b.fill_(0.1)
    assert torch.allclose(scaled.delta(), 4 * plain.delta())
    assert torch.allclose(plain.delta()[:, 0], 0.1 * a2.sum(1), atol=1e-6)  # dW[i, o] = sum_r A B


def test_inject_uses_the_specs_alpha_and_groups_ranks_by_decoder():
    model = SSF(TINY)
    (w,) = inject(model, AdapterSpec(AdapterKind.LORA, ("intra.g_s.0",), (2,), 0, alpha=8.0))
    assert w.scale == 4.0
    assert default_ranks(["a.x.0", "a.y.0", "a.x.2"]) == [16, 16, 8]
