"""Adaptive I-frames (format 8): a frame between the GOP's I-frames is coded as an I-frame where
that costs less at its lambda (nvc.codec.code_frames); decoders of format 8 take an I-frame
anywhere, older formats only at the intra period."""
import numpy as np
import pytest
import torch

import nvc.codec
from nvc import bitstream
from nvc.bitstream import CodedFrame, FrameType, LatentStrings
from nvc.codec import Candidates, encode
from nvc.decoding import decode_stream
from nvc.errors import BitstreamError
from nvc.models.ssf import SSF
from nvc.zoo import load_model

from .conftest import relabelled


def _kinds(data: bytes) -> str:
    return "".join(f.kind.name for f in bitstream.unpack(data).frames)


def _candidate(kind: FrameType, size: int, value: float) -> tuple[CodedFrame, torch.Tensor]:
    return CodedFrame(kind, [LatentStrings(bytes(size), b"")]), torch.full((1, 3, 4, 4), value)


@pytest.mark.parametrize("lam, expected", [(0.0, FrameType.I), (1.0, FrameType.P)])
def test_the_cheaper_candidate_is_kept(lam, expected):
    src = np.full((4, 4, 3), 0.5, np.float32)
    p_frame = _candidate(FrameType.P, 200, 0.5)  # exact, large
    i_frame = _candidate(FrameType.I, 10, 0.6)  # small, wrong by 0.1
    assert Candidates(lam, src, p_frame, i_frame).kept()[0].kind == expected


def test_a_tie_keeps_the_p_frame():
    src = np.zeros((4, 4, 3), np.float32)
    p_frame, i_frame = _candidate(FrameType.P, 50, 0.0), _candidate(FrameType.I, 50, 0.0)
    assert Candidates(0.01, src, p_frame, i_frame).kept() is p_frame


def test_a_quality_maps_lambdas_weigh_each_cells_error():
    from nvc.codec import frame_cost

    src = np.zeros((4, 8, 3), np.float32)
    recon = torch.zeros(1, 3, 4, 8)
    recon[..., :, :4] = 0.2  # all the error in the left cell (cells of 4 pixels a side)
    coded = (CodedFrame(FrameType.P, [LatentStrings(bytes(30), b"")]), recon)
    uniform, left_heavy = torch.full((1, 1, 1, 2), 0.01), torch.tensor([[[[0.05, 0.01]]]])
    assert frame_cost(uniform, src, coded) == pytest.approx(frame_cost(0.01, src, coded))
    rate = frame_cost(0.0, src, coded)
    assert frame_cost(left_heavy, src, coded) - rate == pytest.approx(
        5 * (frame_cost(uniform, src, coded) - rate), rel=1e-5)
    # the same error under a map that favours the other cell costs what the scalar says
    assert frame_cost(torch.tensor([[[[0.01, 0.05]]]]), src, coded) == pytest.approx(
        frame_cost(0.01, src, coded), rel=1e-5)


def test_fixed_frame_types_code_i_frames_at_the_intra_period_only(tiny_model, small_video,
                                                                 monkeypatch):
    model, entry = tiny_model
    monkeypatch.setattr(SSF, "lambda_at", lambda self, q: 0.0)  # auto would code all I-frames
    assert _kinds(encode(small_video, model, entry, 1, intra_period=3,
                         adaptive_intra=False).data) == "IPPI"


def test_where_no_p_frame_is_dearer_auto_writes_the_fixed_stream(tiny_model, small_video):
    model, entry = tiny_model  # it predicts its clip for less than it codes it intra
    auto = encode(small_video, model, entry, 2).data
    assert _kinds(auto) == "IPPP"
    assert auto == encode(small_video, model, entry, 2, adaptive_intra=False).data


def test_cheaper_i_frames_are_coded_and_decode_bit_exactly(tiny_model, tiny_weights, small_video,
                                                           monkeypatch):
    """At lambda 0 the cost is the frame's bytes, and the tiny model's I-frames are smaller."""
    model, entry = tiny_model
    fixed = encode(small_video, model, entry, 1, adaptive_intra=False)
    monkeypatch.setattr(SSF, "lambda_at", lambda self, q: 0.0)
    auto = encode(small_video, model, entry, 1)
    assert _kinds(auto.data) == "IIII" and _kinds(fixed.data) == "IPPP"
    assert all(a < f for a, f in zip(auto.frame_bytes[1:], fixed.frame_bytes[1:]))
    fresh, fresh_entry = load_model(path=tiny_weights)
    out = decode_stream(bitstream.unpack(auto.data), fresh, fresh_entry)
    assert all(np.array_equal(a, b) for a, b in zip(auto.reconstruction, out.frames))


