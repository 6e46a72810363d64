"""DataModules: Vimeo-90k septuplets, any folder of videos / .yuv files, and the offline default
(synthetic motion over natural still images). Every sample is float32 (T, 3, H, W) in [0, 1]."""
from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from nvc.io import read_video, yuv_to_rgb
from nvc.synthetic import natural_images, render_clip

log = logging.getLogger(__name__)
VIDEO_SUFFIXES = {".yuv", ".y4m", ".mp4", ".mkv", ".avi", ".mov", ".264", ".h264", ".265", ".hevc",
                  ".webm"}


def _augment(clip: np.ndarray, crop: int, rng: np.random.Generator) -> torch.Tensor:
    """clip: (T, H, W, 3) uint8 -> random crop and flips -> (T, 3, crop, crop) float."""
    t, h, w, _ = clip.shape
    y0, x0 = rng.integers(0, h - crop + 1), rng.integers(0, w - crop + 1)
    c = clip[:, y0: y0 + crop, x0: x0 + crop]
    if rng.random() < 0.5:
        c = c[:, :, ::-1]
    if rng.random() < 0.5:
        c = c[::-1]  # time reversal is as natural as forward motion
    return torch.from_numpy(np.ascontiguousarray(c)).permute(0, 3, 1, 2).float() / 255


class VideoClips(Dataset):
    """Random windows of `frames` consecutive frames from decoded videos held in memory."""

    def __init__(self, videos: list[np.ndarray], frames: int, crop: int, length: int, seed: int = 0):
        self.videos = [v for v in videos if v.shape[0] >= frames and min(v.shape[1:3]) >= crop]
        if not self.videos:
            raise ValueError(f"no video has {frames} frames of at least {crop}x{crop}")
        self.frames, self.crop, self.length, self.seed = frames, crop, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, index, torch.initial_seed() % 2**31))
        v = self.videos[rng.integers(len(self.videos))]
        step = int(rng.integers(1, 3))
        span = (self.frames - 1) * step + 1
        if span > v.shape[0]:
            step, span = 1, self.frames
        t0 = rng.integers(0, v.shape[0] - span + 1)
        return _augment(v[t0: t0 + span: step], self.crop, rng)


class SyntheticClips(Dataset):
    """The offline default: camera and object motion over scikit-image's photographs."""

    def __init__(self, frames: int, crop: int, length: int, seed: int = 0):
        self.images = natural_images()
        self.frames, self.crop, self.length, self.seed = frames, crop, length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng((self.seed, index, torch.initial_seed() % 2**31))
        bg, fg = rng.choice(len(self.images), 2, replace=False)
        clip = render_clip(self.images[bg], self.images[fg], self.frames, (self.crop, self.crop), rng)
        return torch.from_numpy(clip)


def load_video_arrays(paths: list[Path], max_frames: int, exclude: tuple[str, ...] = (),
                      downscale_above: int = 720) -> list[np.ndarray]:
    """Decode each video to uint8 RGB (T, H, W, 3); videos taller than `downscale_above` are also
    added at half size, so motion and texture statistics cover several scales."""
    out = []
    for p in paths:
        if any(e in p.name for e in exclude):
            continue
        try:
            v = read_video(p, frames=max_frames)
        except Exception as e:  # a bad file in a training folder is skipped, not fatal
            log.warning("skipping %s: %s", p, e)
            continue
        rgb = np.stack([np.round(yuv_to_rgb(f) * 255).astype(np.uint8) for f in v.frames])
        out.append(rgb)
        if rgb.shape[1] >= downscale_above:
            half = torch.nn.functional.avg_pool2d(
                torch.from_numpy(rgb).permute(0, 3, 1, 2).float(), 2)
            out.append(half.round().byte().permute(0, 2, 3, 1).numpy())
        log.info("loaded %s: %s", p.name, rgb.shape)
    return out


def list_videos(root: str | Path) -> list[Path]:
    root = Path(root)
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)


