"""DataModules: Vimeo-90k septuplets, any folder of videos / .yuv files, natural photographs and
the offline default (synthetic motion over natural still images). Every training sample is float32
(T, 3, H, W) in [0, 1].

Fresh samples every step: a `FreshSampler` hands each draw a sample id that is new in every epoch
and on every process (rank), and each dataset seeds its generator from (seed, sample id) alone, so
two epochs never replay the same crops and DataLoader workers never draw the same ones.
"""
from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nvc.errors import ConfigError, InputError
from nvc.io import RAW_SUFFIXES, VIDEO_SUFFIXES, Y4M_SUFFIX, read_video, yuv_to_rgb
from nvc.models.config import ModelConfig
from nvc.synthetic import natural_images, render_clip

log = logging.getLogger(__name__)
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
CROP_MULTIPLE = ModelConfig().multiple  # training crops go through the codec unpadded
# ../shared/videos/MANIFEST.md: clips reserved for evaluation (never trained on, any frame).
EVALUATION_CLIPS = ("BasketballPass", "BasketballDrill", "RaceHorses", "foreman", "carphone",
                    "CiscoVT2people", "mobile")


class FreshSampler(Sampler[int]):
    """Sample ids epoch-, rank- and position-unique: ((epoch * world) + rank) * length + i.

    Lightning calls `set_epoch` before every epoch. Under DDP use it with
    `trainer.use_distributed_sampler: false`: it already splits the draws between ranks."""

    def __init__(self, length: int):
        self.length, self.epoch = length, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[int]:
        rank, world = 0, 1
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
        base = (self.epoch * world + rank) * self.length
        return iter(range(base, base + self.length))


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


class _Drawn(Dataset):
    """A dataset indexed by sample id: `length` draws per epoch, each seeded by (seed, id)."""

    def __init__(self, length: int, seed: int):
        self.length, self.seed = length, seed

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, sample_id: int) -> torch.Tensor:
        return self.draw(np.random.default_rng((self.seed, sample_id)))

    def draw(self, rng: np.random.Generator) -> torch.Tensor:
        raise NotImplementedError


class VideoClips(_Drawn):
    """Random windows of `frames` frames (stride 1 or 2) from decoded videos held in memory."""

    def __init__(self, videos: list[np.ndarray], frames: int, crop: int, length: int, seed: int = 0):
        super().__init__(length, seed)
        self.videos = [v for v in videos if v.shape[0] >= frames and min(v.shape[1:3]) >= crop]
        if not self.videos:
            raise ValueError(f"no video has {frames} frames of at least {crop}x{crop}")
        self.frames, self.crop = frames, crop

    def draw(self, rng: np.random.Generator) -> torch.Tensor:
        v = self.videos[rng.integers(len(self.videos))]
        step = int(rng.integers(1, 3))
        span = (self.frames - 1) * step + 1
        if span > v.shape[0]:
            step, span = 1, self.frames
        t0 = rng.integers(0, v.shape[0] - span + 1)
        return _augment(v[t0: t0 + span: step], self.crop, rng)


class SyntheticClips(_Drawn):
    """Camera and object motion over still photographs (scikit-image's, plus `images`)."""

    def __init__(self, frames: int, crop: int, length: int, seed: int = 0,
                 images: list[np.ndarray] | None = None):
        super().__init__(length, seed)
        self.images = natural_images() + list(images or [])
        self.frames, self.crop = frames, crop

    def draw(self, rng: np.random.Generator) -> torch.Tensor:
        bg, fg = rng.choice(len(self.images), 2, replace=False)
        clip = render_clip(self.images[bg], self.images[fg], self.frames, (self.crop, self.crop), rng)
        return torch.from_numpy(clip)


