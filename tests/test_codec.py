import numpy as np
import pytest
import torch

from nvc import bitstream
from nvc.bitstream import FrameType
from nvc.codec import encode, pad_to
from nvc.decoding import decode_stream
from nvc.errors import BitstreamError, InputError
from nvc.zoo import ZooEntry, load_model


@pytest.mark.parametrize("intra_period", [1, 2, 12])
def test_fresh_decoder_reproduces_encoder_bit_exactly(tiny_model, tiny_weights, small_video,
                                                      intra_period):
    model, entry = tiny_model
    coded = encode(small_video, model, entry, quality=1, intra_period=intra_period)
    fresh, fresh_entry = load_model(path=tiny_weights)  # a new model object, as a decoder would
    assert fresh is not model
    out = decode_stream(bitstream.unpack(coded.data), fresh, fresh_entry)
    assert len(out.frames) == len(small_video.frames)
    for a, b in zip(coded.reconstruction, out.frames):
        assert a.shape == (50, 70, 3)
        assert np.array_equal(a, b)


def test_frame_types_follow_intra_period(tiny_model, small_video):
    model, entry = tiny_model
    s = bitstream.unpack(encode(small_video, model, entry, 1, intra_period=3).data)
    assert [f.kind for f in s.frames] == [FrameType.I, FrameType.P, FrameType.P, FrameType.I]


def test_header_describes_the_clip(tiny_model, small_video):
    model, entry = tiny_model
    h = bitstream.unpack(encode(small_video, model, entry, 2, intra_period=5).data).header
    assert (h.width, h.height, h.frame_count, h.intra_period, h.quality) == (70, 50, 4, 5, 2)
    assert (h.fps_num, h.fps_den) == (25, 1)


def test_quality_changes_the_rate(tiny_model, small_video):
    model, entry = tiny_model
    sizes = [len(encode(small_video, model, entry, q).data) for q in (1, 2)]
    assert sizes[0] < sizes[1]


def test_other_weights_are_refused(tiny_model, small_video):
    model, entry = tiny_model
    data = encode(small_video, model, entry, 1).data
    other = ZooEntry(entry.model_id, "other", "", "ff" * 32)
    with pytest.raises(BitstreamError, match="other weights"):
        decode_stream(bitstream.unpack(data), model, other)


@pytest.mark.parametrize("kwargs, message", [({"quality": 0}, "quality"), ({"quality": 9}, "quality"),
                                             ({"quality": 1, "intra_period": 0}, "intra period"),
                                             ({"quality": 1, "intra_period": 10**23},
                                              "intra period must be 1..5184000")])
def test_bad_encode_arguments(tiny_model, small_video, kwargs, message):
    model, entry = tiny_model
    with pytest.raises(InputError, match=message):
        encode(small_video, model, entry, **kwargs)


def test_no_header_is_written_that_would_not_read_back(tiny_model, small_video):
    from dataclasses import replace
    from fractions import Fraction

    model, entry = tiny_model
    wide = replace(small_video, aspect=Fraction(100_000, 3))  # a term past the header's 16 bits
    with pytest.raises(InputError, match=r"its stream would not read back \(damaged stream: "
                                         r"sample aspect ratio 100000:3"):
        encode(wide, model, entry, 2)


def test_a_clip_longer_than_a_stream_holds_is_refused(tiny_model, small_video):
    from dataclasses import replace

    from nvc.bitstream import LIMITS
    from nvc.io import LazyFrames

    model, entry = tiny_model
    endless = replace(small_video, frames=LazyFrames.indexed(LIMITS.max_frames + 1,
                                                             lambda i: small_video.frames[0]))
    with pytest.raises(InputError, match=f"{LIMITS.max_frames + 1} frames are more than a stream "
                                         f"holds .{LIMITS.max_frames}, a day at 60 fps.; code part"):
        encode(endless, model, entry, 2)


