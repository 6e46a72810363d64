import json

import numpy as np
import pytest
import torch
from PIL import Image

from nvc.errors import InputError
from nvc.roi import load_mask, pixel_weights, region_psnr_db


def _mask_png(path, w=56, h=40):
    a = np.zeros((h, w), np.uint8)
    a[: h // 2, : w // 2] = 255  # a quarter of the frame
    Image.fromarray(a).save(path)
    return path


def test_mask_image_is_resized_and_repeated(tmp_path):
    mask = load_mask(_mask_png(tmp_path / "m.png", 28, 20), frames=3, width=56, height=40)
    assert mask.shape == (3, 40, 56) and mask.dtype == np.float32
    assert 0.2 < (mask > 0.5).mean() < 0.3 and mask.max() == pytest.approx(1)
    long = load_mask(_mask_png(tmp_path / "m.png", 28, 20), frames=100_000, width=1920,
                     height=1080)  # one map shared by every frame, not 100,000 copies
    assert long.shape == (100_000, 1080, 1920) and long.base is not None and long.nbytes > 2 ** 39
    assert not long.flags.writeable


def test_a_mask_video_is_read_a_frame_at_a_time(tmp_path):
    """A mask video gives maps made frame by frame (never the clip's maps at once), the values the
    whole stack had; weights and quality maps from it are the stack's."""
    from PIL import Image

    from nvc.io import read_video
    from nvc.roi import FrameMaps, quality_map
    from nvc.writers import write_video

    from .conftest import make_video

    path = tmp_path / "mask.y4m"
    write_video(path, make_video(frames=3, hw=(20, 28)))
    stack = np.stack([np.asarray(Image.fromarray(np.clip((f.y.astype(np.float32) - 16) / 219, 0, 1))
                                 .resize((56, 40), Image.Resampling.BILINEAR), np.float32)
                      for f in read_video(path).frames])  # what load_mask held before
    maps = load_mask(path, frames=3, width=56, height=40)
    assert isinstance(maps, FrameMaps) and maps.shape == stack.shape == (3, 40, 56)
    assert all(np.array_equal(maps[i], stack[i]) for i in (2, 0, 1))
    assert np.array_equal(np.stack(list(pixel_weights(maps, 4.0))), pixel_weights(stack, 4.0))
    assert np.allclose(maps.mean(axis=0), stack.mean(axis=0), rtol=0, atol=1e-6)
    assert quality_map(maps, 2, 1, 4, (64, 64)) == quality_map(stack, 2, 1, 4, (64, 64))
    assert np.array_equal(np.stack(list(FrameMaps.spooled(stack, 40, 56))), stack)
    wide = FrameMaps.spooled(stack.astype(np.float64), 40, 56)  # kept as float32 whatever it came as
    assert wide.shape == (3, 40, 56) and wide[1].dtype == np.float32 and np.array_equal(wide[1], stack[1])
    with pytest.raises(InputError, match="the mask video has 3 frames, the clip 5"):
        load_mask(path, frames=5, width=56, height=40)


def test_maps_that_cannot_be_spooled_say_how_large(monkeypatch):
    import errno
    import tempfile

    from nvc.roi import FrameMaps

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(tempfile, "TemporaryFile", full)
    with pytest.raises(InputError, match=r"^cannot spool the maps \(1.0 MiB a frame\) to .*No space "
                                         r"left on device\); set TMPDIR"):
        FrameMaps.spooled([np.zeros((512, 512))], 512, 512)


def test_mask_errors_are_input_errors(tmp_path, monkeypatch):
    from PIL import Image

    with pytest.raises(InputError, match="no such mask"):
        load_mask(tmp_path / "none.png", 1, 8, 8)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read the mask"):
        load_mask(tmp_path / "bad.png", 1, 8, 8)
    Image.new("L", (32, 32)).save(tmp_path / "bomb.png")  # a bomb once the limit is 100 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InputError, match="cannot read the mask image .Image size .1024 pixels. "
                                         "exceeds limit"):
        load_mask(tmp_path / "bomb.png", 1, 8, 8)
    with pytest.raises(InputError, match="positive"):
        pixel_weights(np.zeros((1, 4, 4)), 0)


def test_weights_average_one_and_favour_the_region():
    mask = np.zeros((2, 4, 4), np.float32)
    mask[:, :2, :2] = 1
    w = pixel_weights(mask, 4.0)
    assert np.allclose(w.mean(axis=(1, 2)), 1) and w[0, 0, 0] == pytest.approx(4 * w[0, 3, 3])


