"""A golden stream (issue 11): a tiny model's stream checked into tests/data/golden must decode to
the recorded symbols and frames, and perturbing every float path of the decoder (thread count,
noise on the inputs of g_s and of the hyper-synthesis) must not change one decoded symbol.

Regenerate (only when the format or the tiny model changes on purpose):
    NVC_REGENERATE_GOLDEN=1 python -m pytest tests/test_golden.py
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import os
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

import nvc.codec
from adapt import AdaptConfig
from adapt.loop import make_spec
from nvc import bitstream
from nvc.adapted import apply_unit, make_unit
from nvc.adapter_coding import SpikeSlabPrior
from nvc.adapters import LAYER_TABLE, inject, sent_tensors
from nvc.bitstream import NumericProfile
from nvc.codec import encode, encode_to
from nvc.decoding import decode_stream
from nvc.errors import BitstreamError
from nvc.io import PipeFrames
from nvc.models.config import TINY
from nvc.models.entropy import LatentCodec
from nvc.models.range_coder import TableCoder
from nvc.models.ssf import SSF
from nvc.schedule import FLAT, GopSchedule, of_header
from nvc.zoo import load_model, save_weights

from .conftest import make_codable, make_video, relabelled

GOLDEN = Path(__file__).parent / "data" / "golden"
WEIGHTS, EXPECTED = GOLDEN / "tiny.safetensors", GOLDEN / "expected.json"
# stream.nvc: every element coded (profile 1); stream-skip.nvc: small scales not coded (profile 2);
# stream-map.nvc: profile 2 with a quality map whose positions reach below the first rung; all
# three as format 5 wrote them, with CompressAI's coder. stream-rans.nvc: the default (profile 3,
# format 6): profile 2's symbols (y and z) coded by nvc's own coder, y in substreams. Every one
# stays decodable.
# stream-sched.nvc (format 7): profile 3 with a GOP quality schedule (nvc.schedule, SCHEDULE) over
# the map of stream-map.nvc, so the I-frame's positions are moved up (and clamped at the top rung)
# and the P-frames' down (and clamped below the first rung).
# stream-intra.nvc (format 8): profile 3 with an I-frame between the GOP's (frame 2 of 3, intra
# period 12): coded with intra period 2, the header's period then set to 12 (nothing else in the
# flat schedule's coding depends on the period), as the adaptive I-frames of format 8 place them.
# stream-adapted.nvc (format 9): profile 3 with an adapter unit (random adapters of the default
# layers, `_adapted`) whose parameters nvc's coder codes; stream-adapted-format8.nvc: the same
# stream as nvc wrote it before format 9 (at bfbf0dd, by the same procedure), the parameters coded
# by CompressAI's coder; its md5s were recorded by that nvc's decoder.
# stream-live.nvc (format 10): stream-rans.nvc's clip coded from a pipe read live: the header's
# frame count 0 and an end unit after the last frame.
# stream-cycle.nvc (format 11): stream-sched.nvc with a cycle over the P-frames (CYCLED): P-frame 1
# sinks half a rung more, P-frame 2 does not.
# stream-aspect.nvc (format 12): stream-rans.nvc's clip with anamorphic pixels (32:27, ASPECTS)
# in its header; the same frames as stream-rans.nvc's.
# stream-numbered.nvc (format 13): stream-rans.nvc's clip with its frames numbered in their type
# bytes; the same symbols and frames as stream-rans.nvc's.
# stream-tables.nvc (format 14): stream-numbered.nvc's clip, coded with the range coder's tables
# built in float64 (nvc.models.priors); every older stream decodes with the float32 tables it was
# coded with.
# stream-map-format4.nvc: stream-map.nvc as format 4 wrote it (no synthesis precision field).
# Regenerating writes only the streams of the current format (and the weights only when absent):
# the older ones record what an older nvc wrote.
STREAMS = {"": (GOLDEN / "stream.nvc", NumericProfile.EXACT_HYPER, 5),
           "skip_": (GOLDEN / "stream-skip.nvc", NumericProfile.EXACT_SKIP, 5),
           "map_": (GOLDEN / "stream-map.nvc", NumericProfile.EXACT_SKIP, 5),
           "rans_": (GOLDEN / "stream-rans.nvc", NumericProfile.SUBSTREAMS, 6),
           "sched_": (GOLDEN / "stream-sched.nvc", NumericProfile.SUBSTREAMS, 7),
           "intra_": (GOLDEN / "stream-intra.nvc", NumericProfile.SUBSTREAMS, 8),
           "adapted8_": (GOLDEN / "stream-adapted-format8.nvc", NumericProfile.SUBSTREAMS, 8),
           "adapted_": (GOLDEN / "stream-adapted.nvc", NumericProfile.SUBSTREAMS, 9),
           "live_": (GOLDEN / "stream-live.nvc", NumericProfile.SUBSTREAMS, 10),
           "cycle_": (GOLDEN / "stream-cycle.nvc", NumericProfile.SUBSTREAMS, 11),
           "aspect_": (GOLDEN / "stream-aspect.nvc", NumericProfile.SUBSTREAMS, 12),
           "numbered_": (GOLDEN / "stream-numbered.nvc", NumericProfile.SUBSTREAMS, 13),
           "tables_": (GOLDEN / "stream-tables.nvc", NumericProfile.SUBSTREAMS, 14)}
ASPECTS = {"aspect_": (32, 27)}  # the sample aspect ratio of stream-aspect.nvc
ADAPTED = ("adapted8_", "adapted_")
MAPPED = ("map_", "sched_", "cycle_")
SCHEDULE = GopSchedule.from_rungs(0.75, 0.0, 0.5)  # of stream-sched.nvc
CYCLED = GopSchedule.from_rungs(0.75, 0.0, 0.5, (0.5, 0.0))  # of stream-cycle.nvc
SCHEDULES = {"sched_": SCHEDULE, "cycle_": CYCLED}
STREAM = STREAMS[""][0]
# the map of stream-map.nvc: a 4x8 grid (64x128 padded), positions -2 .. +3.8 (above the top
# rung, clamped to it)
MAP = bitstream.QualityMap(4, 8, bytes(range(0, 192, 6)), origin=64)


def _regenerate() -> None:
    GOLDEN.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(7)
    # latents large enough for the coder to work, scales spread over the whole scale table, so the
    # stream exercises every CDF choice
    if not WEIGHTS.exists():
        save_weights(make_codable(SSF(TINY)), WEIGHTS)
    model, entry = load_model(path=WEIGHTS)
    expected = json.loads(EXPECTED.read_text()) if EXPECTED.exists() else {}
    for key, (path, profile, version) in STREAMS.items():
        if version != bitstream.FORMAT_VERSION:
            continue
        coder, adapters = _adapted(model) if key in ADAPTED else (model, None)
        video = make_video(frames=3, hw=(64, 96), seed=3)
        if key in ASPECTS:
            video = replace(video, aspect=Fraction(*ASPECTS[key]))
        if key == "live_":
            sink = io.BytesIO()
            encode_to(sink, replace(video, frames=PipeFrames(iter(video.frames)),
                                    size=(video.width, video.height)), model, entry,
                      quality=2, profile=profile, schedule=FLAT, adaptive_intra=False)
            path.write_bytes(sink.getvalue())
        else:
            data = encode(video, coder, entry, quality=2,
                          intra_period=2 if key == "intra_" else 12, profile=profile,
                          qmap=MAP if key in MAPPED else None, adapters=adapters,
                          schedule=SCHEDULES.get(key, FLAT),
                          adaptive_intra=False).data
            path.write_bytes(relabelled(data, intra_period=12))
        symbols, frames = _decode(path.read_bytes())
        expected.update({f"{key}symbols_md5": symbols, f"{key}frames_md5": frames})
    EXPECTED.write_text(json.dumps(expected, indent=1) + "\n")


def _adapted(model: SSF) -> tuple[SSF, bytes]:
    """The model with random adapters of the default layers merged, and their unit's bytes."""
    spec = make_spec(model, AdaptConfig())
    shapes = [t.shape for t in sent_tensors(inject(copy.deepcopy(model), spec))]
    gen = torch.Generator().manual_seed(5)
    unit = make_unit(spec, [torch.randn(s, generator=gen) * 0.02 for s in shapes], SpikeSlabPrior())
    return apply_unit(model, unit), unit.write(LAYER_TABLE)


