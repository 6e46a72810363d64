import subprocess
from pathlib import Path

import pytest

from nvc.io import Video
from nvc.synthetic import as_video, demo_clip
from nvc.writers import write_y4m
from nvc.y4m import read_file as read_y4m
from train.device_kit import main, validation_names

ROOT = Path(__file__).resolve().parents[1]


def _shared(tmp_path: Path, names: list[str]) -> Path:
    clip = as_video(demo_clip(frames=3, out_hw=(64, 64)))
    (tmp_path / "shared" / "videos").mkdir(parents=True)
    (tmp_path / "shared" / "photos").mkdir()
    for name in names:
        write_y4m(tmp_path / "shared" / "videos" / f"{name}_64x64.y4m", Video(clip.frames, clip.fps))
    (tmp_path / "shared" / "photos" / "leaf.jpg").write_bytes(b"\xff\xd8")
    (tmp_path / "shared" / "photos" / "MANIFEST.md").write_text("not a photo")
    return tmp_path / "shared"


def test_kit_carries_training_clips_and_the_validation_gop_only(tmp_path, capsys):
    shared = _shared(tmp_path, ["cup", "mobile", *validation_names()])
    assert main(["--shared", str(shared), "--dest", str(tmp_path / "kit"), "--no-wheels",
                 "--val-frames", "2"]) == 0
    data = tmp_path / "kit" / "data"
    assert [p.name for p in (data / "clips").iterdir()] == ["cup_64x64.y4m"]  # no evaluation clip
    assert [p.name for p in (data / "photos").iterdir()] == ["leaf.jpg"]
    val = sorted((data / "val").iterdir())
    assert len(val) == len(validation_names())
    assert all(len(read_y4m(p).frames) == 2 for p in val)
    assert "of the 64 a call carries" in capsys.readouterr().out


def test_kit_refuses_a_missing_validation_clip_in_one_line(tmp_path, capsys):
    shared = _shared(tmp_path, ["cup"])
    assert main(["--shared", str(shared), "--dest", str(tmp_path / "kit"), "--no-wheels"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "no validation clip named like" in err and "\n" not in err


def test_device_script_parses_and_names_its_phases():
    script = ROOT / "train" / "device.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    done = subprocess.run(["bash", str(script)], capture_output=True, text=True)
    assert done.returncode == 2 and "start|watch|finish" in done.stderr


def test_kit_help_ends_with_an_example(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-2] == "example:" and lines[-1].strip().startswith("python -m train.device_kit")