def test_region_psnr_splits_the_error():
    src = [np.zeros((4, 4, 3), np.float32)]
    dec = [np.zeros((4, 4, 3), np.float32)]
    dec[0][:2, :2] = 0.1  # error only inside the region
    mask = np.zeros((1, 4, 4), np.float32)
    mask[:, :2, :2] = 1
    r = region_psnr_db(src, dec, mask)
    assert r["roi_psnr_db"] == pytest.approx(20.0) and r["background_psnr_db"] == float("inf")


def test_region_psnr_gathered_frame_by_frame_is_the_clips():
    from nvc.metrics import psnr_db

    rng = np.random.default_rng(1)
    src = [rng.random((6, 5, 3), dtype=np.float32) for _ in range(3)]
    dec = [np.clip(s + rng.normal(0, 0.05 * (i + 1), s.shape).astype(np.float32), 0, 1)
           for i, s in enumerate(src)]
    mask = rng.random((3, 6, 5)).astype(np.float32)
    inside = mask > 0.5
    want = {"roi_psnr_db": psnr_db(np.concatenate([s[m] for s, m in zip(src, inside)]),
                                   np.concatenate([d[m] for d, m in zip(dec, inside)])),
            "background_psnr_db": psnr_db(np.concatenate([s[~m] for s, m in zip(src, inside)]),
                                          np.concatenate([d[~m] for d, m in zip(dec, inside)]))}
    got = region_psnr_db(src, dec, mask)
    assert got == pytest.approx(want, rel=1e-12) and got["roi_psnr_db"] != got["background_psnr_db"]


def test_weights_scale_the_distortion_term_of_the_objective(tiny_model):
    from adapt.loop import clip_objective

    model, _ = tiny_model
    frames = torch.rand(2, 3, 64, 64)
    bits = torch.zeros(())
    plain, _ = clip_objective(model, frames, 0, 12, 1.0, 64 * 64, bits)
    ones, _ = clip_objective(model, frames, 0, 12, 1.0, 64 * 64, bits,
                             weights=torch.ones(2, 1, 64, 64))
    assert ones.item() == pytest.approx(plain.item(), rel=1e-5)
    torch.manual_seed(0)
    plain, info = clip_objective(model.eval(), frames, 0, 12, 1.0, 64 * 64, bits)
    double, _ = clip_objective(model, frames, 0, 12, 1.0, 64 * 64, bits,
                               weights=torch.full((2, 1, 64, 64), 2.0))
    mse = 10 ** (-info["psnr_db"] / 10)  # one I-frame and one P-frame: mean of the two MSEs
    assert double.item() - plain.item() == pytest.approx(255 ** 2 * mse, rel=0.05)


def test_eval_with_roi_reports_region_psnr(tmp_path, tiny_weights, capsys):
    from nvc.cli import main
    from nvc.writers import write_video

    from .conftest import make_video

    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=2, hw=(40, 56)))
    args = ["eval", str(clip), "--quality", "1", "--adapt", "--adapt-steps", "2", "--roi",
            str(_mask_png(tmp_path / "m.png")), "--roi-weight", "8", "--json", "--weights",
            str(tiny_weights)]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    for row in report["results"] + report["adapted"]:
        assert np.isfinite(row["roi_psnr_db"]) and np.isfinite(row["background_psnr_db"])
    write_video(tmp_path / "m.y4m", make_video(frames=2, hw=(20, 28), seed=3))  # a mask a frame
    args[args.index(str(tmp_path / "m.png"))] = str(tmp_path / "m.y4m")
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert all(row["roi_psnr_db"] > 0 for row in report["results"] + report["adapted"])
    assert main(["encode", str(clip), "-o", str(tmp_path / "x.nvc"), "--roi",
                 str(tmp_path / "m.png"), "--roi-quality", "-1", "--weights", str(tiny_weights)]) == 1
    assert "--roi-quality must be >= 0, got -1.0" in capsys.readouterr().err