def test_pad_replicates_to_multiple():
    x = torch.arange(6.0).reshape(1, 1, 2, 3)
    y = pad_to(x, 4)
    assert y.shape == (1, 1, 4, 4)
    assert torch.equal(y[..., :2, :3], x) and torch.equal(y[..., 3, :3], x[..., 1, :])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_frames_leave_the_model_with_quantize_8bits_values(dtype):
    from nvc.codec import quantize_8bit, to_numpy

    halves = (torch.arange(256, dtype=torch.float32) + 0.5) / 255  # x * 255 lands on k + 1/2
    x = torch.cat([halves, torch.rand(3 * 64 * 64 - 256 - 4) * 1.4 - 0.2,
                   torch.tensor([-1.0, 0.0, 1.0, 2.0])]).reshape(1, 3, 64, 64).to(dtype)
    for layout in (torch.contiguous_format, torch.channels_last):
        got = to_numpy(x.contiguous(memory_format=layout), 60, 50)
        want = quantize_8bit(x[0, :, :60, :50].permute(1, 2, 0).float().numpy())
        assert got.dtype == np.float32 and got.shape == (60, 50, 3)
        assert np.array_equal(got, want)


def test_streaming_encode_writes_the_same_bytes(tiny_model, small_video, tmp_path):
    import io

    from nvc.codec import encode_to
    from nvc.io import read_video
    from nvc.writers import write_video

    model, entry = tiny_model
    path = tmp_path / "clip.y4m"
    write_video(path, small_video)
    lazy = read_video(path, lazy=True)
    sink = io.BytesIO()
    size, _, frames = encode_to(sink, lazy, model, entry, 2, intra_period=2)
    assert sink.getvalue() == encode(read_video(path), model, entry, 2, intra_period=2).data
    assert size == len(sink.getvalue()) and frames == len(small_video.frames)


def test_an_input_that_ends_early_has_its_count_rewritten(tiny_model, small_video, tmp_path):
    """Frames that end before the count the head was written with (nvc encode's first Ctrl-C on a
    file): the head is rewritten with the frames coded, a shorter varint moving every byte after
    it (200 -> 3), and the file is what coding those frames alone writes; a sink that cannot be
    read back is an error, not a stream whose head promises frames it lacks."""
    from dataclasses import replace

    from nvc.codec import encode_to
    from nvc.errors import NvcError
    from nvc.io import LazyFrames
    from nvc.writers import open_output

    model, entry = tiny_model
    frames = small_video.frames[:3]
    promised = replace(small_video, frames=LazyFrames(200, lambda: iter(frames)))
    out = tmp_path / "short.nvc"
    with open_output(out) as sink:
        size, _, count = encode_to(sink, promised, model, entry, 2, intra_period=2)
    want = encode(replace(small_video, frames=frames), model, entry, 2, intra_period=2).data
    assert out.read_bytes() == want and size == len(want) and count == 3
    assert bitstream.unpack(want).header.frame_count == 3

    with open(tmp_path / "write-only.nvc", "wb") as sink, pytest.raises(NvcError, match="rewritten"):
        encode_to(sink, promised, model, entry, 2, intra_period=2)


def test_coding_runs_on_the_pinned_thread_count(tiny_model, small_video, monkeypatch):
    """Encoder and decoder run the network (the decoder: its synthesis) on CODING_THREADS threads
    whatever the caller set."""
    from nvc import bitstream
    from nvc.codec import CODING_THREADS

    model, entry = tiny_model
    seen = []
    for name in ("compress_intra", "compress_inter", "synthesize"):
        real = getattr(model, name)

        def spy(*a, _real=real, **kw):
            seen.append(torch.get_num_threads())
            return _real(*a, **kw)
        monkeypatch.setattr(model, name, spy)
    before = torch.get_num_threads()
    torch.set_num_threads(CODING_THREADS + 1)
    try:
        coded = encode(small_video, model, entry, 2, intra_period=2)
        decode_stream(bitstream.unpack(coded.data), model, entry)
        assert torch.get_num_threads() == CODING_THREADS + 1  # restored afterwards
    finally:
        torch.set_num_threads(before)
    # 2 I-frames, 2 P-frames each also tried as an I-frame (adaptive I-frames), 4 syntheses in the
    # decoder, and one in each of the encoder's 4 I-frame codings (compress_intra -> code_latents)
    assert len(seen) == 14 and set(seen) == {CODING_THREADS}


