from dataclasses import replace

import numpy as np
import pytest
import torch

from adapt import AdaptConfig, encode_adaptive
from adapt.encode import BaseChoice, best_base, rd_cost
from adapt.loop import MapWindows, VideoWindows, clip_objective, make_spec
from nvc import bitstream
from nvc.adapted import apply_unit, make_unit
from nvc.adapter_coding import SpikeSlabPrior, decode_symbols, encode_symbols, quantize
from nvc.adapters import LAYER_TABLE, AdapterKind, default_layers, inject, sent_tensors
from nvc.codec import encode, frame_digest, padded_hw
from nvc.decoding import decode_stream
from nvc.errors import BitstreamError
from nvc.io import ColourMatrix
from nvc.zoo import load_model

from .conftest import make_video


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
    back = bitstream.AdapterUnit.read(unit.write(LAYER_TABLE), LAYER_TABLE)
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


def test_objective_codes_intra_the_frames_the_coder_codes_intra(tiny_model, monkeypatch):
    model, _ = tiny_model
    kinds = []
    for name, kind in (("forward_intra", "I"), ("forward_inter", "P")):
        real = getattr(model, name)
        monkeypatch.setattr(model, name, lambda *a, _real=real, _kind=kind, **kw: (
            kinds.append(_kind), _real(*a, **kw))[1])
    frames, bits = torch.rand(4, 3, 64, 64), torch.zeros(())
    clip_objective(model, frames, 0, 4, 0.01, 64 * 64, bits)
    clip_objective(model, frames, 0, 4, 0.01, 64 * 64, bits, intra=[True, False, True, False])
    assert "".join(kinds) == "IPPP" + "IPIP"


def test_the_fit_is_told_which_frames_the_base_codes_intra(tiny_model, small_video, monkeypatch):
    import adapt.encode as enc
    from adapt.loop import fit
    from nvc.models.ssf import SSF

    model, entry = tiny_model
    seen = []
    monkeypatch.setattr(enc, "fit", lambda *a, **kw: (seen.append(kw["intra"]), fit(*a, **kw))[1])
    monkeypatch.setattr(SSF, "lambda_at", lambda self, q: 0.0)  # rate alone: every trial wins
    encode_adaptive(small_video, model, entry, 1, 12, AdaptConfig(steps=1, window=64,
                                                                  position_step=0))
    assert seen == [[True] * len(small_video.frames)]


def test_a_quality_between_the_rungs_is_fitted_at_its_own_lambda(tiny_model, small_video,
                                                                  monkeypatch):
    import adapt.encode as enc
    from adapt.loop import fit
    from nvc.rd import ladder_lambda
    from nvc.roi import rate_point

    model, entry = tiny_model
    seen = []
    monkeypatch.setattr(enc, "fit", lambda *a, **kw: (seen.append(kw), fit(*a, **kw))[1])
    at = rate_point(1.5, 2, padded_hw(small_video.height, small_video.width, model.cfg.multiple), 12)
    r = encode_adaptive(small_video, model, entry, at.quality, 12,
                        AdaptConfig(steps=1, window=64, position_step=0), qmap=at.qmap,
                        schedule=at.schedule)
    lam = float(ladder_lambda(model.cfg.lambdas, torch.tensor(0.5)))
    assert model.cfg.lambdas[0] < lam < model.cfg.lambdas[1]
    assert r.position == 0.5 and seen[0]["position"] == 0.5 and seen[0]["lam"] == pytest.approx(lam)
    # the base's file is the plain encoder's at 1.5, priced at that lambda
    plain = encode(small_video, model, entry, at.quality, 12, qmap=at.qmap, schedule=at.schedule)
    assert r.base_cost == pytest.approx(rd_cost(small_video, plain, lam, ColourMatrix.BT709))


