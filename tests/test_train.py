import types
from pathlib import Path

import numpy as np
import pytest
import torch

from nvc.bitstream import SKIP_BELOW_INDEX
from nvc.errors import ConfigError
from nvc.schedule import GAP, SLOPE, default_schedule
from nvc.zoo import load_model
from train.__main__ import main as cli_main
from train.data import (
    EVALUATION_CLIPS,
    FreshSampler,
    Mixture,
    SyntheticClips,
    VideoClips,
    VideoFolderDataModule,
)
from train.export import main as export_main
from train.module import ENCODER_SIDE, VideoCodecModule, p_frames_at

CONFIG = str(Path(__file__).resolve().parents[1] / "train" / "configs" / "cpu_smoke.yaml")


def _fit(tmp_path, *extra):
    cli_main(["fit", "--config", CONFIG, f"--trainer.default_root_dir={tmp_path}",
              f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt'}", *extra])
    return tmp_path / "ckpt" / "last.ckpt"


@pytest.mark.parametrize("stage", ["intra", "inter", "joint"])
def test_each_stage_gives_finite_loss_and_trains_its_codecs(stage):
    torch.manual_seed(0)
    module = VideoCodecModule(arch="ssf-tiny", stage=stage)
    clip = torch.rand(2, 3, 3, 64, 64)
    stats = module.rd_loss(clip)
    assert torch.isfinite(stats["loss"]) and stats["bpp"] > 0
    stats["loss"].backward()
    trained = {"intra": ["intra"], "inter": ["motion", "residual"],
               "joint": ["intra", "motion", "residual"]}[stage]
    for name in trained:
        assert any(p.grad is not None for p in getattr(module.model, name).parameters()), name


def test_fit_resume_and_export(tmp_path):
    ckpt = _fit(tmp_path, "--model.lr_drops=[2]", "--model.lr_drop_factor=0.5")
    assert ckpt.exists()
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] == 4 and "nvc_config" in state
    lr = state["hyper_parameters"]["lr"]
    assert state["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(lr * 0.5)
    resumed = _fit(tmp_path, "--trainer.max_steps=6", f"--ckpt_path={ckpt}")
    assert torch.load(resumed, map_location="cpu", weights_only=True)["global_step"] == 6
    out = tmp_path / "w.safetensors"
    export_main([str(resumed), "-o", str(out)])
    model, entry = load_model(path=out)
    assert model.cfg.name == "ssf-tiny" and len(entry.sha256) == 64


def _epoch_batches(dataset, epoch: int, batch_size: int = 2) -> list[torch.Tensor]:
    sampler = FreshSampler(len(dataset))
    sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler)
    return list(loader)


def test_two_epochs_draw_different_crops():
    video = (torch.rand(12, 60, 80, 3) * 255).byte().numpy()
    clips = VideoClips([video], frames=3, crop=32, length=4)
    first, again, second = (_epoch_batches(clips, e) for e in (0, 0, 1))
    assert all(torch.equal(a, b) for a, b in zip(first, again))  # reproducible for a seed
    assert not any(torch.equal(a, b) for a, b in zip(first, second))
    # within an epoch no two draws repeat either
    samples = torch.cat(first + second)
    assert len({s.sum().item() for s in samples}) == len(samples)


def test_mixture_draws_from_every_part():
    video = (torch.rand(4, 40, 40, 3) * 255).byte().numpy()
    zeros = VideoClips([np.zeros_like(video)], frames=2, crop=32, length=40)
    noise = VideoClips([video], frames=2, crop=32, length=40)
    mix = Mixture([zeros, noise], [0.5, 0.5], length=40)
    kinds = [bool(mix[i].any()) for i in range(40)]
    assert 5 < sum(kinds) < 35


def test_fresh_sampler_ids_are_unique_per_epoch():
    s = FreshSampler(5)
    ids = []
    for e in range(3):
        s.set_epoch(e)
        ids += list(s)
    assert len(ids) == len(set(ids)) == 15


def test_unroll_grows_with_the_step():
    schedule = [[0, 2], [100, 4], [200, 6]]
    assert [p_frames_at(s, schedule, 5) for s in (0, 99, 100, 250)] == [2, 2, 4, 5]
    assert p_frames_at(0, None, 5) == 5


def test_joint_stage_unrolls_the_scheduled_p_frames():
    module = VideoCodecModule(arch="ssf-tiny", stage="joint", unroll=[[0, 1]])
    assert module.rd_loss(torch.rand(1, 4, 3, 64, 64))["p_frames"] == 1


def test_burn_in_codes_p_frames_without_gradients_before_the_unrolled_ones(monkeypatch):
    module = VideoCodecModule(arch="ssf-tiny", stage="joint", unroll=[[0, 1]], burn_in=3)
    clip = torch.rand(1, 6, 3, 64, 64)
    real, calls = module.model.forward_inter, []

    def spy(x, ref, q):
        calls.append((torch.is_grad_enabled(), next(k for k in range(6) if x.equal(clip[:, k]))))
        return real(x, ref, q)
    monkeypatch.setattr(module.model, "forward_inter", spy)
    burns = set()
    for _ in range(40):
        calls.clear()
        stats = module.rd_loss(clip)
        burn = int(stats["burn_in"])
        burns.add(burn)
        assert stats["p_frames"] == 1
        # the burn-in's frames in order without gradients, then the unrolled frame with them
        assert calls == [(False, k) for k in range(1, 1 + burn)] + [(True, 1 + burn)]
    assert burns == {0, 1, 2, 3}
    # a clip too short for the whole burn-in caps it: 4 frames leave room for 2
    assert max(int(module.rd_loss(clip[:, :4])["burn_in"]) for _ in range(30)) == 2


def test_validation_codes_a_gop_at_every_quality(monkeypatch):
    module = VideoCodecModule(arch="ssf-tiny", stage="joint").eval()
    logged = {}
    monkeypatch.setattr(module, "log", lambda k, v, **kw: logged.__setitem__(k, float(v)))
    module.validation_step(torch.rand(1, 3, 3, 50, 70), 0)  # any size: padded inside
    assert set(logged) == {"val/rd_cost", "val_clip/rd_cost_0", "val/bpp_q1", "val/bpp_q2", "val/psnr_db_q1",
                           "val/psnr_db_q2"}
    assert all(np.isfinite(v) for v in logged.values()) and logged["val/bpp_q1"] > 0


@pytest.mark.parametrize("sanity", [True, False])
def test_a_sanity_check_validation_is_logged_at_the_starting_step(sanity, monkeypatch):
    """Lightning drops what a sanity check logs; the run's starting point must still be on record."""
    module = VideoCodecModule(arch="ssf-tiny", stage="joint").eval()
    written = []
    logger = types.SimpleNamespace(log_metrics=lambda m, step: written.append((step, m)))
    module._trainer = types.SimpleNamespace(sanity_checking=sanity, logger=logger, global_step=0)
    monkeypatch.setattr(module, "log", lambda *a, **kw: None)
    module.on_validation_epoch_start()
    for k in range(2):
        module.validation_step(torch.rand(1, 2, 3, 32, 32), k)
    module.on_validation_epoch_end()
    if not sanity:  # an ordinary validation is Lightning's to log
        assert written == []
        return
    [(step, metrics)] = written
    clips = [metrics["val_clip/rd_cost_0"], metrics["val_clip/rd_cost_1"]]
    assert step == 0 and metrics["val/rd_cost"] == pytest.approx(sum(clips) / 2)
    assert all(np.isfinite(c) and c > 0 for c in clips)


def _record_positions(module, monkeypatch) -> list:
    """Each frame's q as the model sees it, in coding order."""
    seen = []
    for name in ("forward_intra", "forward_inter"):
        real = getattr(module.model, name)

        def spy(*args, _real=real):
            seen.append(args[-1])
            return _real(*args)
        monkeypatch.setattr(module.model, name, spy)
    return seen


def test_scheduled_training_codes_each_frame_where_the_encoder_will(monkeypatch):
    module = VideoCodecModule(arch="ssf-tiny", stage="joint", schedule="default", intra_period=6)
    seen = _record_positions(module, monkeypatch)
    monkeypatch.setattr(torch, "randint", lambda *a, **kw: torch.tensor([0, 1]))
    module.rd_loss(torch.rand(2, 4, 3, 64, 64))
    positions = [p.flatten().tolist() for p in seen]
    # ssf-tiny has two rungs: quality 1 keeps its I-frame and drops its P-frames the whole gap,
    # quality 2 lifts its I-frame the gap (the model clamps it) and keeps its first P-frame
    gap, slope = GAP, SLOPE
    assert positions[0] == [0.0, 1 + gap]
    assert positions[1] == [-gap, 1.0]
    for k in (2, 3):
        steps = [default_schedule(q, 2, 6).offset_steps(k, 6) for q in (1, 2)]
        assert positions[k] == pytest.approx([q + s / 32 for q, s in zip((0, 1), steps)])
        assert steps[1] < 0 and -steps[1] < slope * 32
    flat = VideoCodecModule(arch="ssf-tiny", stage="joint")
    seen = _record_positions(flat, monkeypatch)
    flat.rd_loss(torch.rand(2, 3, 3, 64, 64))
    assert all(torch.equal(p, torch.tensor([0, 1])) for p in seen)


def test_each_frame_is_weighted_by_the_lambda_of_its_position():
    module = VideoCodecModule(arch="ssf-tiny", stage="joint", schedule="default",
                              lambdas=[0.001, 0.004])
    q = torch.tensor([0, 0, 0, 1, 1])
    lam = module.frame_lambda(q, torch.tensor([0.0, 0.5, -1.0, 1.0, 1.75]))
    # the rungs' own, their geometric mean half-way, the first segment extended below, the top above
    assert lam.tolist() == pytest.approx([0.001, 0.002, 0.00025, 0.004, 0.004])
    gop = VideoCodecModule(arch="ssf-tiny", stage="joint", schedule="default",
                           lambdas=[0.001, 0.004], frame_lambdas=False)
    assert gop.frame_lambda(q, torch.tensor([0.0, 0.5, -1.0, 1.0, 1.75])).tolist() == \
        pytest.approx([0.001] * 3 + [0.004] * 2)


def test_scheduled_validation_follows_the_encoders_default(monkeypatch):
    module = VideoCodecModule(arch="ssf-tiny", stage="joint", schedule="default").eval()
    seen = _record_positions(module, monkeypatch)
    clip = torch.rand(4, 3, 64, 64)
    module.gop_stats(clip, 0)
    expected = [default_schedule(1, 2, 4).frame_q(0, k, 4, torch.device("cpu")) for k in range(4)]
    assert [float(p) for p in seen] == [float(e) for e in expected]
    assert float(seen[1]) == -GAP  # quality 1: P-frames below it


def test_validation_can_follow_the_encoders_schedule_apart_from_training(monkeypatch):
    """val_schedule: training flat, validation as the encoder codes a GOP of the clip's length (at
    24 frames and more with the P-frame cycle)."""
    module = VideoCodecModule(arch="ssf-tiny", stage="joint", val_schedule="default").eval()
    seen = _record_positions(module, monkeypatch)
    clip = torch.rand(24, 3, 64, 64)
    module.gop_stats(clip, 0)
    cycled = default_schedule(1, 2, 24)
    assert cycled.cycle  # the encoder's schedule for this GOP has a cycle: the validation follows it
    expected = [cycled.frame_q(0, k, 24, torch.device("cpu")) for k in range(24)]
    assert [float(p) for p in seen] == [float(e) for e in expected]
    seen.clear()
    module.rd_loss(torch.rand(1, 3, 3, 64, 64))
    assert all(isinstance(p, torch.Tensor) and p.dim() == 1 for p in seen)  # training: flat indexes
    with pytest.raises(ConfigError, match="val_schedule must be one of"):
        VideoCodecModule(arch="ssf-tiny", stage="joint", val_schedule="hier")
    with pytest.raises(ConfigError, match=r"model config: lambdas must be 1 to 16 numbers above 0"):
        VideoCodecModule(arch="ssf-tiny", stage="joint", lambdas=[0.01, -1.0])


def test_validation_measures_in_float32_under_bf16_training():
    module = VideoCodecModule(arch="ssf-tiny", stage="joint").eval()
    clip = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        mse, bpp = module.gop_stats(clip, 1)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # as under precision: bf16-mixed
            mse_bf16, bpp_bf16 = module.gop_stats(clip, 1)
            mse_raw, _ = module._gop_stats(clip, 1)
    assert torch.equal(mse, mse_bf16) and torch.equal(bpp, bpp_bf16)
    assert not torch.equal(mse, mse_raw)  # autocast would have changed the figures


@pytest.mark.parametrize("config", sorted((Path(CONFIG).parent).glob("*.yaml")))
def test_configs_never_train_on_evaluation_clips(config):
    """../shared/videos/MANIFEST.md: a config that reads the shared clips excludes every
    evaluation clip."""
    import yaml

    data = yaml.safe_load(config.read_text())["data"]["init_args"]
    if any("shared/videos" in r for r in data.get("roots", [])):
        assert set(EVALUATION_CLIPS) <= set(data["exclude"])


def test_video_folder_excludes_evaluation_clips(tmp_path):
    from nvc.io import Video
    from nvc.synthetic import as_video, demo_clip
    from nvc.writers import write_y4m

    clip = as_video(demo_clip(frames=3, out_hw=(64, 64)))
    for name in ("cup_64x64.y4m", "foreman_64x64.y4m"):
        write_y4m(tmp_path / name, Video(clip.frames, clip.fps))
    dm = VideoFolderDataModule(roots=[str(tmp_path)], exclude=list(EVALUATION_CLIPS), frames=2,
                               crop=64, batch_size=1, steps_per_epoch=2, synthetic_fraction=0)
    dm.setup("fit")
    assert len(dm.train_set.videos) == 1


def test_video_folder_adds_half_size_copies_of_tall_videos(tmp_path):
    from nvc.io import Video
    from nvc.synthetic import as_video, demo_clip
    from nvc.writers import write_y4m

    clip = as_video(demo_clip(frames=3, out_hw=(128, 192)))
    write_y4m(tmp_path / "cup_192x128.y4m", Video(clip.frames, clip.fps))
    shapes = {}
    for above in (129, 128):
        dm = VideoFolderDataModule(roots=[str(tmp_path)], frames=2, crop=64, batch_size=1,
                                   steps_per_epoch=2, synthetic_fraction=0, downscale_above=above)
        dm.setup("fit")
        shapes[above] = [v.shape for v in dm.train_set.videos]
    assert shapes[129] == [(3, 128, 192, 3)]
    assert shapes[128] == [(3, 128, 192, 3), (3, 64, 96, 3)]


def test_containers_decode_through_opencv_where_pyav_is_missing(tmp_path, monkeypatch):
    import importlib.util
    import sys
    import types

    from nvc.errors import InputError
    from train.data import read_rgb

    rgb = np.arange(3 * 4 * 6 * 3, dtype=np.uint8).reshape(3, 4, 6, 3)

    class Capture:  # cv2.VideoCapture's reading protocol: BGR frames, then (False, None)
        def __init__(self, path):
            self.frames = [f[..., ::-1] for f in rgb] if Path(path).stat().st_size else []

        def read(self):
            return (True, self.frames.pop(0)) if self.frames else (False, None)

        def release(self):
            pass

    monkeypatch.setitem(sys.modules, "cv2", types.SimpleNamespace(VideoCapture=Capture))
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "av" else find_spec(name, *a))
    clip, empty = tmp_path / "cup.mp4", tmp_path / "box.mp4"
    clip.write_bytes(b"x")
    empty.write_bytes(b"")
    assert np.array_equal(read_rgb(clip, 2), rgb[:2])
    assert np.array_equal(read_rgb(clip, 9), rgb)
    with pytest.raises(InputError, match="OpenCV decoded no frames"):
        read_rgb(empty, 2)
    monkeypatch.setitem(sys.modules, "cv2", None)  # `import cv2` raises ImportError
    with pytest.raises(InputError, match="needs PyAV or OpenCV"):
        read_rgb(clip, 2)