def _md5(parts: list[bytes]) -> str:
    h = hashlib.md5()
    for p in parts:
        h.update(p)
    return h.hexdigest()


class _Spy:
    """Records every y symbol the range decoder returns; optionally perturbs z_hat (the input of
    the hyper-synthesis) and the input of every g_s."""

    def __init__(self, monkeypatch, noise: float = 0.0):
        self.symbols: list[bytes] = []
        self.noise = noise
        self.gen = torch.Generator().manual_seed(0)
        y_decode, z_decode = TableCoder.decode, LatentCodec.decode_z

        def y_spy(coder, *args, **kwargs):
            out = y_decode(coder, *args, **kwargs)
            self.symbols.append(out.to(torch.int64).numpy().tobytes())
            return out

        def z_noisy(codec, *args, **kwargs):
            return self._perturb(z_decode(codec, *args, **kwargs))

        monkeypatch.setattr(TableCoder, "decode", y_spy)
        monkeypatch.setattr(LatentCodec, "decode_z", z_noisy)

    def _perturb(self, x: torch.Tensor) -> torch.Tensor:
        if not self.noise:
            return x
        return x + self.noise * torch.randn(x.shape, generator=self.gen) * (x.abs().max() + 1)

    def hook(self, model: SSF) -> None:
        for codec in (model.intra, model.motion, model.residual):
            codec.g_s.register_forward_pre_hook(lambda _m, args: (self._perturb(args[0]),))


