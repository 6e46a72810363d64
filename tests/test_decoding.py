import numpy as np
import pytest
import torch

from nvc import bitstream
from nvc.bitstream import FrameType
from nvc.codec import encode
from nvc.decoding import decode_stream


def test_nvc_decode_yields_the_decoders_frames(tiny_model, tiny_weights, small_video):
    import nvc
    from nvc import bitstream
    from nvc.io import rgb_to_yuv

    model, entry = tiny_model
    coded = encode(small_video, model, entry, 2, intra_period=2)
    video = nvc.decode(coded.data, weights=tiny_weights)
    assert (video.width, video.height, len(video.frames)) == (70, 50, 4)
    expected = decode_stream(bitstream.unpack(coded.data), model, entry).frames
    for got, want in zip(video.frames, expected):
        assert np.array_equal(got.y, rgb_to_yuv(want).y)


@pytest.mark.parametrize("start, stop, decoded", [
    (0, None, list(range(8))), (5, 7, [4, 5, 6]), (4, 5, [4]), (3, None, [0, 1, 2, 3, 4, 5, 6, 7]),
    (6, None, [4, 5, 6, 7]), (7, 8, [7]),  # 7 is an I-frame the encoder chose
])
def test_decoding_range_starts_at_the_last_i_frame(start, stop, decoded):
    from nvc.bitstream import CodedFrame
    from nvc.decoding import decoding_range
    from nvc.models.ssf import FrameType

    kinds = "IPPPIPPI"  # intra period 4, an extra I-frame at 7
    coded = [(i, CodedFrame(FrameType.I if k == "I" else FrameType.P, [])) for i, k in enumerate(kinds)]
    read = []

    def numbered():
        for item in coded:
            read.append(item[0])
            yield item
    assert [i for i, _ in decoding_range(numbered(), start, stop)] == decoded
    assert read == list(range(stop or 8))  # nothing read past the last frame asked for


def test_decoding_range_past_the_end_of_a_stream_of_unknown_length():
    from nvc.bitstream import CodedFrame
    from nvc.decoding import decoding_range
    from nvc.errors import InputError
    from nvc.models.ssf import FrameType

    frames = [(i, CodedFrame(FrameType.P if i else FrameType.I, [])) for i in range(3)]
    with pytest.raises(InputError, match=r"frame 9 is past the stream's end \(3 frames\)"):
        list(decoding_range(iter(frames), 9, None))


def test_decoding_builds_no_autograd_graph(tiny_model, small_video, monkeypatch):
    import torch

    from nvc import bitstream
    from nvc.decoding import iter_decoded

    model, entry = tiny_model
    coded = encode(small_video, model, entry, 2, intra_period=2)
    seen, synthesize = [], model.synthesize

    def recording(*args, **kwargs):
        seen.append(torch.is_grad_enabled())
        return synthesize(*args, **kwargs)
    monkeypatch.setattr(model, "synthesize", recording)
    for start in (0, 1):  # a whole decode and a range: every frame without autograd
        assert len(list(iter_decoded(bitstream.unpack(coded.data), model, entry, start=start))) \
            == len(small_video.frames) - start
    assert seen and not any(seen)


def test_a_lost_frame_carries_the_motion_on_and_the_next_decodes_from_it(tiny_model,
                                                                          small_video):
    """I P [lost] P: the lost frame is frame 1 moved on by P-frame 1's motion latent
    (SSF.extrapolate), and frame 3 decodes from it; the damage names frame 2 concealed and frame
    3 drifting. After an I-frame (no motion since), a lost frame repeats it."""
    from dataclasses import replace

    from nvc.bitstream import NumericProfile, Synthesis
    from nvc.codec import coding, padded_hw, to_numpy
    from nvc.decoding import iter_decoded
    from nvc.schedule import FLAT

    model, entry = tiny_model
    coded = encode(small_video, model, entry, quality=2, intra_period=8, schedule=FLAT,
                   adaptive_intra=False)
    s = bitstream.unpack(coded.data)
    f0, f1, _, f3 = s.frames
    h, w = s.header.height, s.header.width

    def decoded(frames, damage):
        units = bitstream.FrameUnits(iter(frames), bitstream.Reader(b""), damage)
        return list(iter_decoded(replace(s, frames=[]), model, entry, frames=units))
    damage = bitstream.Damage(salvage=True)  # what a salvaging reader hands the decoder
    lost = decoded([f0, f1, None, f3], damage)
    with torch.no_grad(), coding(model, Synthesis.FLOAT32):
        y = [model.decode_latents(f, padded_hw(h, w, 64), 1, NumericProfile(s.header.numeric_profile))
             for f in (f0, f1, f3)]
        r1 = model.synthesize(FrameType.P, y[1], model.synthesize(FrameType.I, y[0], None))
        r2 = model.extrapolate(r1, y[1][0])
        r3 = model.synthesize(FrameType.P, y[2], r2)
    assert np.array_equal(lost[1], coded.reconstruction[1])
    assert np.array_equal(lost[2], to_numpy(r2, h, w)) and not np.array_equal(lost[2], lost[1])
    assert np.array_equal(lost[3], to_numpy(r3, h, w))
    assert (damage.concealed, damage.drift) == ([2], [3])
    after_i = decoded([f0, None, None, f3], bitstream.Damage(salvage=True))
    assert np.array_equal(after_i[1], after_i[0]) and np.array_equal(after_i[2], after_i[0])