@pytest.mark.parametrize("setting, message", [
    ("--data.init_args.crop=100", "crop must be a positive multiple of 64, got 100"),
    ("--model.stage=both", "stage must be one of"),
    ("--model.schedule=hier", "schedule must be one of"),
    ("--model.intra_period=1", "intra_period must be at least 2, got 1"),
    ("--model.accumulate=0", "accumulate must be at least 1, got 0"),
    ("--model.burn_in=-1", "burn_in must be at least 0, got -1"),
    ("--model.burn_in=2", "burn_in needs an unroll schedule"),
    ("--model.burn_in=2 --model.unroll=[[0,1]]", "burn_in 2 before 1 unrolled P-frames needs clips of 4 "
                                                "frames; data.frames is 3"),
    ("--model.arch=ssf-huge", "unknown arch 'ssf-huge'"),
    ("--data.init_args.batch_size=0", "batch_size must be at least 1, got 0"),
    ("--data.init_args.frames=1", "stage joint codes P-frames: its clips need 2 frames or more"),
    ("--model.lr=-1", "lr must be above 0, got -1.0"),
    ("--model.aux_lr=0", "aux_lr must be above 0, got 0.0"),
    ("--model.lr_drop_factor=2", "lr_drop_factor must lie in (0, 1], got 2.0"),
    ("--model.unroll=[[0,0]]", "unroll entries are [from_step >= 0, p_frames >= 1], got [0, 0]"),
    ("--model.lambdas=[0.01,-1]", "model config: lambdas must be 1 to 16 numbers above 0"),
    ("--model.init_from=[missing.safetensors]", "missing.safetensors: no such weights file"),
])
def test_bad_settings_are_one_line_errors(setting, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _fit(tmp_path, *setting.split(), "--trainer.max_steps=1")
    assert str(exc.value).startswith(f"error: {message}") and "\n" not in str(exc.value)
    assert not (tmp_path / "ckpt").exists()


def test_datasets_give_clips():
    syn = SyntheticClips(frames=3, crop=32, length=2)
    assert syn[0].shape == (3, 3, 32, 32)
    video = (torch.rand(5, 40, 50, 3) * 255).byte().numpy()
    clips = VideoClips([video], frames=3, crop=32, length=4)
    x = clips[1]
    assert x.shape == (3, 3, 32, 32) and 0 <= x.min() and x.max() <= 1


@pytest.mark.slow
def test_two_process_ddp_fit_on_cpu(tmp_path):
    """Lightning's DDP (gloo on CPU), 2 processes, a few steps of two accumulated batches each,
    through the real CLI."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "train", "fit", "--config", CONFIG,
         f"--trainer.default_root_dir={tmp_path}", "--trainer.strategy=ddp", "--trainer.devices=2",
         "--trainer.max_steps=2", "--model.accumulate=2",
         f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt'}"],
        capture_output=True, text=True, timeout=600, env=env, cwd=Path(CONFIG).parents[2])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "distributed_backend=gloo" in proc.stderr + proc.stdout
    ckpt = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 2


@pytest.mark.parametrize("config", sorted((Path(CONFIG).parent).glob("*.yaml")))
def test_every_config_parses(config, tmp_path):
    """Each shipped YAML is a valid LightningCLI config (parsed, not run)."""
    from lightning.pytorch.cli import LightningCLI

    from train.module import VideoCodecModule

    cli = LightningCLI(VideoCodecModule, subclass_mode_data=True, run=False,
                       args=["--config", str(config), "--trainer.accelerator=cpu",
                             "--trainer.logger=false", "--trainer.callbacks=null",
                             f"--trainer.default_root_dir={tmp_path}"])
    assert cli.model.hparams.stage in ("intra", "inter", "joint")
    assert len(cli.model.cfg.lambdas) == cli.model.cfg.num_qualities >= 2


@pytest.mark.parametrize("argv", [["--help"], ["fit", "--help"], ["validate", "--help"]])
def test_training_help_ends_with_an_example(argv, capsys):
    with pytest.raises(SystemExit):
        cli_main(argv)
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-2] == "example:" and lines[-1].strip().startswith("python -m train fit --config")


def test_export_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        export_main(["--help"])
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-2] == "example:" and lines[-1].strip().startswith("python -m train.export")


def test_device_crops_cut_fresh_windows_and_pans():
    from train.device_data import DeviceCrops

    video = (np.random.default_rng(0).random((8, 48, 64, 3)) * 255).astype(np.uint8)
    photo = np.random.default_rng(1).random((80, 90, 3)).astype(np.float32)
    crops = DeviceCrops([video], [photo], frames=3, crop=32, photo_fraction=0.5, max_pan_px=4)
    a, b = crops.batch(torch.arange(0, 16)), crops.batch(torch.arange(16, 32))
    assert a.shape == (16, 3, 3, 32, 32) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1 and not torch.equal(a, b)
    assert torch.equal(a, crops.batch(torch.arange(0, 16)))  # the id decides the sample


def test_device_datamodule_turns_ids_into_crops(tmp_path):
    from nvc.io import Video
    from nvc.synthetic import as_video, demo_clip
    from nvc.writers import write_y4m
    from train.device_data import DeviceVideoDataModule

    clip = as_video(demo_clip(frames=4, out_hw=(64, 64)))
    write_y4m(tmp_path / "cup_64x64.y4m", Video(clip.frames, clip.fps))
    dm = DeviceVideoDataModule(roots=[str(tmp_path)], frames=2, crop=64, batch_size=2,
                               steps_per_epoch=2, synthetic_fraction=0.5)
    dm.setup("fit")
    ids = next(iter(dm.train_dataloader()))
    assert ids.tolist() == [0, 1]
    assert dm.on_after_batch_transfer(ids, 0).shape == (2, 2, 3, 64, 64)
    clip = torch.rand(1, 2, 3, 32, 32)
    assert dm.on_after_batch_transfer(clip, 0) is clip  # validation clips pass through


def test_entropy_models_stay_float32_under_bf16_autocast():
    module = VideoCodecModule(arch="ssf-tiny", stage="intra")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module.model.forward_intra(torch.rand(1, 3, 64, 64), 0)
    assert all(lik.dtype == torch.float32 for lik in out.likelihoods)


@pytest.mark.parametrize("stage, frozen", [("intra", ["motion", "residual"]),
                                           ("inter", ["intra"]), ("joint", [])])
def test_a_training_step_leaves_frozen_codecs_unchanged(stage, frozen):
    torch.manual_seed(0)
    module = VideoCodecModule(arch="ssf-tiny", stage=stage, lr=1e-2)
    before = {k: v.clone() for k, v in module.model.state_dict().items()}
    opt, aux_opt = (torch.optim.Adam(module._params(aux=False), lr=1e-2),
                    torch.optim.Adam(module._params(aux=True), lr=1e-2))
    loss = module.rd_loss(torch.rand(2, 3, 3, 64, 64))["loss"] + module.model.aux_loss()
    loss.backward()
    opt.step()
    aux_opt.step()
    after = module.model.state_dict()
    for name in ("intra", "motion", "residual"):
        changed = any(not torch.equal(before[k], after[k]) for k in before
                      if k.startswith(name + ".") and before[k].is_floating_point())
        assert changed == (name not in frozen), name


@pytest.mark.parametrize("stage", ["intra", "inter", "joint"])
def test_net_and_aux_parameters_partition_the_active_codecs(stage):
    module = VideoCodecModule(arch="ssf-tiny", stage=stage)
    net, aux = module._params(aux=False), module._params(aux=True)
    active = [p for mod in module._active_modules() for p in mod.parameters()]
    assert {id(p) for p in net}.isdisjoint({id(p) for p in aux})
    assert {id(p) for p in net} | {id(p) for p in aux} == {id(p) for p in active}
    assert aux and all(p.shape[-1] == 3 for p in aux)  # the entropy bottlenecks' quantiles


def test_encoders_only_fit_leaves_every_decoder_side_weight_as_loaded(tmp_path):
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    export_main([str(_fit(tmp_path / "a", "--trainer.max_steps=1")), "-o", str(start)])
    ckpt = _fit(tmp_path / "b", "--model.encoders_only=true", "--model.lr=0.01",
                f"--model.init_from=[{start}]")
    before = dict(load_model(path=start)[0].named_parameters())
    after = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    moved = {k for k, v in before.items() if not torch.equal(v, after["model." + k])}
    assert moved, "the encoders trained"
    assert all(k.split(".", 1)[1].startswith(ENCODER_SIDE) for k in moved), \
        [k for k in moved if not k.split(".", 1)[1].startswith(ENCODER_SIDE)]
    assert {k.split(".")[0] for k in moved} == {"intra", "motion", "residual"}


def test_coder_skip_sets_every_latent_to_the_coders_line():
    skip = VideoCodecModule(arch="ssf-tiny", stage="joint", coder_skip=True)
    plain = VideoCodecModule(arch="ssf-tiny", stage="joint")
    for name in ("intra", "motion", "residual"):
        assert getattr(skip.model, name).latent.skip_below == SKIP_BELOW_INDEX
        assert getattr(plain.model, name).latent.skip_below == 0


def test_block_lr_trains_the_grown_blocks_at_their_own_rate(tmp_path, monkeypatch):
    """A base grown by residual blocks (res_blocks) fine-tuned with a near-zero lr and a large
    block_lr: the blocks move (at lr 1e-9 alone their zero convolutions would stay below 1e-8), the
    base's weights barely do."""
    import dataclasses

    from nvc.models.config import TINY
    from nvc.zoo import ARCHITECTURES

    monkeypatch.setitem(ARCHITECTURES, "ssf-tiny-r1",
                        dataclasses.replace(TINY, name="ssf-tiny-r1", res_blocks=1))
    torch.manual_seed(0)
    start = tmp_path / "start.safetensors"
    export_main([str(_fit(tmp_path / "a", "--trainer.max_steps=1")), "-o", str(start)])
    ckpt = _fit(tmp_path / "b", "--model.arch=ssf-tiny-r1", "--model.lr=1e-9",
                "--model.block_lr=0.01", f"--model.init_from=[{start}]")
    before = dict(load_model(path=start)[0].named_parameters())
    after = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    moved = {k.removeprefix("model.") for k, v in after.items()
             if k.removeprefix("model.") not in before and ".r0." in k
             and float(v.abs().max()) > 1e-3 and "conv2" in k}
    assert len(moved) == 12, moved  # conv2 weight and bias of six blocks, no longer zero
    drift = max(float((after["model." + k] - v).abs().max()) for k, v in before.items()
                if not k.endswith("quantiles"))  # the aux optimizer's, at its own rate
    assert drift < 1e-5, drift


def test_accumulate_steps_once_on_the_mean_gradient_of_its_batches(tmp_path, monkeypatch):
    """Two batches a step: the step sees the mean of their gradients (losses c * sum(w^2) with c
    = 1 then 3 give 2w * (1 + 3) / 2), four batches make two optimizer steps."""
    seen, grads = [], []

    def rd_loss(self, clip):
        w = self.model.intra.g_s[0].weight
        c = 1.0 if len(seen) % 2 == 0 else 3.0
        seen.append(w.detach().clone())
        zero = torch.zeros(())
        return {"loss": c * (w ** 2).sum(), "bpp": zero, "psnr": zero, "mse": zero,
                "p_frames": zero}

    def clip_gradients(self, opt, **kw):  # just before each optimizer step
        grads.append(self.model.intra.g_s[0].weight.grad.clone())

    monkeypatch.setattr(VideoCodecModule, "rd_loss", rd_loss)
    monkeypatch.setattr(VideoCodecModule, "clip_gradients", clip_gradients)
    ckpt = _fit(tmp_path, "--model.accumulate=2", "--trainer.max_steps=2",
                "--trainer.limit_val_batches=0")
    assert torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"] == 2
    assert len(seen) == 4 and len(grads) == 2
    assert torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])
    for k, g in enumerate(grads):
        torch.testing.assert_close(g, 4 * seen[2 * k])