def _decode(data: bytes, monkeypatch=None, noise: float = 0.0, model=None) -> tuple[str, list[str]]:
    mp = monkeypatch or pytest.MonkeyPatch()
    try:
        spy = _Spy(mp, noise)
        if model is None:
            model, entry = load_model(path=WEIGHTS)
        else:
            entry = load_model(path=WEIGHTS)[1]
        spy.hook(model)
        out = decode_stream(bitstream.unpack(data), model, entry)
    finally:
        if monkeypatch is None:
            mp.undo()
    frames = [hashlib.md5(np.round(f * 255).astype(np.uint8).tobytes()).hexdigest()
              for f in out.frames]
    return _md5(spy.symbols), frames


@pytest.fixture(scope="module")
def expected() -> dict:
    if os.environ.get("NVC_REGENERATE_GOLDEN") == "1":
        _regenerate()
    return json.loads(EXPECTED.read_text())


@pytest.mark.parametrize("key", STREAMS)
def test_golden_stream_decodes_to_the_recorded_symbols_and_frames(expected, monkeypatch, key):
    path, profile, version = STREAMS[key]
    data = path.read_bytes()
    header = bitstream.unpack(data).header
    assert data[len(bitstream.MAGIC)] == version
    assert header.numeric_profile == profile
    assert (bitstream.unpack(data).quality_map == MAP.write()) == (key in MAPPED)
    assert of_header(header) == SCHEDULES.get(key, FLAT)
    assert "".join(f.kind.name for f in bitstream.unpack(data).frames) == (
        "IPI" if key == "intra_" else "IPP")
    assert (bitstream.unpack(data).adapters is not None) == (key in ADAPTED)
    assert bitstream.unpack(data).live == (key == "live_")
    assert header.sample_aspect == ASPECTS.get(key, (1, 1))
    symbols, frames = _decode(data, monkeypatch)
    assert symbols == expected[f"{key}symbols_md5"]
    assert frames == expected[f"{key}frames_md5"] and len(frames) == 3


@pytest.mark.parametrize("key", STREAMS)
def test_perturbed_float_paths_decode_the_same_symbols(expected, monkeypatch, key):
    monkeypatch.setattr(nvc.codec, "CODING_THREADS", 2)
    symbols, _ = _decode(STREAMS[key][0].read_bytes(), monkeypatch, noise=1e-4)
    assert symbols == expected[f"{key}symbols_md5"]


