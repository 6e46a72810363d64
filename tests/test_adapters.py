import copy

import pytest
import torch
from torch import nn

from nvc.adapters import (
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

LAYERS = [(nn.Conv2d(6, 5, 5, stride=2, padding=2), (1, 6, 16, 16)),
          (nn.ConvTranspose2d(6, 5, 5, stride=2, padding=2, output_padding=1), (1, 6, 8, 8))]


@pytest.mark.parametrize("kind", list(AdapterKind))
@pytest.mark.parametrize("layer, shape", LAYERS)
def test_step_zero_equals_base(kind, layer, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    base_out = layer(x)
    a = regenerate_a(AdaptedConv.a_shape(layer, 3), seed=1, index=0)
    wrapped = AdaptedConv(copy.deepcopy(layer), 3, kind, a)
    assert torch.allclose(wrapped(x), base_out, atol=1e-6)


@pytest.mark.parametrize("kind", list(AdapterKind))
@pytest.mark.parametrize("layer, shape", LAYERS)
def test_merged_equals_unmerged(kind, layer, shape):
    torch.manual_seed(0)
    x = torch.randn(shape)
    a = regenerate_a(AdaptedConv.a_shape(layer, 3), seed=1, index=0)
    wrapped = AdaptedConv(copy.deepcopy(layer), 3, kind, a)
    with torch.no_grad():
        for p in sent_tensors([wrapped]):
            p.normal_(0, 0.1)
    y = wrapped(x)
    assert not torch.allclose(y, layer(x), atol=1e-3)  # the adapter does something
    assert torch.allclose(wrapped.merged()(x), y, atol=1e-5)


def test_full_kind_fine_tunes_every_weight():
    layer = nn.ConvTranspose2d(4, 3, 3, padding=1)
    w = AdaptedConv(copy.deepcopy(layer), 0, AdapterKind.FULL, None)
    (sent,) = sent_tensors([w])
    assert sent.shape == layer.weight.shape and w.lora_a is None
    with torch.no_grad():
        sent.fill_(0.01)
    assert torch.allclose(w.merged().weight, layer.weight + 0.01)


def test_lora_update_is_low_rank_product():
    layer = nn.ConvTranspose2d(4, 3, 3, padding=1)
    a = regenerate_a(AdaptedConv.a_shape(layer, 2), seed=0, index=0)
    w = AdaptedConv(layer, 2, AdapterKind.LORA, a)
    with torch.no_grad():
        w.lora_b.normal_()
    delta = w.delta().permute(1, 0, 2, 3).reshape(3, -1)  # (out, in*k*k)
    assert torch.linalg.matrix_rank(delta) <= 2


def test_a_is_regenerated_identically():
    assert torch.equal(regenerate_a((4, 2, 5, 5), 7, 3), regenerate_a((4, 2, 5, 5), 7, 3))
    assert not torch.equal(regenerate_a((4, 2, 5, 5), 7, 3), regenerate_a((4, 2, 5, 5), 7, 4))


def test_default_layout_covers_every_decoder_deconv():
    model = SSF(TINY)
    layers = default_layers(model)
    assert len(layers) == 12 and all(".g_s." in n for n in layers)
    assert default_ranks(layers)[:4] == [16, 8, 8, 2]


def test_inject_extract_load_merge_on_the_model():
    torch.manual_seed(0)
    model = SSF(TINY)
    x = torch.rand(1, 3, 64, 64)
    base = model.forward_intra(x, 0).x_hat
    spec = AdapterSpec(AdapterKind.DORA, tuple(default_layers(model)), tuple([2] * 12), seed=3)
    adapted = copy.deepcopy(model)
    wrappers = inject(adapted, spec)
    adapted.eval()
    model.eval()
    assert torch.allclose(adapted.forward_intra(x, 0).x_hat, model.forward_intra(x, 0).x_hat, atol=1e-6)
    values = [torch.randn_like(t) * 0.05 for t in sent_tensors(wrappers)]
    load_sent(wrappers, values)
    y = adapted.forward_intra(x, 0).x_hat
    merge(adapted)
    assert not any(isinstance(m, AdaptedConv) for m in adapted.modules())
    assert torch.allclose(adapted.forward_intra(x, 0).x_hat, y, atol=1e-5)
    assert base.shape == y.shape