def test_an_i_frame_between_the_periods_is_refused_before_format_8(tiny_model, small_video,
                                                                   monkeypatch):
    model, entry = tiny_model

    def coded() -> bytes:
        return relabelled(encode(small_video, model, entry, 1, intra_period=2,
                                 adaptive_intra=False).data, intra_period=12)
    data = coded()
    assert _kinds(data) == "IPIP"
    decode_stream(bitstream.unpack(data), model, entry)  # format 8: an I-frame anywhere
    monkeypatch.setattr(nvc.codec, "FORMAT_VERSION", 7)  # coded with format 7's tables
    with pytest.raises(BitstreamError, match="frame 2 has the wrong type"):
        decode_stream(bitstream.unpack(relabelled(coded(), version=7)), model, entry)


def test_a_p_frame_that_starts_a_gop_is_refused(tiny_model, small_video):
    model, entry = tiny_model
    data = relabelled(encode(small_video, model, entry, 1, adaptive_intra=False).data,
                       intra_period=2)
    with pytest.raises(BitstreamError, match="frame 2 has the wrong type for intra period 2"):
        decode_stream(bitstream.unpack(data), model, entry)


def test_the_trial_on_a_second_thread_writes_the_same_bytes(tiny_model, small_video, monkeypatch):
    import nvc.codec

    model, entry = tiny_model

    def streams(parallel: int) -> tuple[bytes, bytes]:
        monkeypatch.setattr(nvc.codec, "PARALLEL_TRIAL", parallel)
        own = encode(small_video, model, entry, 2).data  # the P-frames kept
        with monkeypatch.context() as m:
            m.setattr(SSF, "lambda_at", lambda self, q: 0.0)  # every trial wins
            return own, encode(small_video, model, entry, 2).data

    beside, in_turn = streams(1), streams(0)
    assert beside == in_turn and _kinds(beside[0]) == "IPPP" and _kinds(beside[1]) == "IIII"


@pytest.fixture
def trial_pools(monkeypatch) -> list[int]:
    """The intra trial on a second thread; one entry a pool made for it."""
    import nvc.codec

    pools: list[int] = []
    pool_class = nvc.codec.ThreadPoolExecutor

    def counted(*args, **kwargs):
        pools.append(1)
        return pool_class(*args, **kwargs)
    monkeypatch.setattr(nvc.codec, "ThreadPoolExecutor", counted)
    monkeypatch.setattr(nvc.codec, "PARALLEL_TRIAL", 1)
    return pools


def test_large_refined_frames_try_their_candidates_in_turn(tiny_model, small_video, monkeypatch,
                                                           trial_pools):
    """Above REFINE_BESIDE_MAX_PIXELS, refined candidates are not coded side by side (each would
    hold its own activations); unrefined ones still are. The bytes do not change."""
    import nvc.codec

    model, entry = tiny_model
    pools = trial_pools
    pixels = small_video.height * small_video.width
    runs = {}
    for limit, refine in ((pixels, 2), (pixels - 1, 2), (pixels - 1, 0)):
        monkeypatch.setattr(nvc.codec, "REFINE_BESIDE_MAX_PIXELS", limit)
        before = len(pools)
        runs[limit, refine] = encode(small_video, model, entry, 2, refine=refine).data
        assert len(pools) - before == (0 if refine and limit < pixels else 1), (limit, refine)
    assert runs[pixels, 2] == runs[pixels - 1, 2]