@pytest.mark.parametrize("given", [None, "0.25,0,0"])
def test_the_searched_base_is_the_plain_encoders_file_there(given, tiny_model, small_video,
                                                            monkeypatch):
    """Without a schedule given, the base the search codes at another position is the file `nvc
    encode --quality` writes there (the default schedule slid with it), and the fit and every
    candidate keep that schedule; a schedule given stays as it is."""
    import adapt.encode as enc
    from adapt.loop import fit
    from nvc.roi import rate_point
    from nvc.schedule import GopSchedule, default_schedule, of_header

    model, entry = tiny_model
    seen = []
    monkeypatch.setattr(enc, "best_base", lambda rung, encode_at, *a: encode_at(0.5))
    monkeypatch.setattr(enc, "fit", lambda *a, **kw: (seen.append(kw["schedule"]), fit(*a, **kw))[1])
    schedule = None if given is None else GopSchedule.parse(given)
    r = encode_adaptive(small_video, model, entry, 1, 12, AdaptConfig(steps=1, window=64),
                        schedule=schedule)
    at = rate_point(1.5, 2, padded_hw(small_video.height, small_video.width, model.cfg.multiple),
                    12, schedule)
    expected = default_schedule(1.5, 2, 12) if given is None else schedule
    assert at.schedule == expected != default_schedule(1, 2, 12)
    plain = encode(small_video, model, entry, at.quality, 12, qmap=at.qmap, schedule=at.schedule)
    assert r.position == 0.5 and r.candidates["base"][0] == len(plain.data)
    assert seen == [expected] and of_header(bitstream.unpack(r.coded.data).header) == expected


def test_adaptive_stream_decodes_bit_exactly(tiny_model, tiny_weights):
    model, entry = tiny_model
    video = make_video(frames=3, hw=(64, 64))
    shown: list[tuple[str, int]] = []  # (file, frames) of every candidate coded

    def progress(what):
        def count(frames):
            shown.append((what, 0))
            for f in frames:
                shown[-1] = (what, shown[-1][1] + 1)
                yield f
        return count
    r = encode_adaptive(video, model, entry, 2, 12, AdaptConfig(steps=3, window=64),
                        progress=progress)
    labels = [what for what, _ in shown]
    searched = [what for what in labels if what.startswith("base at quality ")]
    assert labels == ["base", *searched, "adapted"] + ["encoder-only"] * ("encoder-only" in r.candidates)
    assert searched and all(n == 3 for _, n in shown)  # every frame of every file went through
    fresh, fresh_entry = load_model(path=tiny_weights)
    out = decode_stream(bitstream.unpack(r.coded.data), fresh, fresh_entry)
    assert [frame_digest(f) for f in out.frames] == r.coded.digests  # the encoder's frames
    assert r.adapted == (r.mode == "adapters")
    assert r.mode != "adapters" or r.adapted_cost < r.base_cost  # never ships a worse file
    kept = bitstream.unpack(r.coded.data)
    assert (kept.adapters is not None) == r.adapted
    # The adapters were judged against the base's best position, never worse than the rung's file,
    # and a file off the rung carries its uniform quality map.
    rung = encode(video, model, entry, 2, 12)
    assert r.base_cost <= rd_cost(video, rung, model.cfg.lambdas[1], ColourMatrix.BT709)
    assert r.position in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert (kept.quality_map is not None) == (r.position != 1.0)


def test_a_fit_that_beats_no_probe_codes_no_candidate(tiny_model):
    """Where no probe of the fit beats the base's (here a fit stopped before its first step, as a
    Ctrl-C can), the adapters sent would be zeros and the encoder the base's: nothing more is
    coded (before, two more files, each the base's or worse) and the base's file is kept."""
    model, entry = tiny_model
    video = make_video(frames=3, hw=(64, 64))
    coded: list[str] = []
    r = encode_adaptive(video, model, entry, 2, 12, AdaptConfig(steps=3, window=64),
                        progress=lambda what: coded.append(what) or iter, stop=lambda: True)
    assert coded == ["base"] and r.mode == "base" and not r.adapted and r.steps == 0
    assert r.adapted_cost is None and r.adapted_bytes is None and list(r.candidates) == ["base"]
    assert r.coded.data == encode(video, model, entry, 2, 12).data


def test_video_windows_are_the_padded_clips_slices(small_video):
    from nvc.codec import pad_to, rgb_tensor, source_rgb

    clip = pad_to(torch.cat([rgb_tensor(source_rgb(f), torch.device("cpu"))
                             for f in small_video.frames]), 64)  # what the fit once held
    windows = VideoWindows(small_video, ColourMatrix.BT709, 64, torch.device("cpu"))
    assert windows.shape == tuple(clip.shape) == (4, 3, 64, 128)
    for g0, count, y0, x0, win in [(0, 3, 0, 0, (64, 64)), (3, 3, 0, 64, (64, 64)),  # last GOP short
                                   (2, 2, 13, 41, (48, 80)), (0, 4, 0, 0, (64, 128))]:  # into the pad
        want = clip[g0: g0 + count, :, y0: y0 + win[0], x0: x0 + win[1]]
        assert torch.equal(windows.crop(g0, count, y0, x0, win), want)
    rng = np.random.default_rng(0)
    for maps in (rng.random((4, 50, 70), dtype=np.float32),  # a map a frame, and one for all
                 np.broadcast_to(rng.random((1, 50, 70), dtype=np.float32), (4, 50, 70))):
        padded = pad_to(torch.from_numpy(np.ascontiguousarray(maps))[:, None], 64)
        assert torch.equal(MapWindows(maps, 64, torch.device("cpu")).crop(1, 3, 5, 30, (59, 98)),
                           padded[1:4, :, 5:64, 30:128])


