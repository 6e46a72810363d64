"""The GOP quality schedule (format 7): where each frame of a GOP sits on the ladder, on both sides."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from adapt.loop import clip_objective
from nvc import bitstream
from nvc.cli import main
from nvc.codec import encode
from nvc.decoding import decode_stream
from nvc.models.config import LADDER_BELOW
from nvc.schedule import FLAT, GopSchedule, default_schedule, resolve
from nvc.writers import write_video

from .conftest import make_video


def test_offsets_lift_the_i_frame_and_sink_the_p_frames():
    s = GopSchedule.from_rungs(0.5, 0.75, 0.5)
    assert (s.lift, s.drop, s.slope) == (16, 24, 16) and s.rungs() == (0.5, 0.75, 0.5)
    assert str(s) == "0.5,0.75,0.5" and str(FLAT) == "0,0,0"
    steps = [s.offset_steps(k, 12) for k in range(12)]
    assert steps[0] == 16 and steps[1] == -24 and steps[11] == -40
    assert steps[1:] == sorted(steps[1:], reverse=True)
    assert [s.offset_steps(k, 2) for k in range(2)] == [16, -24]  # one P-frame: the drop alone
    assert all(FLAT.offset_steps(k, 12) == 0 for k in range(12))


def test_frame_q_moves_positions_and_clamps_below_the_ladder():
    s, cpu = GopSchedule.from_rungs(0.0, 1.0, 0.0), torch.device("cpu")
    assert s.frame_q(2, 0, 12, cpu) == 2  # no lift: the I-frame takes the quality index itself
    assert torch.equal(s.frame_q(2, 3, 12, cpu), torch.full((1, 1, 1, 1), 1.0))
    lifted = GopSchedule.from_rungs(0.5, 0.0, 0.0)
    assert torch.equal(lifted.frame_q(2, 0, 12, cpu), torch.full((1, 1, 1, 1), 2.5))
    assert lifted.frame_q(2, 1, 12, cpu) == 2
    qmap = torch.tensor([[[[-1.5, 0.0], [1.0, 3.0]]]])
    moved = s.frame_q(qmap, 1, 12, cpu)
    assert torch.equal(moved, torch.tensor([[[[-LADDER_BELOW, -1.0], [0.0, 2.0]]]]))
    assert FLAT.frame_q(qmap, 5, 12, cpu) is qmap


def test_the_default_slides_the_same_gap_along_the_ladder():
    ladder = [default_schedule(q, 4, 12) for q in (1, 2, 3, 4)]
    assert [str(s) for s in ladder] == ["0,0.75,0.5", "0.25,0.5,0.5", "0.5,0.25,0.5", "0.75,0,0.5"]
    assert all(s.lift + s.drop == 24 for s in ladder)  # the I-frame 0.75 above the first P-frame
    assert resolve(None, 3, 4, 12) == ladder[2] and resolve(FLAT, 3, 4, 32) is FLAT


def test_the_default_cycles_in_gops_of_24_frames_or_more():
    """In GOPs of 24 frames or more every 4th P-frame sits half a rung above the 3 before it."""
    assert default_schedule(2, 4, 23).cycle == ()
    for period in (24, 32, 96):
        s = default_schedule(2, 4, period)
        assert s.cycle == (16, 16, 16, 0) and str(s) == "0.25,0.5,0.5/0.5,0.5,0.5,0"
        assert resolve(None, 2, 4, period) == s


def test_a_cycle_sinks_the_p_frames_in_turn():
    """P-frame k sinks cycle[(k - 1) % n] more (format 11): every n-th P-frame kept higher."""
    s = GopSchedule.parse("0.25,0.5,0.5/0.5,0.25,0.5,0")
    assert s.cycle == (16, 8, 16, 0) and str(s) == "0.25,0.5,0.5/0.5,0.25,0.5,0"
    plain = GopSchedule(s.lift, s.drop, s.slope)
    dips = [plain.offset_steps(k, 32) - s.offset_steps(k, 32) for k in range(12)]
    assert dips == [0, 16, 8, 16, 0, 16, 8, 16, 0, 16, 8, 16]
    assert GopSchedule.parse("0,0,0/0,0") == FLAT  # a cycle of zeros is none


@pytest.mark.parametrize("text, expected", [("0", FLAT), ("0,0,0", FLAT),
                                            ("0.75,0,0.5", GopSchedule(24, 0, 16)),
                                            ("1,0.5,2", GopSchedule(32, 16, 64)),
                                            ("0,0,0/1", GopSchedule(0, 0, 0, (32,)))])
def test_parse(text, expected):
    assert GopSchedule.parse(text) == expected


@pytest.mark.parametrize("text", ["a", "1,2", "1", "1,2,3,4", "-1,0,0", "nan,0,0", "0,inf,0",
                                  "0.5,0,9", "", "0/1", "0,0,0/", "0,0,0/-1", "0,0,0/a",
                                  "0,0,0/" + ",".join(["1"] * 17)])
def test_parse_refuses(text):
    with pytest.raises(ValueError, match="GOP schedule"):
        GopSchedule.parse(text)


def test_a_scheduled_stream_decodes_bit_exactly_and_moves_the_bits(tiny_model):
    model, entry = tiny_model
    video = make_video(frames=4, hw=(48, 64), seed=1)
    flat = encode(video, model, entry, 1, schedule=FLAT)
    sched = encode(video, model, entry, 1, schedule=GopSchedule.from_rungs(0.5, 1.0, 0.5))
    header = bitstream.unpack(sched.data).header
    assert (header.gop_lift, header.gop_drop, header.gop_slope) == (16, 32, 16)
    out = decode_stream(bitstream.unpack(sched.data), model, entry)
    assert all(np.array_equal(a, b) for a, b in zip(sched.reconstruction, out.frames))
    assert sched.frame_bytes[0] > flat.frame_bytes[0]  # the I-frame lifted
    assert sum(sched.frame_bytes[1:]) < sum(flat.frame_bytes[1:])  # the P-frames lowered


def test_the_fit_sees_each_frame_at_its_scheduled_position(tiny_model, monkeypatch):
    """The adaptation objective runs every P-frame at the position the coder will use."""
    model, _ = tiny_model
    seen = []
    real = type(model).forward_inter

    def spy(self, x, ref, q):
        seen.append(q if isinstance(q, int) else float(q.flatten()[0]))
        return real(self, x, ref, q)
    monkeypatch.setattr(type(model), "forward_inter", spy)
    frames = torch.rand(3, 3, 64, 64)
    s = GopSchedule.from_rungs(0.0, 0.5, 1.0)
    clip_objective(model, frames, 1, 12, 0.01, 64 * 64, torch.zeros(()), schedule=s)
    assert seen == [pytest.approx(1 - 16 / 32), pytest.approx(1 - 19 / 32)]  # 16 + 32 * 1 // 10
    seen.clear()
    clip_objective(model, frames, 1, 3, 0.01, 64 * 64, torch.zeros(()), schedule=s)
    assert seen == [pytest.approx(0.5), pytest.approx(-0.5)]  # period 3: the last P-frame sinks 1


def test_cli_records_the_schedule_and_refuses_a_bad_one(tmp_path, tiny_weights, capsys):
    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=3, hw=(40, 56)))
    w = ["--weights", str(tiny_weights)]

    def schedule_of(*options: str) -> str:
        assert main(["encode", str(clip), "-o", str(tmp_path / "a.nvc"), *options, *w]) == 0
        capsys.readouterr()
        assert main(["info", str(tmp_path / "a.nvc"), "--json"]) == 0
        return json.loads(capsys.readouterr().out)["gop_schedule"]
    assert schedule_of("--gop-schedule", "0.5,0.25,1") == "0.5,0.25,1"
    assert schedule_of("--gop-schedule", "0") == "0,0,0"
    assert schedule_of("--gop-schedule", "0,0.5,0/0.5,0") == "0,0.5,0/0.5,0"
    assert schedule_of() == str(default_schedule(2, 2, 32)) == "0.75,0,0.5/0.5,0.5,0.5,0"  # 2 of 2
    assert schedule_of("--quality", "1") == "0,0.75,0.5/0.5,0.5,0.5,0"
    assert schedule_of("--intra-period", "12") == "0.75,0,0.5"
    with pytest.raises(SystemExit) as e:
        main(["encode", str(clip), "-o", str(tmp_path / "c.nvc"), "--gop-schedule", "-1", *w])
    assert e.value.code == 2 and "GOP schedule" in capsys.readouterr().err
    assert not (tmp_path / "c.nvc").exists()
