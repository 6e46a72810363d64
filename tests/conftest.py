"""Shared fixtures: a tiny model, its weights file, small clips. No network, no ../shared needed."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nvc import bitstream
from nvc.io import Video
from nvc.models.config import TINY
from nvc.models.ssf import SSF
from nvc.synthetic import as_video, natural_images, render_clip
from nvc.zoo import ZooEntry, load_model, save_weights

SHARED_VIDEOS = Path(__file__).resolve().parents[2] / "shared" / "videos"


def shared_clip(name: str) -> Path:
    path = SHARED_VIDEOS / name
    if not path.exists():
        pytest.skip(f"{path} absent (../shared/videos is only on the project's machines)")
    return path


def make_codable(model: SSF) -> SSF:
    """Untrained latents are near zero and would all quantise to 0, and an untrained h_s predicts
    small scales that the default profile does not code: a larger gain and scales spread over the
    whole table make the entropy coder do real work (and the qualities differ) in tests."""
    with torch.no_grad():
        for codec in model.latent_codecs():
            codec.log_gain.add_(3.0)
            codec.log_inverse_gain.sub_(3.0)
            last = codec.h_s[-1]
            half = last.out_channels // 2
            last.weight[half:].mul_(20.0)
            last.bias[half:] = torch.linspace(-2.0, 4.0, half).exp()
    return model


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    # seed 7: this model predicts the test clips for less than it codes them intra (seed 0's codes
    # every frame cheaper as an I-frame, and adaptive I-frames would leave no P-frame to test)
    torch.manual_seed(7)
    model = make_codable(SSF(TINY))
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_weights(model, path)
    return path


@pytest.fixture(scope="session")
def tiny_model(tiny_weights) -> tuple[SSF, ZooEntry]:
    return load_model(path=tiny_weights)


def relabelled(data: bytes, version: int | None = None, intra_period: int | None = None) -> bytes:
    """A stream with its format version or its header's intra period rewritten, frames untouched
    (checksums recomputed)."""
    import dataclasses

    s = bitstream.unpack(data)
    header = dataclasses.replace(s.header, intra_period=intra_period or s.header.intra_period)
    return bitstream.pack(dataclasses.replace(s, header=header, version=version or s.version))


def make_video(frames: int = 4, hw: tuple[int, int] = (50, 70), seed: int = 0) -> Video:
    rng = np.random.default_rng(seed)
    images = natural_images()
    return as_video(render_clip(images[0], images[1], frames, hw, rng), source="test")


@pytest.fixture(scope="session")
def small_video() -> Video:
    """4 frames of odd size 70x50 (not a multiple of anything)."""
    return make_video()


def y4m_of(path, tag, w, h, planes, depth=8, frames=2, full=False):
    """A y4m file of `frames` copies of `planes` (arrays of samples), tagged C{tag}."""
    dtype = np.uint8 if depth == 8 else np.dtype("<u2")
    samples = b"".join(np.asarray(p, dtype).tobytes() for p in planes)
    path.write_bytes(f"YUV4MPEG2 W{w} H{h} F25:1 C{tag}{' XCOLORRANGE=FULL' if full else ''}\n"
                     .encode() + (b"FRAME\n" + samples) * frames)
    return path