def test_a_lazily_read_clip_is_adapted_to_the_same_file(tiny_model, tmp_path):
    """The adaptive encoder reads its input a frame or a window at a time (y4m in place, mp4
    spooled, decoded once): the same file as from the clip held whole."""
    from nvc.io import read_video
    from nvc.writers import write_video

    model, entry = tiny_model
    cfg = AdaptConfig(steps=2, window=64, force=True, lr=2e-2, position_step=0)
    for suffix in ("y4m", "mp4"):
        path = tmp_path / f"c.{suffix}"
        write_video(path, make_video(frames=3, hw=(48, 64)))
        whole = encode_adaptive(read_video(path), model, entry, 2, 2, cfg)
        lazy = read_video(path, lazy=True)
        passes = _counted_passes(lazy.frames)
        streamed = encode_adaptive(lazy, model, entry, 2, 2, cfg)
        assert streamed.coded.data == whole.coded.data and streamed.coded.reconstruction == []
        assert streamed.base_cost == whole.base_cost and streamed.adapted_cost == whole.adapted_cost
        assert suffix == "y4m" or passes == [1]  # the mp4 decoded once, into the spool


def _counted_passes(frames) -> list[int]:
    """Count the passes over lazily read frames (one entry a pass)."""
    passes, open_frames = [], frames.open_frames

    def counted():
        passes.append(1)
        return open_frames()
    frames.open_frames = counted
    return passes


def _choice(position: float, cost: float) -> BaseChoice:
    return BaseChoice(position, None, None, cost)  # type: ignore[arg-type]


@pytest.mark.parametrize("minimum, expected, encodes", [
    (0.6, 0.5, 3),     # up: 0.25, 0.5 better, 0.75 worse
    (-0.5, -0.5, 4),   # up once (worse), then down: -0.25, -0.5 better, -0.75 worse
    (0.0, 0.0, 2),     # the rung is best: one step each way
    (3.0, 1.0, 4),     # the cost falls beyond the range: stops at its top
])
def test_best_base_walks_the_ladder_to_the_lowest_cost(minimum, expected, encodes):
    tried = []

    def encode_at(p: float) -> BaseChoice:
        tried.append(p)
        return _choice(p, (p - minimum) ** 2)
    best = best_base(_choice(0.0, minimum ** 2), encode_at, 0.25, -1.0, 1.0)
    assert best.position == pytest.approx(expected) and len(tried) == encodes


def test_best_base_stopped_keeps_the_best_tried():
    tried: list[float] = []

    def encode_at(p: float) -> BaseChoice:
        tried.append(p)
        return _choice(p, (p - 1.0) ** 2)
    best = best_base(_choice(0.0, 1.0), encode_at, 0.25, -1.0, 1.0, stop=lambda: len(tried) >= 2)
    assert tried == [0.25, 0.5] and best.position == 0.5


def test_forced_adapters_are_sent_and_decoded_by_a_fresh_model(tiny_model, tiny_weights):
    """With the keep-or-drop decision overridden the stream must carry the adapters, and a fresh
    decoder, merging them from the bytes, must reproduce the encoder's frames bit for bit."""
    model, entry = tiny_model
    video = make_video(frames=3, hw=(64, 64))
    r = encode_adaptive(video, model, entry, 2, 12, AdaptConfig(steps=4, window=64, force=True,
                                                                lr=2e-2))
    assert r.adapted and r.mode == "adapters"
    stream = bitstream.unpack(r.coded.data)
    assert stream.adapters is not None
    unit = bitstream.AdapterUnit.read(stream.adapters, LAYER_TABLE)
    symbols = decode_symbols(unit.coded, unit.symbol_count, SpikeSlabPrior(
        unit.step, unit.pi_spike, unit.sigma_spike, unit.sigma_slab))
    assert any(symbols)  # non-zero adapters: the decode below really merges something
    fresh, fresh_entry = load_model(path=tiny_weights)
    out = decode_stream(stream, fresh, fresh_entry)
    assert [frame_digest(f) for f in out.frames] == r.coded.digests  # the encoder's frames
    base = decode_stream(bitstream.unpack(encode_adaptive(
        video, model, entry, 2, 12, AdaptConfig(steps=1, window=64)).coded.data), fresh,
        fresh_entry)
    assert not all(np.array_equal(a, b) for a, b in zip(out.frames, base.frames))


