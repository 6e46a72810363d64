import threading

import numpy as np
import pytest

from nvc.ahead import Ahead


@pytest.mark.parametrize("depth", [0, 1, 3])
def test_results_come_in_order_paired_with_their_items(depth):
    got = [(item, get()) for item, get in Ahead(list(range(10)), lambda x: x * x, depth)]
    assert got == [(x, x * x) for x in range(10)]
    assert len(Ahead([1, 2, 3], abs, depth)) == 3


def test_work_runs_ahead_on_another_thread_and_no_further_than_depth():
    started = []

    def fn(x):
        started.append(x)
        return threading.get_ident()

    frames = iter(Ahead(list(range(10)), fn, 2))
    _, get = next(frames)
    assert get() != threading.get_ident()
    assert max(started) <= 3  # the consumed item, then at most depth + 1 submitted


def test_an_error_surfaces_when_its_items_result_is_taken():
    def fn(x):
        if x == 3:
            raise ValueError("bad item")
        return x

    seen = []
    with pytest.raises(ValueError, match="bad item"):
        for item, get in Ahead(list(range(6)), fn, 2):
            seen.append(item)
            seen.append(get())
    assert seen == [0, 0, 1, 1, 2, 2, 3]  # every item before it delivered, then its own error


def test_a_consumer_that_stops_early_leaves_no_worker():
    before = threading.active_count()
    frames = iter(Ahead(list(range(100)), lambda x: x, 4))
    next(frames)
    frames.close()
    assert threading.active_count() == before


def test_decoding_ahead_gives_the_same_frames(tiny_model, small_video, monkeypatch):
    from nvc import bitstream, codec, decoding

    model, entry = tiny_model
    stream = bitstream.unpack(codec.encode(small_video, model, entry, 2, intra_period=3).data)
    decoded = {}
    for depth in (0, 2):
        monkeypatch.setattr(decoding, "DECODE_AHEAD", depth)
        decoded[depth] = list(decoding.iter_decoded(stream, model, entry))
    assert len(decoded[0]) == len(small_video.frames)
    assert all(np.array_equal(a, b) for a, b in zip(decoded[0], decoded[2]))


def test_the_decoder_runs_ahead_as_configured(tiny_model, small_video, monkeypatch):
    from nvc import bitstream, codec, decoding

    model, entry = tiny_model
    streams = [bitstream.unpack(codec.encode(small_video, model, entry, 1, profile=p).data)
               for p in (bitstream.NumericProfile.EXACT_SKIP, bitstream.NumericProfile.FLOAT)]
    depths = []

    class Recording(Ahead):
        def __init__(self, items, fn, depth, *ready):
            depths.append(depth)
            super().__init__(items, fn, depth, *ready)
    monkeypatch.setattr(decoding, "Ahead", Recording)
    monkeypatch.setattr(decoding, "DECODE_AHEAD", 3)  # NVC_DECODE_AHEAD=3
    for stream in streams:
        list(decoding.iter_decoded(stream, model, entry))
    assert depths == [3, 0]  # float entropy parameters would depend on the worker's threads


def test_mapped_ahead_converts_each_item_on_the_worker_while_the_next_is_drawn():
    from nvc.ahead import mapped_ahead

    drawn, converted_after = [], []

    def items():
        for x in range(5):
            drawn.append(x)
            yield x

    def fn(x):
        converted_after.append(len(drawn))  # how many items existed when x was converted
        return x * 10, threading.get_ident()

    got = list(mapped_ahead(items(), fn, 1))
    assert [v for v, _ in got] == [0, 10, 20, 30, 40]
    assert all(t != threading.get_ident() for _, t in got)
    assert max(converted_after) <= 5 and len(Ahead([1], abs, 1)) == 1
    with pytest.raises(TypeError, match="no length"):
        len(Ahead(items(), abs, 1))


def test_mapped_ahead_passes_the_sources_error_on_and_stops_its_worker():
    from nvc.ahead import mapped_ahead

    def items():
        yield 1
        raise ValueError("damaged frame 1")

    before = threading.active_count()
    with pytest.raises(ValueError, match="damaged frame 1"):
        list(mapped_ahead(items(), abs, 1))
    assert threading.active_count() == before


def test_decoded_video_converts_ahead_to_the_same_frames(tiny_model, small_video, monkeypatch):
    from nvc import bitstream, codec, decoding
    from nvc.io import rgb_to_yuv

    model, entry = tiny_model
    stream = bitstream.unpack(codec.encode(small_video, model, entry, 2, intra_period=3).data)
    want = [rgb_to_yuv(f) for f in decoding.iter_decoded(stream, model, entry)]
    for depth in (0, 1):
        monkeypatch.setattr(decoding, "CONVERT_AHEAD", depth)
        got = list(decoding.decoded_video(stream, model, entry).frames)
        assert len(got) == len(want)
        assert all(np.array_equal(a.y, b.y) and np.array_equal(a.u, b.u) and np.array_equal(a.v, b.v)
                   for a, b in zip(got, want))


def test_items_are_drawn_ahead_only_while_ready():
    """A live stream: with nothing more waiting, the current item is handed on without drawing
    the next (whose read would block); once more is waiting, up to `depth` are drawn ahead."""
    drawn, waiting = [], [False]

    def items():
        for x in range(4):
            drawn.append(x)
            yield x
    it = iter(Ahead(items(), lambda x: x * 10, 2, ready=lambda: waiting[0]))
    item, get = next(it)
    assert (item, get(), drawn) == (0, 0, [0])
    waiting[0] = True
    item, get = next(it)
    assert (item, get(), drawn) == (1, 10, [0, 1, 2, 3])
    assert [(i, g()) for i, g in it] == [(2, 20), (3, 30)]


@pytest.mark.parametrize("depth", [0, 1, 2, 4])
def test_items_drawn_before_a_failing_draw_are_given_out_first(depth):
    """Items that fail to be drawn (a stream cut short: its next unit cannot be read) surface
    after every item before them, at any depth, as without looking ahead."""
    def items():
        yield from range(5)
        raise ValueError("cut")

    got = []
    with pytest.raises(ValueError, match="cut"):
        for item, get in Ahead(items(), lambda i: i * 10, depth):
            got.append((item, get()))
    assert got == [(i, i * 10) for i in range(5)]