def test_bf16_synthesis_is_recorded_and_reproduced_by_the_decoder(tiny_model, tiny_weights,
                                                                   small_video):
    from dataclasses import replace

    model, entry = tiny_model
    coded = encode(small_video, model, entry, 2, intra_period=2,
                   synthesis=bitstream.Synthesis.BFLOAT16)
    stream = bitstream.unpack(coded.data)
    assert stream.header.synthesis == bitstream.Synthesis.BFLOAT16
    fresh, fresh_entry = load_model(path=tiny_weights)
    out = decode_stream(stream, fresh, fresh_entry)
    assert all(np.array_equal(a, b) for a, b in zip(coded.reconstruction, out.frames))
    # the decoder follows the header: read as float32, the same latents give other frames
    as_fp32 = replace(stream, header=replace(stream.header, synthesis=bitstream.Synthesis.FLOAT32))
    other = decode_stream(as_fp32, fresh, fresh_entry)
    assert not all(np.array_equal(a, b) for a, b in zip(coded.reconstruction, other.frames))
    fp32 = encode(small_video, model, entry, 2, intra_period=2)
    assert bitstream.unpack(fp32.data).header.synthesis == bitstream.Synthesis.FLOAT32


def test_training_keeps_the_callers_autocast(tiny_model):
    """Outside coding the synthesis precision is unset: a trainer's bf16 autocast reaches g_s."""
    model, _ = tiny_model
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model._g_s(model.intra.g_s, torch.rand(1, model.cfg.intra_latent, 2, 2)).dtype \
            == torch.bfloat16
        with model.synthesis_in(torch.float32):
            assert model._g_s(model.intra.g_s, torch.rand(1, model.cfg.intra_latent, 2, 2)).dtype \
                == torch.float32
    assert model._synthesis_dtype is None


def test_frames_in_stripes_code_alike_on_any_number_of_threads(tiny_model, monkeypatch):
    """A frame taller than a stripe: the transforms' largest layers and the warp run in stripes
    (nvc.models.stripes), on one thread or several; the partition is the frame's, so the bytes are
    the same and the decoder, on another thread count than the encoder's, rebuilds the encoder's
    frames exactly."""
    from nvc.models import stripes

    from .conftest import make_video

    model, entry = tiny_model
    video = make_video(frames=3, hw=(150, 40))
    monkeypatch.setattr(stripes, "STRIPE_ROWS", 32)  # 192 padded rows: 6 stripes
    coded = []
    for threads in (1, 3):
        monkeypatch.setattr(stripes, "STRIPE_THREADS", threads)
        coded.append(encode(video, model, entry, 1))
    assert coded[0].data == coded[1].data
    for threads in (3, 1):
        monkeypatch.setattr(stripes, "STRIPE_THREADS", threads)
        out = decode_stream(bitstream.unpack(coded[0].data), model, entry)
        assert all(np.array_equal(a, b) for a, b in zip(coded[0].reconstruction, out.frames))


@pytest.mark.parametrize("refine", [0, 2])
def test_portrait_frames_code_under_the_gop_schedule(tiny_model, refine):
    """A frame taller than its padded width (a phone's portrait video): the schedule's uniform
    quality map (one cell) weighs every pixel of the frame's cost and of its refinement (the cost
    used to tile the cell by the padded width and fail on the height)."""
    from .conftest import make_video

    model, entry = tiny_model
    video = make_video(frames=3, hw=(150, 40))
    coded = encode(video, model, entry, 1, refine=refine)
    out = decode_stream(bitstream.unpack(coded.data), model, entry)
    assert all(np.array_equal(a, b) for a, b in zip(coded.reconstruction, out.frames))
