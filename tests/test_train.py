from pathlib import Path

import pytest
import torch

from nvc.zoo import load_model
from train.__main__ import main as cli_main
from train.data import SyntheticClips, VideoClips
from train.export import main as export_main
from train.module import VideoCodecModule

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


def test_datasets_give_clips():
    syn = SyntheticClips(frames=3, crop=32, length=2)
    assert syn[0].shape == (3, 3, 32, 32)
    video = (torch.rand(5, 40, 50, 3) * 255).byte().numpy()
    clips = VideoClips([video], frames=3, crop=32, length=4)
    x = clips[1]
    assert x.shape == (3, 3, 32, 32) and 0 <= x.min() and x.max() <= 1


@pytest.mark.slow
def test_two_process_ddp_fit_on_cpu(tmp_path):
    """Lightning's DDP (gloo on CPU), 2 processes, a few steps, through the real CLI."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, "-m", "train", "fit", "--config", CONFIG,
         f"--trainer.default_root_dir={tmp_path}", "--trainer.strategy=ddp", "--trainer.devices=2",
         "--trainer.max_steps=2", f"--trainer.callbacks.init_args.dirpath={tmp_path / 'ckpt'}"],
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


@pytest.mark.parametrize("argv", [["fit", "--help"]])
def test_training_help_has_an_example(argv, capsys):
    with pytest.raises(SystemExit):
        cli_main(argv)
    assert "example:" in capsys.readouterr().out


def test_export_help_has_an_example(capsys):
    with pytest.raises(SystemExit):
        export_main(["--help"])
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-2] == "example:" and lines[-1].strip().startswith("python -m train.export")