def test_a_format_4_stream_still_decodes_to_the_same_frames(expected, monkeypatch):
    data = (GOLDEN / "stream-map-format4.nvc").read_bytes()
    assert data[len(bitstream.MAGIC)] == 4
    assert bitstream.unpack(data).header.synthesis == bitstream.Synthesis.FLOAT32
    symbols, frames = _decode(data, monkeypatch)
    assert symbols == expected["map_symbols_md5"] and frames == expected["map_frames_md5"]


def test_the_newest_golden_stream_is_of_the_current_format():
    assert max(v for _, _, v in STREAMS.values()) == bitstream.FORMAT_VERSION
    assert STREAMS["rans_"][1] == bitstream.DEFAULT_PROFILE


def test_both_coders_carry_the_same_symbols(expected):
    """Profile 3 changes the coder, not what is coded: the same symbols and frames as profile 2."""
    assert expected["rans_symbols_md5"] == expected["skip_symbols_md5"]
    assert expected["rans_frames_md5"] == expected["skip_frames_md5"]


def test_either_adapter_coder_gives_the_same_frames(expected):
    """Format 9 changes the coder of the adapter parameters, not the parameters: the format-8
    stream (CompressAI's coder) and the format-9 one decode to the same symbols and frames, and
    differ only in the adapter unit's coded bytes."""
    assert expected["adapted_symbols_md5"] == expected["adapted8_symbols_md5"]
    assert expected["adapted_frames_md5"] == expected["adapted8_frames_md5"]
    old, new = (bitstream.unpack(STREAMS[k][0].read_bytes()) for k in ADAPTED)
    units = [bitstream.AdapterUnit.read(s.adapters, LAYER_TABLE, s.version) for s in (old, new)]
    assert units[0].legacy_coder and not units[1].legacy_coder
    assert replace(units[0], coded=b"", legacy_coder=False) == replace(units[1], coded=b"")
    assert [f.latents for f in old.frames] == [f.latents for f in new.frames]


def test_a_live_stream_differs_in_its_framing_alone(expected):
    """Coded from a pipe read live, the clip's stream has the same frames as from a file: only
    the header's count (0) and the end unit differ (format 10)."""
    assert expected["live_symbols_md5"] == expected["rans_symbols_md5"]
    assert expected["live_frames_md5"] == expected["rans_frames_md5"]
    live, rans = (bitstream.unpack(STREAMS[k][0].read_bytes()) for k in ("live_", "rans_"))
    assert live.live and live.header == rans.header and live.frames == rans.frames
    assert live.unit_bytes["end"] == len(bitstream.pack_end(3))


def test_the_skip_profile_codes_fewer_symbols(expected):
    """The golden streams exercise the skip: the tiny model's scales reach index 0, and the skip
    stream carries fewer y bytes than the stream of the same clip that codes every element."""
    full, skip = (bitstream.unpack(STREAMS[k][0].read_bytes()) for k in ("", "skip_"))
    y_bytes = [sum(len(s.y) for f in st.frames for s in f.latents) for st in (full, skip)]
    assert y_bytes[1] < y_bytes[0]


def test_the_float_profile_fails_the_same_perturbation(monkeypatch):
    """What the exact profile buys: a float-profile stream of the same clip, decoded under the same
    kind of perturbation, reads other symbols (or fails)."""
    model, entry = load_model(path=WEIGHTS)
    data = encode(make_video(frames=3, hw=(64, 96), seed=3), model, entry, quality=2,
                  profile=NumericProfile.FLOAT).data
    clean, _ = _decode(data, monkeypatch)
    try:
        noisy, _ = _decode(data, monkeypatch, noise=1e-2)
    except BitstreamError:
        return
    assert noisy != clean


def test_other_coder_tables_are_refused(monkeypatch):
    model, entry = load_model(path=WEIGHTS)
    stream = bitstream.unpack(STREAM.read_bytes())
    monkeypatch.setattr(SSF, "tables_crc", lambda self: 0x12345678)
    with pytest.raises(BitstreamError, match="other range-coder tables"):
        decode_stream(stream, model, entry)


