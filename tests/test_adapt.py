import numpy as np
import pytest
import torch

from adapt import AdaptConfig, encode_adaptive
from adapt.loop import clip_objective, make_spec
from nvc import bitstream
from nvc.adapted import apply_unit, make_unit
from nvc.adapter_coding import SpikeSlabPrior, decode_symbols, encode_symbols, quantize
from nvc.adapters import AdapterKind, inject, sent_tensors
from nvc.codec import decode_stream
from nvc.errors import BitstreamError
from nvc.zoo import load_model

from .conftest import make_video, shared_clip


def test_adapter_rate_gradient_reaches_the_parameters():
    prior = SpikeSlabPrior()
    b = torch.full((10,), 0.02, requires_grad=True)
    prior.bits(b).backward()
    assert b.grad is not None and (b.grad > 0).all()  # rate pulls every value towards zero


def test_symbols_round_trip_including_escapes():
    prior = SpikeSlabPrior()
    values = torch.tensor([0.0] * 50 + [0.01, -0.2, 0.7, -1.3])
    symbols = quantize(values, prior.step).long().tolist()
    assert decode_symbols(encode_symbols(symbols, prior), len(symbols), prior) == symbols


@pytest.mark.parametrize("kind", list(AdapterKind))
def test_unit_round_trip_is_what_the_encoder_used(tiny_model, kind):
    model, _ = tiny_model
    spec = make_spec(model, AdaptConfig(kind=kind, ranks=tuple([2] * 12)))
    work = __import__("copy").deepcopy(model)
    tensors = [torch.randn_like(t) * 0.03 for t in sent_tensors(inject(work, spec))]
    unit = make_unit(spec, tensors, SpikeSlabPrior())
    back = bitstream.AdapterUnit.read(unit.write())
    assert back == unit
    merged_a, merged_b = apply_unit(model, unit), apply_unit(model, back)
    for (na, pa), (_, pb) in zip(merged_a.named_parameters(), merged_b.named_parameters()):
        assert torch.equal(pa, pb), na


def test_objective_gradient_reaches_adapters(tiny_model):
    model, _ = tiny_model
    work = __import__("copy").deepcopy(model)
    wrappers = inject(work, make_spec(work, AdaptConfig()))
    params = sent_tensors(wrappers)
    for p in params:
        p.requires_grad_(True)
    prior = SpikeSlabPrior()
    frames = torch.rand(3, 3, 64, 64)
    obj, _ = clip_objective(work, frames, 0, 2, 0.01, 64 * 64,
                            prior.bits(torch.cat([p.reshape(-1) for p in params])))
    obj.backward()
    assert all(p.grad is not None for p in params)
    assert any(p.grad.abs().sum() > 0 for p in params)


def test_adaptive_stream_decodes_bit_exactly(tiny_model, tiny_weights):
    model, entry = tiny_model
    video = make_video(frames=3, hw=(64, 64))
    r = encode_adaptive(video, model, entry, 2, 12, AdaptConfig(steps=3, window=64))
    fresh, fresh_entry = load_model(path=tiny_weights)
    out = decode_stream(bitstream.unpack(r.coded.data), fresh, fresh_entry)
    assert all(np.array_equal(a, b) for a, b in zip(out.frames, r.coded.reconstruction))
    assert r.adapted == (r.adapted_cost < r.base_cost)  # never ships a worse file
    kept = bitstream.unpack(r.coded.data)
    assert (kept.adapters is not None) == r.adapted


def test_encoder_fine_tuning_is_encoder_only(tiny_model):
    """What the encoder fine-tunes for free must be parameters the decoder never runs."""
    from adapt.loop import encoder_only_parameters

    model, _ = tiny_model
    names = set(encoder_only_parameters(model))
    assert names and all(".g_a." in f".{n}" or ".h_a." in f".{n}" for n in names)
    decoder_side = {n for n, _ in model.named_parameters()} - names
    assert any(".g_s." in n for n in decoder_side) and any(".h_s." in n for n in decoder_side)


def test_damaged_adapter_unit_is_refused(tiny_model):
    model, entry = tiny_model
    spec = make_spec(model, AdaptConfig(ranks=tuple([2] * 12)))
    unit = make_unit(spec, [torch.zeros_like(t) for t in
                            sent_tensors(inject(__import__("copy").deepcopy(model), spec))],
                     SpikeSlabPrior())
    bad = bitstream.AdapterUnit(**{**unit.__dict__, "symbol_count": unit.symbol_count + 1})
    with pytest.raises(BitstreamError, match="values"):
        apply_unit(model, bad)


@pytest.mark.slow
def test_adaptation_lowers_total_cost_on_a_real_clip():
    """On a real shared clip, on CPU with a small budget, adaptation lowers the total RD cost
    (every byte of the file counted) and the decode equals the encoder's reconstruction."""
    from nvc.io import read_video

    video = read_video(shared_clip("BasketballPass_416x240_50fps_f101_fromPNG.yuv"), frames=4)
    model, entry = load_model()
    r = encode_adaptive(video, model, entry, 2, 12, AdaptConfig(steps=25, window=128, patience=100))
    assert r.adapted and r.adapted_cost < r.base_cost
    out = decode_stream(bitstream.unpack(r.coded.data), model, entry)
    assert all(np.array_equal(a, b) for a, b in zip(out.frames, r.coded.reconstruction))