def _adapter_bytes_after_fit(model, monkeypatch, detach_rate: bool) -> int:
    from adapt.loop import fit

    if detach_rate:
        real_bits = SpikeSlabPrior.bits
        monkeypatch.setattr(SpikeSlabPrior, "bits", lambda self, v, **kw: real_bits(self, v, **kw).detach())
    from nvc.synthetic import demo_clip

    frames = torch.from_numpy(demo_clip(frames=2, out_hw=(64, 64)))
    cfg = AdaptConfig(steps=30, window=64, patience=1000, lr=3e-3, encoder=False)
    fitted = fit(model, frames, 1, 12, cfg)
    return len(make_unit(fitted.spec, fitted.sent, cfg.prior).coded)


def test_adapter_rate_gradient_flows_through_fit(tiny_model, monkeypatch):
    """With the rate term the fitted adapters cost fewer bytes than with it detached."""
    model, _ = tiny_model
    with_rate = _adapter_bytes_after_fit(model, monkeypatch, detach_rate=False)
    detached = _adapter_bytes_after_fit(model, monkeypatch, detach_rate=True)
    assert with_rate < detached, (with_rate, detached)


def test_fit_is_reproducible_whatever_the_global_generator(tiny_model):
    """The rate proxy's noise comes from a generator seeded by the config, not from whatever state
    the process's global generator is in; that state is left as it was."""
    from adapt.loop import fit
    from nvc.synthetic import demo_clip

    model, _ = tiny_model
    frames = torch.from_numpy(demo_clip(frames=2, out_hw=(64, 64)))
    cfg = AdaptConfig(steps=8, window=64, patience=1000, lr=3e-3, probe_every=100)
    runs = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        runs.append(fit(model, frames, 1, 12, cfg))
        after = torch.rand(1)
        torch.manual_seed(seed)
        assert torch.equal(after, torch.rand(1))  # fit did not move the caller's generator
    assert runs[0].best_step == 7  # the last step is probed and beats the base here
    assert all(torch.equal(a, b) for a, b in zip(runs[0].sent, runs[1].sent))
    other = fit(model, frames, 1, 12, replace(cfg, seed=5))
    assert not all(torch.equal(a, b) for a, b in zip(runs[0].sent, other.sent))


def test_fit_returns_the_best_probed_iterate(tiny_model, monkeypatch):
    """The probe scores decide: the returned step is the one with the lowest probe cost, and the
    base (step -1) wins when every later probe is worse."""
    import adapt.loop as loop

    model, _ = tiny_model
    frames = torch.rand(2, 3, 64, 64)
    scores = iter([5.0, 4.0, 3.0, 3.5, 9.0])  # base, then after steps 1, 3, 5, 5 (last)
    real = loop.clip_objective

    def scored(*a, **kw):
        obj, info = real(*a, **kw)
        if not torch.is_grad_enabled():  # the probe runs under no_grad
            return obj * 0 + next(scores), info
        return obj, info

    monkeypatch.setattr(loop, "clip_objective", scored)
    fitted = loop.fit(model, frames, 1, 12, AdaptConfig(steps=6, window=64, probe_every=2,
                                                         patience=1000))
    assert fitted.best_step == 3
    scores = iter([1.0] + [2.0] * 10)
    fitted = loop.fit(model, frames, 1, 12, AdaptConfig(steps=6, window=64, probe_every=2,
                                                         patience=1000))
    assert fitted.best_step == -1 and all((t == 0).all() for t in fitted.sent)


def test_layer_table_is_the_models_adaptable_layers(tiny_model):
    assert tuple(default_layers(tiny_model[0])) == LAYER_TABLE
    from nvc.models.config import ModelConfig
    from nvc.models.ssf import SSF

    assert tuple(default_layers(SSF(ModelConfig()))) == LAYER_TABLE


