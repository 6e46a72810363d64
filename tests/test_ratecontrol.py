import math

import pytest

from nvc.ratecontrol import MAX_PROBES, STEP, TOLERANCE, find_quality, parse_bitrate, probe_frames


@pytest.mark.parametrize("text, rate", [("500k", 5e5), ("1.5M", 1.5e6), ("250000", 2.5e5),
                                        (".5k", 500), ("2m", 2e6), ("1", 1)])
def test_parse_bitrate(text, rate):
    assert parse_bitrate(text) == rate


@pytest.mark.parametrize("text", ["", "0", "0k", "-5k", "5kb", "1e6", "k", "nan", "5 k"])
def test_parse_bitrate_refuses(text):
    with pytest.raises(ValueError, match="bit rate"):
        parse_bitrate(text)


def test_probe_frames_are_whole_gops_spread_through_the_clip():
    assert probe_frames(30, 12) == list(range(30))  # three GOPs or fewer: the clip
    frames = probe_frames(96, 12)
    assert frames == list(range(12)) + list(range(48, 60)) + list(range(84, 96))
    assert probe_frames(100, 12)[-4:] == [96, 97, 98, 99]  # the last GOP, short as it is
    assert probe_frames(1000, 1) == [0, 500, 999]
    assert probe_frames(96, 12, gops=1) == list(range(12))  # one GOP: the first


def _ladder(wobble: float = 0.05):
    """Bytes at a quality as nvc's ladder gives them, about doubling a rung, with a wobble."""
    return lambda q: int(4000 * 1.87 ** (q - 1) * (1 + wobble * math.sin(7 * q)))


@pytest.mark.parametrize("target", [1500, 2100, 3900, 9000, 20000, 25000])
def test_find_quality_meets_the_target_from_below_in_few_probes(target):
    calls = []
    rate = _ladder()

    def probe(q):
        calls.append(q)
        return rate(q)
    found = find_quality(probe, target, -1, 4)
    assert len(calls) == len(set(calls)) <= MAX_PROBES  # each quality coded once
    assert found.quality in calls and found.bytes == rate(found.quality)
    assert found.quality == round(found.quality / STEP) * STEP
    assert found.bytes <= target * (1 + TOLERANCE)
    # no probed quality met the target more closely without passing it by more than the tolerance
    assert all(rate(q) > target * (1 + TOLERANCE) or rate(q) <= found.bytes for q in calls)
    assert found.bytes >= 0.9 * target


def test_find_quality_stops_at_the_ladders_ends():
    rate = _ladder(0)
    assert find_quality(rate, 10 ** 9, -1, 4).quality == 4  # the top cannot reach it
    assert find_quality(rate, 10, -1, 4).quality == -1  # nor the bottom come down to it


@pytest.mark.parametrize("per_rung", [1.3, 1.87, 2.5, 4.0])
@pytest.mark.parametrize("quality", [-0.5, 0.75, 3.25])
def test_the_secant_is_exact_on_a_log_linear_ladder(per_rung, quality):
    """Bytes exactly exponential in the quality: the first step (along nvc's usual slope) lands on
    the target where the ladder has that slope, else the second, along the slope the probes
    measured or across the bracket they span, lands on it: at most three probes, the target's
    quality found."""
    calls = []

    def rate(q):
        calls.append(q)
        return round(1000 * per_rung ** q)
    found = find_quality(rate, round(1000 * per_rung ** quality), -1, 4)
    assert found.quality == quality and calls[0] == 2
    assert len(calls) == (2 if per_rung == 1.87 else 3)
