import numpy as np
import pytest

from nvc.sampling import NATIVE, layout, named_layout, pixel_format


@pytest.mark.parametrize("name, tag", [("yuv420p", "420"), ("yuv422p10le", "422p10"),
                                       ("yuv444p16le", "444p16"), ("yuv411p", "411"),
                                       ("gray", "mono"), ("gray12le", "mono12"),
                                       ("yuva444p", "444alpha"), ("yuv420p10be", None),
                                       ("rgb24", None), ("yuv420p8le", None), ("nv12", None)])
def test_pixel_format_names(name, tag):
    assert pixel_format(name) == (tag and layout(tag))


@pytest.mark.parametrize("tag, frame_bytes", [("420jpeg", 20 + 2 * 3 * 2), ("422", 20 + 2 * 3 * 4),
                                              ("444p10", 2 * 3 * 20), ("mono16", 2 * 20),
                                              ("411", 20 + 2 * 2 * 4), ("444alpha", 4 * 20)])
def test_frame_bytes_of_a_5x4_frame(tag, frame_bytes):  # odd width: chroma columns round up
    assert layout(tag).frame_bytes(5, 4) == frame_bytes


@pytest.mark.parametrize("stem, tag", [("Beauty_1920x1080_120fps_420_10bit_YUV", "420p10"),
                                       ("Beauty_1920x1080_120fps_420_8bit_YUV", "420"),
                                       ("clip_1920x1080_12bit", "420p12"), ("x_422_16bit", "422p16"),
                                       ("BasketballPass_416x240_50", None), ("x_10bitrate", None)])
def test_named_layout(stem, tag):
    assert named_layout(stem) == (tag and layout(tag))


def test_native_is_read_as_it_is_and_mono_gets_neutral_chroma():
    assert NATIVE.native and layout("420mpeg2").native and not layout("420p10").native
    y = np.arange(12, dtype=np.uint8).reshape(3, 4)
    out = np.frombuffer(layout("mono").to_420(y.tobytes(), 4, 3), np.uint8)
    assert out[:12].tolist() == y.reshape(-1).tolist() and (out[12:] == 128).all() and out.size == 20
