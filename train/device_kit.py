"""Pack what a training session on a lent GPU machine needs into the git-ignored folders that the
`device` tool carries beside the working tree (64 MiB a call, the tree included):

- `.whl/`: wheels of the Python packages nvc needs that the machine lacks (CompressAI and
  pytorch-msssim, at the versions installed here; Python 3.12, manylinux x86_64). PyAV is not
  carried (35 MB): there, OpenCV decodes the training clips (train.data.read_rgb).
- `data/clips/`: the training clips as they are (containers stay compressed), every file of the
  videos folder but the evaluation clips (train.data.EVALUATION_CLIPS, ../shared/videos/MANIFEST.md);
- `data/photos/`: the photographs;
- `data/val/`: the first `--val-frames` frames of the shipped base's validation clips (the
  evaluation clips stage3_joint.yaml names), as y4m.

train/configs/gpu.yaml reads those folders, and `bash train/device.sh start|watch|finish` runs the
session there (its header says how). Nothing of ../shared enters the repository: both folders are
git-ignored.

Example:
    python -m train.device_kit --shared ../shared
"""
from __future__ import annotations

import argparse
import importlib.metadata
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from nvc.errors import InputError
from nvc.io import read_video
from nvc.writers import write_y4m
from train.data import EVALUATION_CLIPS, PHOTO_SUFFIXES, list_videos

ROOT = Path(__file__).resolve().parents[1]
CARRY_LIMIT_BYTES = 64 << 20  # the device tool's limit on what travels in one call
WHEELS = ("compressai", "pytorch-msssim")  # what the machine's image lacks (KINDS.md)
PLATFORMS = ("manylinux_2_34_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64")
VAL_CONFIG = ROOT / "train" / "configs" / "stage3_joint.yaml"


def validation_names(config: Path = VAL_CONFIG) -> list[str]:
    """The clips the shipped bases are validated on (stage3_joint.yaml's val_clips)."""
    return list(yaml.safe_load(config.read_text())["data"]["init_args"]["val_clips"])


def training_files(videos: Path) -> list[Path]:
    return [p for p in list_videos(videos) if not any(e in p.name for e in EVALUATION_CLIPS)]


def copy_files(paths: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copyfile(p, dest / p.name)


def write_validation(videos: Path, names: list[str], frames: int, dest: Path) -> list[Path]:
    """The first `frames` frames of each named clip as y4m under `dest`; every name must match."""
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name in names:
        found = [p for p in list_videos(videos) if name in p.name]
        if not found:
            raise InputError(f"{videos}: no validation clip named like {name!r}")
        target = dest / f"{found[0].stem}.y4m"
        write_y4m(target, read_video(found[0], frames=frames))
        out.append(target)
    return out


def download_wheels(dest: Path) -> None:
    """The installed versions of WHEELS, for the machine's Python 3.12 (pip needs the network)."""
    dest.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", "3.12", "--implementation", "cp", "-d", str(dest), *pins]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"pip download {' '.join(pins)} failed: {last}")


def tree_bytes(root: Path = ROOT) -> int:
    """What travels besides the carried folders: the tracked and untracked-not-ignored files."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root,
                            capture_output=True, check=True).stdout.split(b"\0")
    return sum((root / n.decode()).stat().st_size for n in listed if n and (root / n.decode()).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m train.device_kit", description=__doc__.split("Example")[0],
        epilog="example:\n  python -m train.device_kit --shared ../shared",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--shared", default=str(ROOT.parent / "shared"),
                   help="the folder holding videos/ and photos/ (default: ../shared)")
    p.add_argument("--val-frames", type=int, default=12)
    p.add_argument("--no-wheels", action="store_true", help="keep .whl/ as it is")
    p.add_argument("--dest", default=str(ROOT), help="where data/ and .whl/ go (default: the repository)")
    args = p.parse_args(argv)
    shared, dest = Path(args.shared), Path(args.dest)
    videos, photos = shared / "videos", shared / "photos"
    try:
        for folder in (videos, photos):
            if not folder.is_dir():
                raise InputError(f"{folder}: no such folder")
        data, wheels = dest / "data", dest / ".whl"
        shutil.rmtree(data, ignore_errors=True)
        clips = training_files(videos)
        copy_files(clips, data / "clips")
        copy_files(sorted(q for q in photos.iterdir() if q.suffix.lower() in PHOTO_SUFFIXES),
                   data / "photos")
        val = write_validation(videos, validation_names(), args.val_frames, data / "val")
        if not args.no_wheels:
            shutil.rmtree(wheels, ignore_errors=True)
            download_wheels(wheels)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    sizes = {"tree": tree_bytes(), "data": folder_bytes(data),
             ".whl": folder_bytes(wheels) if wheels.is_dir() else 0}
    total = sum(sizes.values())
    print(f"training clips: {', '.join(c.name for c in clips)}")
    print(f"validation: {', '.join(v.name for v in val)}")
    print("MiB: " + ", ".join(f"{k} {v / 2 ** 20:.1f}" for k, v in sizes.items())
          + f"; {total / 2 ** 20:.1f} of the {CARRY_LIMIT_BYTES >> 20} a call carries")
    if total > CARRY_LIMIT_BYTES:
        print("error: too large to carry; leave some clips out of data/clips", file=sys.stderr)
        return 2
    print('then: run(command="bash train/device.sh start", carry=[".whl", "data"])')
    return 0


if __name__ == "__main__":
    sys.exit(main())