def test_quality_map_moves_the_region_up_and_keeps_the_expected_size():
    from nvc.roi import RATE_PER_RUNG, map_positions, quality_map

    mask = np.zeros((2, 40, 56), np.float32)
    mask[:, :20, :32] = 1  # the top-left 32x16 of a 64x64 padded frame: 2 of 16 cells
    qm = quality_map(mask, quality=2, boost=1.0, qualities=4, padded_hw=(64, 64))
    pos = map_positions(qm)
    assert (qm.height, qm.width) == (4, 4) and pos.dtype == np.float32
    assert pos[0, 0] == pos[0, 1] == 2.0  # quality 2 is position 1; the region one step up
    # the background pays for it: the expected rate stays that of quality 2
    assert (RATE_PER_RUNG ** (pos - 1.0)).mean() == pytest.approx(1.0, abs=0.01)
    assert pos[3, 3] == pos[2, 0] < 1.0 and pos.mean() < 1.0  # rate grows faster than linearly
    flat = map_positions(quality_map(np.ones((1, 40, 56), np.float32), 3, 1.0, 4, (64, 64)))
    assert (flat == 2.0).all()  # all region and no background: the map changes nothing
    capped = map_positions(quality_map(mask, quality=4, boost=2.0, qualities=4, padded_hw=(64, 64)))
    assert capped.max() == 3.0 and (capped == 3.0).all()  # the top rung: nothing moves
    low = quality_map(mask, quality=1, boost=1.0, qualities=4, padded_hw=(64, 64))
    low_pos = map_positions(low)  # below the first rung (LADDER_BELOW), the background pays
    assert low.origin == 64 and low_pos[0, 0] == 1.0 and -2.0 < low_pos[3, 3] < 0.0
    assert (RATE_PER_RUNG ** low_pos).mean() == pytest.approx(1.0, abs=0.01)
    floor = map_positions(quality_map(mask, quality=1, boost=3.0, qualities=4, padded_hw=(64, 64)))
    assert floor[0, 0] == 3.0 and floor[3, 3] == -2.0  # the floor: the background cannot pay


def test_a_constant_map_codes_like_its_quality(tiny_model, small_video):
    from nvc import bitstream
    from nvc.codec import encode
    from nvc.roi import quality_map

    model, entry = tiny_model
    qm = quality_map(np.ones((4, 50, 70), np.float32), 2, 1.0, 2, (64, 128))
    with_map, plain = encode(small_video, model, entry, 2, qmap=qm), encode(small_video, model, entry, 2)
    assert all(np.array_equal(a, b) for a, b in zip(with_map.reconstruction, plain.reconstruction))
    assert bitstream.unpack(with_map.data).unit_bytes["quality_map"] > 0


def test_a_map_below_the_first_rung_decodes_as_encoded(tiny_model, small_video):
    from nvc import bitstream
    from nvc.codec import encode
    from nvc.decoding import decode_stream

    model, entry = tiny_model
    values = np.array([0, 16, 32, 64, 96] * 6 + [64, 64], np.uint8)  # positions -2 .. 1 (origin 64)
    qm = bitstream.QualityMap(4, 8, values.tobytes(), origin=64)
    coded = encode(small_video, model, entry, 1, qmap=qm)
    decoded = decode_stream(bitstream.unpack(coded.data), model, entry)
    assert all(np.array_equal(a, b) for a, b in zip(coded.reconstruction, decoded.frames))
    plain = encode(small_video, model, entry, 1)
    assert not all(np.array_equal(a, b) for a, b in zip(coded.reconstruction, plain.reconstruction))


