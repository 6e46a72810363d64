import json
from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.anchors import ANCHORS, run_anchor
from benchmarks.manifest import DATASETS, dataset_manifest, read_manifest
from benchmarks.rd import main as rd_main
from nvc.bitstream import FrameType
from nvc.evaluate import measure
from nvc.writers import write_video

from .conftest import make_video


@pytest.mark.parametrize("name", DATASETS)
def test_manifests_parse(name):
    seqs = read_manifest(dataset_manifest(name))
    assert seqs and all(s.frames > 0 for s in seqs)
    if name == "uvg":
        assert len(seqs) == 7 and all(s.size == (1920, 1080) for s in seqs)


@pytest.mark.parametrize("anchor", ["x264", "x265"])
def test_anchor_round_trip(anchor):
    video = make_video(frames=3, hw=(64, 96))
    r = run_anchor(video, ANCHORS[anchor], 30, intra_period=12)
    assert len(r.decoded.frames) == 3 and r.data_bytes > 0
    assert r.version.startswith(anchor)
    assert measure(video, r.data_bytes, decoded_yuv=r.decoded.frames).psnr_rgb_db > 25


def test_rd_pipeline_two_points_per_codec_and_resume(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    write_video(root / "tiny_96x64_25.y4m", make_video(frames=3, hw=(64, 96)))
    (tmp_path / "m.txt").write_text("tiny_96x64_25.y4m 96 64 25 3\n")
    out = tmp_path / "out"
    args = ["--root", str(root), "--dataset", "manifest", "--manifest", str(tmp_path / "m.txt"),
            "--codecs", "nvc,nvc-adapt,x264,x265", "--qualities", "1,4", "--crfs", "20,45",
            "--frames", "3", "--adapt-steps", "2", "--out", str(out)]
    assert rd_main(args) == 0
    results = json.loads((out / "results.json").read_text())
    assert len(results["points"]) == 8
    assert results["provenance"]["weights_sha256"] and results["provenance"]["ffmpeg"]["version"]
    bd = results["summary"]["bd_rate_percent"]["psnr_rgb_db"]
    assert results["summary"]["anchor"] == "x265" and bd["x265"]["tiny"] == pytest.approx(0)
    # x264 against the x265 anchor, recomputed from the stored points: the report's own number
    from nvc.metrics import bd_rate

    def curve(codec):
        pts = sorted((r for r in results["points"] if r["codec"] == codec), key=lambda r: r["bpp"])
        return [r["bpp"] for r in pts], [r["psnr_rgb_db"] for r in pts]
    try:
        expected = bd_rate(*curve("x265"), *curve("x264"))
    except ValueError:  # curves that do not overlap have no BD-rate: the report says None
        expected = None
    got = bd["x264"]["tiny"]
    assert (got is None and expected is None) or got == pytest.approx(expected)
    assert (out / "results.md").exists() and (out / "rd_tiny.png").stat().st_size > 1000
    cached = {p: p.stat().st_mtime_ns for p in (out / "points").iterdir()}
    assert rd_main(args) == 0  # resumed: every point comes from the cache
    assert {p: p.stat().st_mtime_ns for p in (out / "points").iterdir()} == cached


def test_nvc_points_are_keyed_by_the_weights(monkeypatch):
    from dataclasses import replace

    from benchmarks.codecs import Conditions
    from benchmarks.rd import _nvc_key
    from nvc import zoo

    cond = Conditions(frames=3)
    before = _nvc_key("nvc", cond)
    entry = zoo.ZOO[zoo.DEFAULT_MODEL]
    monkeypatch.setitem(zoo.ZOO, zoo.DEFAULT_MODEL, replace(entry, sha256="0" * 64))
    assert _nvc_key("nvc", cond) != before  # a new base recomputes its points
    assert _nvc_key("x264", cond) == ""  # anchors do not depend on the weights
    assert _nvc_key("nvc-adapt", cond).endswith(f"_s{cond.adapt_steps}w{cond.adapt_window}")


def test_rd_refuses_missing_files(tmp_path, capsys):
    code = rd_main(["--root", str(tmp_path), "--dataset", "hevc-d", "--out", str(tmp_path / "o")])
    assert code == 1 and "missing 4 sequence file(s)" in capsys.readouterr().err


BENCHMARK_COMMANDS = sorted(f"benchmarks.{p.stem}" for p in Path(__file__).parents[1].glob(
    "benchmarks/*.py") if "def main(" in p.read_text())


def test_every_benchmark_command_is_found():
    assert {"benchmarks.rd", "benchmarks.speed", "benchmarks.compare"} <= set(BENCHMARK_COMMANDS)


@pytest.mark.parametrize("module", BENCHMARK_COMMANDS)
def test_help_ends_with_an_example(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(["--help"])
    assert done.value.code == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    at = max(i for i, line in enumerate(lines) if line.strip().lower() in ("example:", "examples:"))
    assert lines[at + 1:] and all(line.strip().startswith(f"python -m {module} ")
                                  for line in lines[at + 1:])


def test_speed_reports_network_entropy_and_adaptation(tmp_path):
    from benchmarks.speed import main as speed_main

    out = tmp_path / "speed.json"
    assert speed_main(["--frames", "2", "--sizes", "128x64", "--devices", "cpu", "--adapt-steps", "1",
                       "--decode-ahead", "0,2", "--precisions", "fp32,bf16", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    row, ahead, bf16, _ = data["rows"]
    assert (row["precision"], bf16["precision"], bf16["decode_ahead"]) == ("fp32", "bf16", 0)
    assert row["layout"] == "cl"
    assert row["encode_fps"] > 0 and row["encode_entropy_s"] > 0 and row["decode_network_s"] > 0
    assert ahead["decode_ahead"] == 2 and ahead["decode_network_s"] is None  # overlapped: not derived
    assert ahead["decode_entropy_s"] > 0 and ahead["decode_fps"] > 0
    assert data["adaptation"][0]["seconds_per_step"] > 0


def test_speed_times_the_range_coders_alone(tmp_path, capsys):
    """--coder-only: CompressAI's coder and nvc's on each thread count, on the same real symbols;
    nvc's bytes do not depend on the thread count."""
    from benchmarks.speed import main as speed_main

    out = tmp_path / "coders.json"
    assert speed_main(["--coder-only", "--sizes", "128x64", "--range-threads", "1,2",
                       "--out", str(out)]) == 0
    theirs, one, two = json.loads(out.read_text())["coders"]
    assert (theirs["coder"], one["threads"], two["threads"]) == ("compressai", 1, 2)
    assert theirs["symbols"] == one["symbols"] > 0 and one["bytes"] == two["bytes"] > 0
    assert abs(one["bytes"] / theirs["bytes"] - 1) < 0.05
    assert all(r["decode_msymbols_per_s"] > 0 for r in (theirs, one, two))
    with pytest.raises(SystemExit):
        speed_main(["--coder-only", "--range-threads", "0"])
    assert "--range-threads: positive integers" in capsys.readouterr().err


def test_shared_benchmark_reports_on_evaluation_clips_only():
    from benchmarks.manifest import dataset_manifest, read_manifest
    from train.data import EVALUATION_CLIPS

    files = [s.file for s in read_manifest(dataset_manifest("shared"))]
    assert all(any(e in f for e in EVALUATION_CLIPS) for f in files)
    assert all(any(e in f for f in files) for e in EVALUATION_CLIPS)  # and every one of them
    tuning = [s.file for s in read_manifest(dataset_manifest("shared-training"))]
    assert tuning and not any(e in f for f in tuning for e in EVALUATION_CLIPS)  # settings are
    # chosen on clips never reported on


def test_a_bad_gop_schedule_is_refused_before_any_work(tmp_path, capsys):
    args = ["--root", str(tmp_path), "--dataset", "shared", "--codecs", "nvc", "--anchor", "nvc",
            "--gop-schedule", "9,0,0", "--out", str(tmp_path / "out")]
    assert rd_main(args) == 1
    assert "GOP schedule" in capsys.readouterr().err and not (tmp_path / "out").exists()


def test_compare_two_runs(tmp_path, capsys):
    from benchmarks.compare import main as compare_main
    from nvc.metrics import bd_rate

    def run(psnr_shift):
        return {"points": [{"codec": "nvc", "sequence": "s", "bpp": b, "psnr_rgb_db": p + psnr_shift,
                            "psnr_yuv_db": p} for b, p in ((0.1, 30), (0.2, 32), (0.4, 34))]}
    (tmp_path / "a.json").write_text(json.dumps(run(0)))
    (tmp_path / "b.json").write_text(json.dumps(run(0.5)))
    assert compare_main([str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    expected = bd_rate([0.1, 0.2, 0.4], [30, 32, 34], [0.1, 0.2, 0.4], [30.5, 32.5, 34.5])
    assert table["psnr_rgb_db"]["s"] == pytest.approx(expected) and expected < 0
    assert table["psnr_yuv_db"]["mean"] == pytest.approx(0, abs=1e-9)
    assert compare_main([str(tmp_path / "a.json"), str(tmp_path / "missing.json")]) == 1


def test_capacity_counts_multiply_adds():
    import torch
    from torch import nn

    from benchmarks.capacity import MacCounter, variant

    net = nn.Sequential(nn.Conv2d(3, 8, 5, stride=2, padding=2),
                        nn.ConvTranspose2d(8, 4, 5, stride=2, padding=2, output_padding=1))
    counter = MacCounter(net)
    net(torch.zeros(1, 3, 16, 16))
    # conv: 8 x 8 x 8 outputs x 3 x 25; transposed: 8 x 8 x 8 inputs x 4 x 25
    assert counter.macs == 8 * 8 * 8 * 3 * 25 + 8 * 8 * 8 * 4 * 25
    counter.close()
    net(torch.zeros(1, 3, 16, 16))
    assert counter.macs == 8 * 8 * 8 * 7 * 25
    cfg = variant("64/48")
    assert (cfg.intra_mid, cfg.intra_latent, cfg.inter_mid, cfg.inter_latent) == (64, 85, 48, 72)


def test_capacity_refuses_bad_variants(capsys):
    from benchmarks.capacity import main as capacity_main

    for bad in ("96x64", "96/64/3/1"):
        with pytest.raises(SystemExit) as e:
            capacity_main(["--variants", bad])
        assert e.value.code == 2 and "takes N/M or N/M/K" in capsys.readouterr().err


def test_roi_benchmark_reads_the_mse_curve_at_equal_size():
    from benchmarks.roi import at_size

    curve = [{"bytes": 4000, "psnr": 30.0}, {"bytes": 1000, "psnr": 26.0}]
    assert at_size(curve, 2000, "psnr") == pytest.approx(28.0)  # linear in log bytes
    assert at_size(curve, 1000, "psnr") == 26.0
    assert at_size(curve, 980, "psnr") == 26.0  # within 3% beyond an end: that end
    assert at_size(curve, 4100, "psnr") == 30.0
    assert at_size(curve, 960, "psnr") is None and at_size(curve, 4150, "psnr") is None
    assert 29.99 < at_size(curve, 3990, "psnr") < 30.0


def test_memory_benchmark_codes_an_mp4_input(tiny_weights, capsys):
    from benchmarks.memory import main as memory_main

    assert memory_main(["--size", "64x64", "--frames", "2,3", "--input", "mp4", "--eval", "--weights",
                        str(tiny_weights), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["frames"] for r in rows] == [2, 3] and all(r["input"] == "mp4" for r in rows)
    assert all(r[f"{c}_peak_rss_mib"] > 10 for r in rows for c in ("encode", "decode", "eval"))


def test_train_speed_times_full_training_steps(tmp_path, capsys):
    from benchmarks.train_speed import main as train_speed_main

    out = tmp_path / "rows.json"
    assert train_speed_main(["--device", "cpu", "--batch", "1,2", "--crop", "64", "--frames", "2",
                             "--steps", "1", "--warmup", "0", "--precision", "fp32",
                             "--channels-last", "0", "--arch", "ssf-tiny", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["batch"] for r in rows] == [1, 2] and all(r["steps_per_s"] > 0 for r in rows)
    assert rows[1]["mpixels_per_s"] == pytest.approx(
        rows[1]["steps_per_s"] * 2 * 2 * 64 * 64 / 1e6, rel=0.05)
    assert train_speed_main(["--device", "cpu", "--crop", "100"]) == 1
    assert "--crop a multiple of 64" in capsys.readouterr().err


def test_portability_counts_differing_samples():
    from benchmarks.portability import compare

    a = [np.zeros((2, 4, 3), np.float32), np.zeros((2, 4, 3), np.float32)]
    b = [a[0].copy(), a[1].copy()]
    b[1][0, 0, 0] = 3 / 255
    r = compare(a, b)
    assert r["max_diff_per_frame"] == [0, 3] and r["differing_share"] == pytest.approx(1 / 48)
    assert r["min_psnr_db"] == pytest.approx(10 * np.log10(255 ** 2 / (9 / 24)))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal without a GPU")
def test_portability_refuses_a_cuda_encoder_without_a_gpu(tmp_path, capsys):
    from benchmarks.portability import main as portability_main

    clip = tmp_path / "clip.y4m"
    clip.write_bytes(b"")
    with pytest.raises(SystemExit):
        portability_main([str(clip), "--encode-device", "cuda"])
    assert "--encode-device cuda: no CUDA device is available" in capsys.readouterr().err


def test_cached_nvc_points_are_keyed_by_their_gop_schedule():
    from benchmarks.codecs import Conditions
    from benchmarks.rd import _nvc_key

    default, other = Conditions(), Conditions(gop_schedule="0.5,0,0.25")
    assert _nvc_key("nvc", default) != _nvc_key("nvc", other)
    assert "g16-0-8" in _nvc_key("nvc", other) and "g0-0-0" in _nvc_key("nvc-flat", other)
    assert _nvc_key("nvc-flat", default) == _nvc_key("nvc-flat", other)


def test_cached_nvc_points_are_keyed_by_their_refinement(monkeypatch):
    from benchmarks.codecs import Conditions
    from benchmarks.rd import _nvc_key
    from nvc import refine

    plain, refined = _nvc_key("nvc", Conditions()), _nvc_key("nvc", Conditions(refine=40))
    assert plain != refined and _nvc_key("nvc", Conditions(refine=80)) != refined
    monkeypatch.setitem(refine.LEARNING_RATES, FrameType.P, 0.5)  # a new step size recomputes
    assert _nvc_key("nvc", Conditions(refine=40)) != refined
    assert refine.Refinement(40).lr_inter == 0.5  # and the encoder codes with it
    assert _nvc_key("nvc", Conditions()) == plain


def test_average_points_carry_a_missing_ms_ssim(tmp_path):
    """A clip too small for MS-SSIM (None) leaves its point's average MS-SSIM None ('n/a' in the
    report), not a crash; the other metrics average as ever."""
    from benchmarks.report import summarize, write_markdown

    records = [{"codec": "nvc", "sequence": s, "point": "q1", "bpp": b, "psnr_rgb_db": 30.0,
                "psnr_yuv_db": 32.0, "ms_ssim": m, "encode_seconds": 1.0, "decode_seconds": 1.0}
               for s, b, m in (("a", 0.1, 0.95), ("b", 0.3, None))]
    summary = summarize(records, ["nvc"], "nvc")
    point = summary["average_points"]["nvc"][0]
    assert point["ms_ssim"] is None and point["bpp"] == pytest.approx(0.2)
    write_markdown({"summary": summary, "provenance": {"codecs": ["nvc"]}, "manifest": "m.txt"},
                   [], tmp_path / "r.md")
    assert "| nvc | q1 | 0.2000 | 30.00 | 32.00 | n/a |" in (tmp_path / "r.md").read_text()


def test_rd_places_nvc_points_between_and_below_the_rungs(tmp_path, capsys):
    root = tmp_path / "data"
    root.mkdir()
    write_video(root / "tiny_96x64_25.y4m", make_video(frames=2, hw=(64, 96)))
    (tmp_path / "m.txt").write_text("tiny_96x64_25.y4m 96 64 25 2\n")
    base = ["--root", str(root), "--dataset", "manifest", "--manifest", str(tmp_path / "m.txt"),
            "--anchor", "nvc", "--frames", "2"]
    assert rd_main(base + ["--codecs", "nvc", "--qualities", "0.5,1,1.5",
                           "--out", str(tmp_path / "out")]) == 0
    points = json.loads((tmp_path / "out" / "results.json").read_text())["points"]
    assert [p["point"] for p in points] == ["q0.5", "q1", "q1.5"]  # q1 keyed as before
    assert points[0]["bpp"] < points[1]["bpp"] < points[2]["bpp"]
    assert rd_main(base + ["--codecs", "nvc,nvc-adapt", "--qualities", "1.5", "--adapt-steps", "2",
                           "--out", str(tmp_path / "adapted")]) == 0
    points = json.loads((tmp_path / "adapted" / "results.json").read_text())["points"]
    adapted = [p for p in points if p["codec"] == "nvc-adapt"]
    assert [p["point"] for p in adapted] == ["q1.5"] and adapted[0]["bpp"] > 0