class _ClipDataModule(L.LightningDataModule):
    def __init__(self, frames: int = 3, crop: int = 128, batch_size: int = 8,
                 steps_per_epoch: int = 500, num_workers: int = 0, seed: int = 0):
        super().__init__()
        self.frames, self.crop, self.batch_size = frames, crop, batch_size
        self.steps_per_epoch, self.num_workers, self.seed = steps_per_epoch, num_workers, seed
        self.train_set: Dataset | None = None

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=False,
                          num_workers=self.num_workers, drop_last=True,
                          persistent_workers=self.num_workers > 0)

    @property
    def _length(self) -> int:
        return self.steps_per_epoch * self.batch_size


class SyntheticDataModule(_ClipDataModule):
    """Offline default: nothing to download."""

    def setup(self, stage: str | None = None) -> None:
        self.train_set = SyntheticClips(self.frames, self.crop, self._length, self.seed)


class VideoFolderDataModule(_ClipDataModule):
    """Any folder (or list of folders/files) of videos; optionally mixed with synthetic clips.

    `exclude` drops files whose name contains any of the strings (keep test clips out)."""

    def __init__(self, roots: list[str], exclude: list[str] | None = None, max_frames: int = 150,
                 synthetic_fraction: float = 0.25, **kwargs):
        super().__init__(**kwargs)
        self.roots, self.exclude = roots, tuple(exclude or ())
        self.max_frames, self.synthetic_fraction = max_frames, synthetic_fraction

    def setup(self, stage: str | None = None) -> None:
        paths = [p for r in self.roots for p in list_videos(r)]
        videos = load_video_arrays(paths, self.max_frames, self.exclude)
        n_syn = int(self._length * self.synthetic_fraction)
        parts: list[Dataset] = [VideoClips(videos, self.frames, self.crop, self._length - n_syn,
                                           self.seed)]
        if n_syn:
            parts.append(SyntheticClips(self.frames, self.crop, n_syn, self.seed + 1))
        self.train_set = _Interleave(parts)


class _Interleave(Dataset):
    """Concatenation visited in a fixed pseudo-random order, so every batch mixes the parts."""

    def __init__(self, parts: list[Dataset]):
        self.parts = parts
        sizes = [len(p) for p in parts]
        self.index = [(i, j) for i, n in enumerate(sizes) for j in range(n)]
        np.random.default_rng(0).shuffle(self.index)

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, k: int) -> torch.Tensor:
        i, j = self.index[k]
        return self.parts[i][j]


class Vimeo90kDataModule(_ClipDataModule):
    """Vimeo-90k septuplets: ROOT/sep_trainlist.txt and ROOT/sequences/XXXXX/YYYY/im1..im7.png."""

    def __init__(self, root: str, **kwargs):
        super().__init__(**kwargs)
        self.root = Path(root)

    def prepare_data(self) -> None:
        if not (self.root / "sep_trainlist.txt").exists():
            raise FileNotFoundError(f"{self.root}: no sep_trainlist.txt (Vimeo-90k septuplet layout)")

    def setup(self, stage: str | None = None) -> None:
        names = (self.root / "sep_trainlist.txt").read_text().split()
        self.train_set = VimeoSeptuplets(self.root / "sequences", names, self.frames, self.crop)


class VimeoSeptuplets(Dataset):
    def __init__(self, seq_root: Path, names: list[str], frames: int, crop: int):
        self.seq_root, self.names, self.frames, self.crop = seq_root, names, frames, crop

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        rng = np.random.default_rng((index, torch.initial_seed() % 2**31))
        t0 = rng.integers(0, 7 - self.frames + 1)
        folder = self.seq_root / self.names[index]
        clip = np.stack([np.asarray(Image.open(folder / f"im{t0 + k + 1}.png").convert("RGB"))
                         for k in range(self.frames)])
        return _augment(clip, self.crop, rng)
