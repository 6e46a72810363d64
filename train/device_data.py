"""Training material held on the accelerator: decoded once, kept as uint8, and cut there.

The DataLoader only hands out sample ids (a few bytes a batch); `on_after_batch_transfer` turns them
into crops on the device: a random window of `frames` frames (stride 1 or 2) of a video, or an
integer-pixel pan over a photograph, a random crop and random flips. The card never waits for CPU
workers. Each sample's parameters come from (seed, sample id), as in train/data.py.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from .data import FreshSampler, VideoFolderDataModule, list_videos, load_photos, load_video_arrays


class _Ids(Dataset):
    def __init__(self, length: int):
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, sample_id: int) -> int:
        return sample_id


class DeviceCrops:
    """uint8 videos (T, H, W, 3) and photos (H, W, 3) on one device; `batch(ids)` cuts crops there."""

    def __init__(self, videos: list[np.ndarray], photos: list[np.ndarray], frames: int, crop: int,
                 photo_fraction: float, seed: int = 0, max_pan_px: int = 6):
        self.videos = [torch.from_numpy(v) for v in videos
                       if v.shape[0] >= frames and min(v.shape[1:3]) >= crop]
        span = crop + 2 * max_pan_px * (frames - 1)
        self.photos = [torch.from_numpy(np.round(p * 255).astype(np.uint8)) for p in photos
                       if min(p.shape[:2]) >= span]
        if not self.videos and not self.photos:
            raise ValueError(f"no video or photo is large enough for {frames} x {crop}x{crop}")
        self.frames, self.crop, self.seed, self.max_pan_px = frames, crop, seed, max_pan_px
        self.photo_fraction = photo_fraction if self.videos else 1.0
        if not self.photos:
            self.photo_fraction = 0.0
        self.device = torch.device("cpu")

    def to(self, device: torch.device) -> DeviceCrops:
        if device != self.device:
            self.videos = [v.to(device) for v in self.videos]
            self.photos = [p.to(device) for p in self.photos]
            self.device = device
        return self

    def _video_window(self, rng: np.random.Generator) -> Tensor:
        v = self.videos[rng.integers(len(self.videos))]
        step = int(rng.integers(1, 3))
        span = (self.frames - 1) * step + 1
        if span > v.shape[0]:
            step, span = 1, self.frames
        t0, (h, w) = int(rng.integers(0, v.shape[0] - span + 1)), v.shape[1:3]
        y0, x0 = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
        c = v[t0: t0 + span: step, y0: y0 + self.crop, x0: x0 + self.crop]
        return c.flip(0) if rng.random() < 0.5 else c  # time reversal

    def _photo_pan(self, rng: np.random.Generator) -> Tensor:
        p = self.photos[rng.integers(len(self.photos))]
        h, w = p.shape[:2]
        vy, vx = (int(v) for v in rng.integers(-self.max_pan_px, self.max_pan_px + 1, 2))
        reach_y, reach_x = abs(vy) * (self.frames - 1), abs(vx) * (self.frames - 1)
        y0 = int(rng.integers(0, h - self.crop - reach_y + 1)) + (reach_y if vy < 0 else 0)
        x0 = int(rng.integers(0, w - self.crop - reach_x + 1)) + (reach_x if vx < 0 else 0)
        return torch.stack([p[y0 + vy * t: y0 + vy * t + self.crop,
                              x0 + vx * t: x0 + vx * t + self.crop] for t in range(self.frames)])

    def batch(self, ids: Tensor) -> Tensor:
        """ids: (B,) sample ids -> (B, frames, 3, crop, crop) float32 in [0, 1] on the device."""
        out = []
        for sample_id in ids.tolist():
            rng = np.random.default_rng((self.seed, sample_id))
            c = self._photo_pan(rng) if rng.random() < self.photo_fraction else self._video_window(rng)
            if rng.random() < 0.5:
                c = c.flip(2)  # horizontal flip: (T, H, W, 3)
            out.append(c)
        return torch.stack(out).permute(0, 1, 4, 2, 3).float().div_(255)


class DeviceVideoDataModule(VideoFolderDataModule):
    """VideoFolderDataModule whose material lives on the training device (see the module doc).
    `synthetic_fraction` is the share of photo pans."""

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit"):
            return
        paths = [p for r in self.roots for p in list_videos(r)]
        self.crops = DeviceCrops(load_video_arrays(paths, self.max_frames, self.exclude),
                                 load_photos(self.photo_roots), self.frames, self.crop,
                                 self.synthetic_fraction, self.seed)
        self.train_set = _Ids(self._length)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size,
                          sampler=FreshSampler(self._length), drop_last=True)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, Tensor) and batch.ndim == 1:  # sample ids, not a validation clip
            return self.crops.to(batch.device).batch(batch)
        return batch