@pytest.fixture
def a_better_reference(tiny_model, monkeypatch):
    """Costs that make an I-frame 10% dearer than its P-frame alone, and any P-frame predicted
    from an I-frame half the price: only a look-ahead sees that the I-frame pays."""
    import nvc.codec

    model, _ = tiny_model
    intra_recons: list[torch.Tensor] = []  # kept alive, so that identity means something
    from_intra: list[torch.Tensor] = []
    compress_intra, compress_inter = model.compress_intra, model.compress_inter

    def intra(x, q, profile):
        cf, recon = compress_intra(x, q, profile)
        intra_recons.append(recon)
        return cf, recon

    def inter(x, ref, q, profile):
        cf, recon = compress_inter(x, ref, q, profile)
        if any(ref is r for r in intra_recons):
            from_intra.append(recon)
        return cf, recon

    def cost(lam, src, coded, goal=None):
        if coded[0].kind == FrameType.I:
            return 1.1
        return 0.5 if any(coded[1] is r for r in from_intra) else 1.0

    monkeypatch.setattr(model, "compress_intra", intra)
    monkeypatch.setattr(model, "compress_inter", inter)
    monkeypatch.setattr(nvc.codec, "frame_cost", cost)


@pytest.mark.parametrize("look_ahead, parallel, kinds", [
    (0, 1, "IPPPPP"),  # each frame alone: the P-frame is cheaper
    # frame 1, predicted from the GOP's I-frame (0.5 against 1.1), is not close enough to hold;
    # frame 2 is held and kept intra once frame 3 shows its P-frame at half price; frame 3 is
    # like frame 1, frame 4 like frame 2, decided by the clip's last frame
    (1, 1, "IPIPIP"),
    (1, 0, "IPIPIP"),
])
def test_looking_ahead_keeps_an_i_frame_that_pays_in_the_next_frame(
        look_ahead, parallel, kinds, a_better_reference, tiny_model, tiny_weights, monkeypatch):
    import nvc.codec

    from .conftest import make_video

    model, entry = tiny_model
    monkeypatch.setattr(nvc.codec, "LOOK_AHEAD", look_ahead)
    monkeypatch.setattr(nvc.codec, "PARALLEL_TRIAL", parallel)
    coded = encode(make_video(frames=6), model, entry, 2, intra_period=12)
    assert _kinds(coded.data) == kinds
    fresh, fresh_entry = load_model(path=tiny_weights)
    out = decode_stream(bitstream.unpack(coded.data), fresh, fresh_entry)
    assert all(np.array_equal(a, b) for a, b in zip(coded.reconstruction, out.frames))


def test_refinement_memory_decides_side_by_side_and_refuses_what_cannot_fit(
        tiny_model, small_video, monkeypatch, trial_pools):
    """nvc.memory: where two refinements of a frame do not fit in the memory the machine has,
    its candidates are refined in turn (the same bytes); where one does not, encoding stops with
    one ConfigError before any frame is coded, naming the size and what would fit."""
    from nvc import memory
    from nvc.codec import padded_hw
    from nvc.errors import ConfigError
    from nvc.refine import Refinement

    model, entry = tiny_model
    pools = trial_pools
    pixels = padded_hw(small_video.height, small_video.width, model.cfg.multiple)
    how = Refinement(2)
    one, two = (memory.refinement_bytes(how, pixels[0] * pixels[1], n) for n in (1, 2))
    runs = []
    for free, pooled in ((two, 1), (two - 1, 0), (one, 0)):
        monkeypatch.setattr(memory, "available_bytes", lambda free=free: free)
        before = len(pools)
        runs.append(encode(small_video, model, entry, 2, refine=how).data)
        assert len(pools) - before == pooled, free
    assert runs[0] == runs[1] == runs[2]
    monkeypatch.setattr(memory, "available_bytes", lambda: one - 1)
    with pytest.raises(ConfigError, match=rf"--refine at {small_video.width}x{small_video.height} "
                                          r"needs about .* GB .*--refine-precision bf16"):
        encode(small_video, model, entry, 2, refine=how)
    encode(small_video, model, entry, 2, refine=0)  # unrefined coding is not gated


def test_available_memory_reads_meminfo(tmp_path, monkeypatch):
    from nvc import memory

    info = tmp_path / "meminfo"
    info.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n"
                    "SwapFree:        1000000 kB\n")
    monkeypatch.setattr(memory, "MEMINFO", info)
    assert memory.available_bytes() == 21000000 * 1024
    info.write_text("MemTotal: 1 kB\n")
    assert memory.available_bytes() is None
    monkeypatch.setattr(memory, "MEMINFO", tmp_path / "absent")
    assert memory.available_bytes() is None