def test_each_stream_decodes_with_the_tables_its_format_built(monkeypatch):
    """Format 14's tables (float64) and format 13's (float32) differ, and a decoder builds the
    ones the stream's format names, whichever it holds; `nvc info` says which."""
    from nvc.info import describe

    model, entry = load_model(path=WEIGHTS)
    crcs = {}
    for key in ("numbered_", "tables_", "numbered_"):
        data = STREAMS[key][0].read_bytes()
        decode_stream(bitstream.unpack(data), model, entry)
        crcs[key] = model.tables_crc()
        assert crcs[key] == bitstream.unpack(data).header.tables_crc
        assert describe(data, key)[0]["coder_tables"] == ("float64" if key == "tables_" else "float32")
    assert crcs["numbered_"] != crcs["tables_"]


def test_format_2_streams_decode_with_the_float_profile(tiny_model, small_video, monkeypatch):
    model, entry = tiny_model
    monkeypatch.setattr(nvc.codec, "FORMAT_VERSION", 2)  # coded with format 2's tables
    new = bitstream.unpack(encode(small_video, model, entry, 1, profile=NumericProfile.FLOAT,
                                  schedule=FLAT).data)
    old = bitstream.Stream(new.header, new.frames, version=2)
    data = bitstream.pack(old)
    assert data[len(bitstream.MAGIC)] == 2
    back = bitstream.unpack(data)
    assert back.header.numeric_profile == NumericProfile.FLOAT and back.header.tables_crc == 0
    coded = encode(small_video, model, entry, 1, profile=NumericProfile.FLOAT, schedule=FLAT)
    out = decode_stream(back, model, entry)
    assert all(np.array_equal(a, b) for a, b in zip(coded.reconstruction, out.frames))


@pytest.mark.parametrize("string", ["y", "z"])
@pytest.mark.parametrize("cut", ["short", "empty", "zeros", "long"])
def test_a_damaged_substream_names_its_frame(cut, string):
    """A profile-3 y or z string that passes the CRCs (they are recomputed here) but not the
    coder's own checks: one line naming the frame, never garbage silently or a crash."""
    model, entry = load_model(path=WEIGHTS)
    stream = bitstream.unpack(STREAMS["rans_"][0].read_bytes())
    latent = stream.frames[1].latents[1]
    s = getattr(latent, string)
    damaged = {"short": s[:-2], "empty": b"", "zeros": bytes(len(s)), "long": s + b"\0\0"}[cut]
    stream.frames[1].latents[1] = replace(latent, **{string: damaged})
    with pytest.raises(BitstreamError, match=r"^damaged stream: frame 1 cannot be decoded "
                                             rf"\(damaged {string} string"):
        decode_stream(bitstream.unpack(bitstream.pack(stream)), model, entry)


def test_the_schedule_moves_every_frame(expected):
    """The scheduled stream codes the map stream's clip with every frame moved along the ladder:
    none decodes to the map stream's frame (profiles 2 and 3 carry the same symbols)."""
    sched, mapped = expected["sched_frames_md5"], expected["map_frames_md5"]
    assert all(a != b for a, b in zip(sched, mapped, strict=True))


def test_the_cycle_moves_the_p_frames_alone(expected):
    """The cycled stream codes the scheduled stream's clip with P-frame 1 half a rung lower: the
    I-frame decodes to the scheduled stream's, both P-frames (P-frame 2 from P-frame 1) to others."""
    cycled, sched = expected["cycle_frames_md5"], expected["sched_frames_md5"]
    assert cycled[0] == sched[0] and cycled[1] != sched[1] and cycled[2] != sched[2]