def test_adapter_unit_codes_layer_indices_and_reads_format_1(tiny_model):
    """Format 2 spends a byte per layer index (format 1 spelled the names out: 148 bytes more),
    and a format-1 unit still reads."""
    model, _ = tiny_model
    spec = make_spec(model, AdaptConfig())
    work = __import__("copy").deepcopy(model)
    unit = make_unit(spec, [torch.zeros_like(t) for t in sent_tensors(inject(work, spec))],
                     SpikeSlabPrior())
    v2 = unit.write(LAYER_TABLE)
    names = sum(len(n) + 1 for n in unit.layers)
    head = 1 + len(bitstream.write_varint(unit.seed)) + 20  # type, seed, prior
    v1 = bytearray(v2[:head] + bitstream.write_varint(len(unit.layers)))
    for name, rank in zip(unit.layers, unit.ranks):
        v1 += bytes([len(name)]) + name.encode() + bitstream.write_varint(rank)
    v1 += bitstream.write_varint(unit.symbol_count) + bitstream.write_varint(len(unit.coded))
    v1 += unit.coded
    assert len(v1) - len(v2) == names - len(unit.layers) > 140  # 148 bytes for the 12 layers
    old = bitstream.AdapterUnit.read(bytes(v1), LAYER_TABLE, version=1)
    assert old == replace(unit, legacy_coder=True)
    assert bitstream.AdapterUnit.read(v2, LAYER_TABLE) == unit
    with pytest.raises(BitstreamError, match="layer index"):
        bitstream.AdapterUnit.read(v2, LAYER_TABLE[:3])


def test_an_adapter_unit_that_does_not_fit_is_refused_in_one_line(tiny_model, tmp_path, capsys):
    """A unit that reads but cannot be merged (its checksum intact: another encoder's or another
    model's) is a BitstreamError naming what is wrong; `nvc info` reports a unit that fits."""
    from nvc.cli import main

    model, entry = tiny_model
    spec = make_spec(model, AdaptConfig())
    work = __import__("copy").deepcopy(model)
    sent = [torch.full_like(t, 0.05) for t in sent_tensors(inject(work, spec))]
    unit = make_unit(spec, sent, SpikeSlabPrior())
    for bad, message in ((replace(unit, kind=9), "unknown adapter type 9"),
                         (replace(unit, symbol_count=unit.symbol_count + 1),
                          f"{unit.symbol_count + 1} values, layers need {unit.symbol_count}"),
                         (replace(unit, ranks=(0,) + unit.ranks[1:]),
                          f"does not fit this model: {unit.layers[0]}: rank 0"),
                         (replace(unit, layers=("intra.g_s.99",) + unit.layers[1:]),
                          "does not fit this model"),
                         (replace(unit, layers=("intra.g_s.1",) + unit.layers[1:]),
                          "does not fit this model: intra.g_s.1 is a"),
                         (replace(unit, coded=b""), "damaged adapter parameters")):
        with pytest.raises(BitstreamError, match=message) as e:
            apply_unit(model, bad)
        assert "\n" not in str(e.value)

    coded = encode(make_video(frames=2, hw=(64, 64)), model, entry, 2, 12)
    stream = replace(bitstream.unpack(coded.data), adapters=unit.write(LAYER_TABLE))
    path = tmp_path / "a.nvc"
    path.write_bytes(bitstream.pack(stream))
    assert main(["info", str(path), "--json"]) == 0
    info = __import__("json").loads(capsys.readouterr().out)["adapters"]
    assert info["type"] == "lora" and info["values"] == unit.symbol_count
    assert info["layers"] == dict(zip(unit.layers, unit.ranks)) and info["seed"] == unit.seed
    assert info["bytes"] == len(stream.adapters) and info["coded_parameter_bytes"] == len(unit.coded)


def test_adapter_parameters_of_format_8_still_decode():
    """Before format 9 CompressAI's rANS coded the adapter parameters under the same table: such
    units decode to their symbols, and nvc's coder spends about the same bytes on them."""
    from compressai.ans import RansEncoder

    from nvc.adapter_coding import MAX_SYMBOL, decode_symbols, encode_symbols

    prior = SpikeSlabPrior()
    gen = torch.Generator().manual_seed(0)
    values = torch.where(torch.rand(20000, generator=gen) < 0.9, 0.0,
                         torch.randn(20000, generator=gen) * 0.03)
    symbols = torch.round(values / prior.step).long().tolist() + [500, -MAX_SYMBOL - 40]
    cdf = prior.quantized_cdf()
    theirs = RansEncoder().encode_with_indexes(symbols, [0] * len(symbols), [cdf], [len(cdf)],
                                               [-MAX_SYMBOL])
    assert decode_symbols(theirs, len(symbols), prior, legacy=True) == symbols
    ours = encode_symbols(symbols, prior)
    assert decode_symbols(ours, len(symbols), prior) == symbols
    assert abs(len(ours) - len(theirs)) <= 0.01 * len(theirs) + 8
