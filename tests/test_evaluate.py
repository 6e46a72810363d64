import dataclasses

import numpy as np
import pytest

from nvc.codec import encode
from nvc.evaluate import Scores, evaluate, evaluate_coded, measure
from nvc.io import LazyFrames, read_video
from nvc.writers import write_video

from .conftest import make_video


def test_streaming_evaluate_scores_what_the_whole_clip_path_scores(tiny_model, tmp_path):
    """evaluate() keeps no frames (a lazily read clip, digests of the reconstructions) and reports
    the same bytes and metrics as encoding, decoding and measuring the whole clip."""
    model, entry = tiny_model
    path = tmp_path / "clip.y4m"
    write_video(path, make_video(frames=3, hw=(64, 96), seed=5))
    lazy = read_video(path, lazy=True)
    assert isinstance(lazy.frames, LazyFrames)
    streamed = evaluate(lazy, model, entry, 2, intra_period=2)
    whole = read_video(path)
    reference = evaluate_coded(whole, encode(whole, model, entry, 2, 2), model, entry, 2)
    a, b = dataclasses.asdict(streamed), dataclasses.asdict(reference)
    for key in ("encode_seconds", "decode_seconds"):
        a.pop(key), b.pop(key)
    assert a == b and streamed.bit_exact and streamed.frames == 3


def test_measure_is_the_mean_of_per_frame_scores():
    video = make_video(frames=2, hw=(48, 48), seed=1)
    other = make_video(frames=2, hw=(48, 48), seed=2)
    q = measure(video, 100, decoded_yuv=other.frames)
    single = [measure(dataclasses.replace(video, frames=[s]), 50, decoded_yuv=[d])
              for s, d in zip(video.frames, other.frames)]
    assert q.psnr_rgb_db == pytest.approx(np.mean([s.psnr_rgb_db for s in single]))
    assert q.ms_ssim == pytest.approx(np.mean([s.ms_ssim for s in single]))
    assert q.bpp == pytest.approx(single[0].bpp)
    for decoded in (other.frames[:1], other.frames * 2):
        with pytest.raises(ValueError, match="the decoded clip and its source differ in length"):
            measure(video, 100, decoded_yuv=decoded)
    with pytest.raises(ValueError, match="no frames were scored"):
        Scores().quality(100, 48, 48)