def test_salvage_of_raw_damage_is_frames_or_one_line_never_a_crash(tmp_path, capsys):
    """Every golden stream damaged as a file is (bits flipped anywhere, the file cut, a run of
    bytes repeated; checksums left as they were), decoded with --salvage: exit 0 with at most
    the header's frame count written, or 1 with one line on stderr and no output; never a
    traceback (seeded)."""
    import random

    from nvc.cli import main

    rng = random.Random(11)
    out = tmp_path / "o.y4m"
    for case in range(40):
        raw = bytearray(rng.choice(sorted(GOLDEN.glob("*.nvc"))).read_bytes())
        declared = bitstream.unpack(bytes(raw)).header.frame_count or None
        at = rng.randrange(len(raw))
        if case % 3 == 0:
            for _ in range(rng.randint(1, 3)):
                raw[rng.randrange(len(raw))] ^= 1 << rng.randrange(8)
        elif case % 3 == 1:
            del raw[at:]
        else:
            raw[at:at] = raw[at: at + rng.randint(1, 32)]
        (tmp_path / "d.nvc").write_bytes(bytes(raw))
        out.unlink(missing_ok=True)
        rc = main(["decode", str(tmp_path / "d.nvc"), "-o", str(out), "--salvage",
                   "--weights", str(WEIGHTS)])
        err = capsys.readouterr().err.strip()
        assert rc in (0, 1), (case, err)
        if rc == 1:
            assert err and "\n" not in err and "Traceback" not in err and not out.exists(), \
                (case, err)
        else:
            assert out.read_bytes().count(b"FRAME") <= (declared or 10 ** 6), case


def test_damage_behind_sound_checksums_is_one_line_never_a_crash(tmp_path, capsys):
    """Every golden stream with one unit's payload damaged (bits flipped, a byte replaced, cut,
    a run repeated) and its checksum recomputed, so the parsers and the decoder behind the CRC see
    it: `nvc decode` and `nvc info` exit 0 (the damage decoded to other samples) or 1 with one line
    on stderr, never a traceback (seeded; 1,900 such cases passed when it was written)."""
    import random

    from nvc.cli import main

    rng = random.Random(5)
    out = tmp_path / "o.y4m"
    for case in range(40):
        raw = rng.choice(sorted(GOLDEN.glob("*.nvc"))).read_bytes()
        version, *units = bitstream.units._read_units(bitstream.Reader(raw), bitstream.Damage())
        hit = rng.randrange(len(units))
        data = bytearray(raw[: len(bitstream.MAGIC) + 1])
        for k, (kind, payload, _) in enumerate(units):
            p = bytearray(payload)
            if k == hit and p:
                at = rng.randrange(len(p))
                how = case % 4
                if how == 0:
                    p[at] ^= 1 << rng.randrange(8)
                elif how == 1:
                    p[at] = rng.randrange(256)
                elif how == 2:
                    del p[at:]
                else:
                    p[at:at] = p[at: at + rng.randint(1, 32)]
            data += bitstream.units._unit(kind, bytes(p))
        damaged = tmp_path / "d.nvc"
        damaged.write_bytes(bytes(data))
        command = (["info", str(damaged)] if case % 5 == 0 else
                   ["decode", str(damaged), "-o", str(out), "--weights", str(WEIGHTS)])
        rc = main(command)
        err = capsys.readouterr().err.strip()
        assert rc in (0, 1), (case, err)
        assert rc == 0 or (err and "\n" not in err and "Traceback" not in err), (case, err)


def test_the_aspect_ratio_moves_no_symbol_and_no_frame(expected):
    """stream-aspect.nvc codes stream-rans.nvc's clip; only its header's sample aspect differs."""
    assert expected["aspect_symbols_md5"] == expected["rans_symbols_md5"]
    assert expected["aspect_frames_md5"] == expected["rans_frames_md5"]


def test_numbered_frames_move_no_symbol_and_no_frame(expected):
    """stream-numbered.nvc codes stream-rans.nvc's clip; only its frame units' type bytes differ
    (frames 1 and 2 numbered), no byte more than stream-aspect.nvc's (format 12, the same clip)."""
    assert expected["numbered_symbols_md5"] == expected["rans_symbols_md5"]
    assert expected["numbered_frames_md5"] == expected["rans_frames_md5"]
    before, numbered = (STREAMS[k][0].read_bytes() for k in ("aspect_", "numbered_"))
    assert len(numbered) == len(before)
    units = list(bitstream.units._read_units(bitstream.Reader(numbered), bitstream.Damage()))[1:]
    assert [bitstream.frame_number(payload) for kind, payload, _ in units
            if kind == bitstream.UnitType.FRAME] == [0, 1, 2]