def test_encode_with_a_region_decodes_and_favours_it(tmp_path, capsys):
    """With the shipped base (an untrained tiny model has no quality to move)."""
    from nvc.cli import main
    from nvc.writers import write_video

    from .conftest import make_video

    clip = tmp_path / "clip.y4m"
    write_video(clip, make_video(frames=2, hw=(64, 128)))
    mask = tmp_path / "m.png"
    Image.fromarray(np.pad(np.full((32, 64), 255, np.uint8), ((16, 16), (32, 32)))).save(mask)
    reports = {}
    for boost in ("0", "1"):
        assert main(["eval", str(clip), "--quality", "2", "--roi", str(mask), "--roi-quality",
                     boost, "--json"]) == 0
        reports[boost] = json.loads(capsys.readouterr().out)["results"][0]
    assert reports["1"]["roi_psnr_db"] > reports["0"]["roi_psnr_db"]
    assert reports["1"]["background_psnr_db"] <= reports["0"]["background_psnr_db"]
    out = tmp_path / "roi.nvc"
    assert main(["encode", str(clip), "-o", str(out), "--roi", str(mask), "--quality", "2"]) == 0
    assert main(["decode", str(out), "-o", str(tmp_path / "roi.y4m")]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    qmap = json.loads(capsys.readouterr().out)["quality_map"]
    assert qmap["grid"] == "8x4" and qmap["max_quality"] == 3.0 and qmap["min_quality"] < 2.0


def test_uniform_quality_map_holds_one_position_and_refuses_the_unwritable():
    from nvc.bitstream import QUALITY_MAP_STEPS
    from nvc.roi import MAP_ORIGIN, map_positions, uniform_quality_map

    qm = uniform_quality_map(0.25, (64, 128))
    assert (qm.height, qm.width) == (4, 8) and (map_positions(qm) == 0.25).all()
    assert (map_positions(uniform_quality_map(-2.0, (64, 64))) == -2.0).all()
    top = (255 - MAP_ORIGIN) / QUALITY_MAP_STEPS  # the byte's last value: written, one step more not
    assert (map_positions(uniform_quality_map(top, (64, 64))) == top).all()
    for position in (-2.1, 6.0, top + 1 / QUALITY_MAP_STEPS):
        with pytest.raises(ValueError, match="ladder position"):
            uniform_quality_map(position, (64, 64))


def test_uniform_position_reads_a_uniform_map_and_only_one():
    from nvc.bitstream import QualityMap
    from nvc.roi import MAP_ORIGIN, uniform_position, uniform_quality_map

    assert uniform_position(uniform_quality_map(1.25, (64, 64)), 9.0) == 1.25
    assert uniform_position(uniform_quality_map(-1.5, (64, 128)), 9.0) == -1.5
    varied = QualityMap(1, 2, bytes([MAP_ORIGIN, MAP_ORIGIN + 1]), MAP_ORIGIN)
    assert uniform_position(varied, 9.0) == 9.0  # a region's map: no one position
    assert uniform_position(QualityMap(0, 0, b"", MAP_ORIGIN), 9.0) == 9.0


def test_shifted_quality_map_moves_every_position_within_the_ladder():
    from nvc.roi import map_positions, quality_map, shifted_quality_map

    mask = np.zeros((1, 64, 64), np.float32)
    mask[:, :32, :32] = 1
    qm = quality_map(mask, quality=2, boost=1.0, qualities=4, padded_hw=(64, 64))
    pos = map_positions(qm)
    up = map_positions(shifted_quality_map(qm, 0.5, 4))
    assert np.allclose(up, np.minimum(pos + 0.5, 3.0))
    assert map_positions(shifted_quality_map(qm, 5.0, 4)).max() == 3.0  # the top rung
    assert map_positions(shifted_quality_map(qm, -5.0, 4)).min() == -2.0  # LADDER_BELOW
    assert shifted_quality_map(qm, 0.0, 4) == qm


def test_rate_point_codes_rungs_as_ever_and_other_qualities_under_a_uniform_map():
    from nvc.roi import map_positions, rate_point
    from nvc.schedule import FLAT, default_schedule

    for q in (1, 2, 4, 3.0):
        assert rate_point(q, 4, (64, 96), 12) == (int(q), None, default_schedule(int(q), 4, 12))
    assert rate_point(2, 4, (64, 96), 32).schedule.cycle  # longer GOPs cycle
    assert rate_point(2, 4, (64, 96), 12, FLAT).schedule == FLAT  # one given is kept
    for q, rung in ((2.25, 2), (2.75, 3), (0.5, 1), (-1, 1), (3.875, 4)):
        got, qm, schedule = rate_point(q, 4, (64, 96), 12)
        assert schedule == default_schedule(q, 4, 12)
        assert got == rung and (qm.height, qm.width) == (4, 6)
        assert (map_positions(qm) == q - 1).all()  # in steps of 1/32 of a rung: these are exact
    assert (map_positions(rate_point(3.9, 4, (64, 96), 12)[1]) == 2.90625).all()  # the nearest 1/32
    for q in (-1.25, 4.01, float("nan"), 9):
        with pytest.raises(InputError, match="quality must lie in -1..4"):
            rate_point(q, 4, (64, 96), 12)


def test_the_default_schedule_between_and_below_the_rungs():
    from nvc.schedule import default_schedule

    def at(q):
        return default_schedule(q, 4, 12)
    assert at(0.5) == at(-1) == at(1)
    lifts = [at(q).lift for q in (1, 1.5, 2, 2.5, 3, 3.5, 4)]
    assert lifts == sorted(lifts) and len(set(lifts)) == 7  # slides with the quality
    assert all(at(q).lift + at(q).drop == 24 for q in (1.5, 3.2))