class Mixture(_Drawn):
    """Each draw comes from one part, picked with probability `weights` (every batch mixes them)."""

    def __init__(self, parts: list[_Drawn], weights: list[float], length: int, seed: int = 0):
        super().__init__(length, seed)
        self.parts = parts
        self.p = np.asarray(weights, dtype=np.float64) / np.sum(weights)

    def __getitem__(self, sample_id: int) -> torch.Tensor:
        part = self.parts[np.random.default_rng((self.seed, sample_id)).choice(len(self.parts),
                                                                               p=self.p)]
        return part[sample_id]


def load_photos(roots: list[str | Path], max_side: int = 1280) -> list[np.ndarray]:
    """Every photograph under `roots` as float32 (H, W, 3) in [0, 1], longer side <= max_side."""
    from PIL import Image

    out = []
    for root in roots:
        root = Path(root)
        paths = [root] if root.is_file() else sorted(
            p for p in root.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES)
        for p in paths:
            img = Image.open(p).convert("RGB")
            img.thumbnail((max_side, max_side))
            out.append(np.asarray(img, dtype=np.float32) / 255)
    log.info("loaded %d photographs", len(out))
    return out


def read_rgb(path: Path, max_frames: int) -> np.ndarray:
    """The first `max_frames` frames as uint8 RGB (T, H, W, 3). Containers (mp4, avi, .264) need
    PyAV; where it is missing (the lent GPU machine has OpenCV but not PyAV), OpenCV's FFmpeg
    decodes them, with its own YUV -> RGB conversion: good for training material, not for
    measurements."""
    if path.suffix.lower() in RAW_SUFFIXES | {Y4M_SUFFIX} or importlib.util.find_spec("av"):
        v = read_video(path, frames=max_frames)
        return np.stack([np.round(yuv_to_rgb(f) * 255).astype(np.uint8) for f in v.frames])
    try:
        import cv2
    except ImportError:
        raise InputError(f"{path}: decoding it needs PyAV or OpenCV, and neither is installed") from None
    capture, frames = cv2.VideoCapture(str(path)), []
    try:
        while len(frames) < max_frames:
            ok, bgr = capture.read()
            if not ok:
                break
            frames.append(bgr[..., ::-1])
    finally:
        capture.release()
    if not frames:
        raise InputError(f"{path}: OpenCV decoded no frames")
    return np.ascontiguousarray(np.stack(frames))


def load_video_arrays(paths: list[Path], max_frames: int, exclude: tuple[str, ...] = (),
                      downscale_above: int = 720) -> list[np.ndarray]:
    """Decode each video to uint8 RGB (T, H, W, 3); videos taller than `downscale_above` are also
    added at half size, so motion and texture statistics cover several scales."""
    out = []
    for p in paths:
        if any(e in p.name for e in exclude):
            continue
        try:
            rgb = read_rgb(p, max_frames)
        except Exception as e:  # a bad file in a training folder is skipped, not fatal
            log.warning("skipping %s: %s", p, e)
            continue
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


class ValidationClips(Dataset):
    """The first `frames` frames of each named clip, whole, as float32 (T, 3, H, W) in [0, 1]."""

    def __init__(self, roots: list[str], names: list[str], frames: int = 12):
        paths = [p for r in roots for p in list_videos(r) if any(n in p.name for n in names)]
        self.clips = [torch.from_numpy(a).permute(0, 3, 1, 2).float() / 255
                      for a in load_video_arrays(paths, frames, downscale_above=1 << 30)]
        self.names = [p.name for p in paths]
        log.info("validation: %d clips", len(self.clips))

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.clips[index]


class _ClipDataModule(L.LightningDataModule):
    """Training draws of `frames` x `crop` x `crop`; optionally a validation set of whole clips."""

    def __init__(self, frames: int = 3, crop: int = 128, batch_size: int = 8,
                 steps_per_epoch: int = 500, num_workers: int = 0, seed: int = 0,
                 val_roots: list[str] | None = None, val_clips: list[str] | None = None,
                 val_frames: int = 12):
        super().__init__()
        if crop <= 0 or crop % CROP_MULTIPLE:
            raise ConfigError(f"crop must be a positive multiple of {CROP_MULTIPLE}, got {crop}")
        for name, value in (("frames", frames), ("batch_size", batch_size),
                            ("steps_per_epoch", steps_per_epoch), ("val_frames", val_frames)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        self.frames, self.crop, self.batch_size = frames, crop, batch_size
        self.steps_per_epoch, self.num_workers, self.seed = steps_per_epoch, num_workers, seed
        self.val_roots, self.val_clips, self.val_frames = val_roots, val_clips, val_frames
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.batch_size,
                          sampler=FreshSampler(self._length), num_workers=self.num_workers,
                          drop_last=True, persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> list | DataLoader:
        if not self.val_roots:
            return []
        if self.val_set is None:
            self.val_set = ValidationClips(self.val_roots, self.val_clips or list(EVALUATION_CLIPS),
                                           self.val_frames)
        return DataLoader(self.val_set, batch_size=1)

    @property
    def _length(self) -> int:
        return self.steps_per_epoch * self.batch_size


class SyntheticDataModule(_ClipDataModule):
    """Offline default: nothing to download; `photo_roots` adds photographs to draw motion over."""

    def __init__(self, photo_roots: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.photo_roots = photo_roots or []

    def setup(self, stage: str | None = None) -> None:
        self.train_set = SyntheticClips(self.frames, self.crop, self._length, self.seed,
                                        load_photos(self.photo_roots))


class VideoFolderDataModule(_ClipDataModule):
    """Any folder (or list of folders/files) of videos, mixed with synthetic motion over
    photographs (`photo_roots`, plus scikit-image's) in the proportion `synthetic_fraction`.

    `exclude` drops files whose name contains any of the strings (keep evaluation clips out);
    videos at least `downscale_above` rows tall are also drawn from at half size."""

    def __init__(self, roots: list[str], exclude: list[str] | None = None, max_frames: int = 150,
                 synthetic_fraction: float = 0.25, photo_roots: list[str] | None = None,
                 downscale_above: int = 720, **kwargs):
        super().__init__(**kwargs)
        self.roots, self.exclude = roots, tuple(exclude or ())
        self.max_frames, self.synthetic_fraction = max_frames, synthetic_fraction
        self.downscale_above = downscale_above
        self.photo_roots = photo_roots or []

    def setup(self, stage: str | None = None) -> None:
        if stage not in (None, "fit"):
            return
        paths = [p for r in self.roots for p in list_videos(r)]
        videos = load_video_arrays(paths, self.max_frames, self.exclude, self.downscale_above)
        clips = VideoClips(videos, self.frames, self.crop, self._length, self.seed)
        if self.synthetic_fraction <= 0:
            self.train_set = clips
            return
        synthetic = SyntheticClips(self.frames, self.crop, self._length, self.seed + 1,
                                   load_photos(self.photo_roots))
        self.train_set = Mixture([clips, synthetic],
                                 [1 - self.synthetic_fraction, self.synthetic_fraction],
                                 self._length, self.seed + 2)


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
        self.train_set = VimeoSeptuplets(self.root / "sequences", names, self.frames, self.crop,
                                         self._length, self.seed)


class VimeoSeptuplets(_Drawn):
    def __init__(self, seq_root: Path, names: list[str], frames: int, crop: int, length: int,
                 seed: int = 0):
        super().__init__(length, seed)
        self.seq_root, self.names, self.frames, self.crop = seq_root, names, frames, crop

    def draw(self, rng: np.random.Generator) -> torch.Tensor:
        from PIL import Image

        folder = self.seq_root / self.names[rng.integers(len(self.names))]
        t0 = rng.integers(0, 7 - self.frames + 1)
        clip = np.stack([np.asarray(Image.open(folder / f"im{t0 + k + 1}.png").convert("RGB"))
                         for k in range(self.frames)])
        return _augment(clip, self.crop, rng)
