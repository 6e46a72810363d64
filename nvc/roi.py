"""Regions of interest: a per-pixel importance map for the adaptation objective, a quality map for
the coder, and ROI metrics.

A mask is an image (one map for the whole clip) or a video (one map per frame), white = important.
`pixel_weights` turns it into the weights of the weighted MSE, 1 in the background and `roi_weight`
in the region, scaled so that every frame's weights average 1 (weighted and plain MSE then share a
scale, and so do the lambdas of the rate points).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .bitstream import QUALITY_MAP_STEPS, QualityMap
from .errors import InputError
from .metrics import psnr_from_mse
from .models.config import LADDER_BELOW
from .schedule import GopSchedule, resolve

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
ROI_THRESHOLD = 0.5  # mask values above this are the region for ROI-PSNR


class FrameMaps:
    """(frames, H, W) float32 maps made one frame at a time by `frame(i)` (a mask video, the task
    model's gradient maps), so that a clip's maps are never held: what the region code uses of an
    array (which it still takes), a frame by index, `shape`, `len`, iteration and the mean over
    frames."""

    ndim = 3

    def __init__(self, count: int, height: int, width: int, frame: Callable[[int], np.ndarray]):
        self.shape, self.frame = (count, height, width), frame

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index: int) -> np.ndarray:
        if not isinstance(index, (int, np.integer)) or not 0 <= index < len(self):
            raise IndexError(index)
        return self.frame(int(index))

    def __iter__(self) -> Iterator[np.ndarray]:
        return map(self.frame, range(len(self)))

    def mean(self, axis: int = 0) -> np.ndarray:
        if axis != 0:
            raise ValueError("FrameMaps.mean: over the frames only")
        total = np.zeros(self.shape[1:], np.float64)
        for m in self:
            total += m
        return (total / len(self)).astype(np.float32)

    def map(self, fn: Callable[[np.ndarray], np.ndarray]) -> FrameMaps:
        """These maps with `fn` applied to each frame as it is made."""
        return FrameMaps(*self.shape, lambda i: fn(self.frame(i)))

    @classmethod
    def spooled(cls, maps: Iterable[np.ndarray], height: int, width: int) -> FrameMaps:
        """Maps made once (each (height, width)), kept as float32 in an unnamed temporary file
        (TMPDIR) instead of in memory."""
        from .io import spool

        size = height * width * 4
        spooled, count = spool((np.ascontiguousarray(m, np.float32).tobytes() for m in maps),
                               f"the maps ({size / 2**20:.1f} MiB a frame)")
        return cls(count, height, width, lambda i: np.frombuffer(
            os.pread(spooled.fileno(), size, i * size), np.float32).reshape(height, width))


Masks = np.ndarray | FrameMaps


def load_mask(path: str | Path, frames: int, width: int, height: int) -> Masks:
    """(frames, height, width) float32 in [0, 1], resized to the clip's frame size (read-only): an
    image's one map broadcast to every frame, or a video's read a frame at a time (FrameMaps)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such mask file")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        from PIL import Image, UnidentifiedImageError

        try:  # a picture of more than twice PIL's MAX_IMAGE_PIXELS (89 M) is refused as a bomb
            img = Image.open(path).convert("L").resize((width, height), Image.Resampling.BILINEAR)
        except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
            raise InputError(f"{path}: cannot read the mask image ({e})") from None
        # one map for every frame: a read-only view, not `frames` copies (4.6 GiB for 600 of 1080p)
        return np.broadcast_to((np.asarray(img, np.float32) / 255)[None], (frames, height, width))
    from .io import random_access, read_video

    video = random_access(read_video(path, frames=frames, lazy=True))
    if len(video.frames) < frames:
        raise InputError(f"{path}: the mask video has {len(video.frames)} frames, the clip {frames}")

    def frame(index: int) -> np.ndarray:
        luma = np.clip((video.frames[index].y.astype(np.float32) - 16) / 219, 0, 1)
        if luma.shape != (height, width):
            from PIL import Image

            luma = np.asarray(Image.fromarray(luma).resize((width, height), Image.Resampling.BILINEAR))
        return luma.astype(np.float32)
    return FrameMaps(frames, height, width, frame)


def pixel_weights(mask: Masks, roi_weight: float) -> Masks:
    """Weights (frames, H, W): 1 + (roi_weight - 1) * mask, each frame scaled to mean 1."""
    if roi_weight <= 0:
        raise InputError(f"--roi-weight must be positive, got {roi_weight}")
    if isinstance(mask, FrameMaps):  # weighed a frame at a time, as the maps are made
        return mask.map(lambda m: _weighed(m[None], roi_weight)[0])
    if mask.ndim == 3 and mask.shape[0] > 1 and mask.strides[0] == 0:
        # one map for every frame (load_mask's image): weighed once, broadcast as the mask is
        return np.broadcast_to(_weighed(np.ascontiguousarray(mask[:1]), roi_weight), mask.shape)
    return _weighed(mask, roi_weight)


def _weighed(mask: np.ndarray, roi_weight: float) -> np.ndarray:
    w = 1 + (roi_weight - 1) * mask
    return (w / w.mean(axis=(1, 2), keepdims=True)).astype(np.float32)


class RegionScores:
    """PSNR (RGB, peak 1) inside the region (mask > ROI_THRESHOLD) and outside it, over the clip,
    gathered one frame at a time (`add`); None where a part is empty."""

    PARTS = ("roi_psnr_db", "background_psnr_db")

    def __init__(self) -> None:
        self.squared = dict.fromkeys(self.PARTS, 0.0)
        self.count = dict.fromkeys(self.PARTS, 0)

    def add(self, source: np.ndarray, decoded: np.ndarray, mask: np.ndarray) -> None:
        """One frame: RGB (H, W, 3) source and reconstruction, the mask (H, W)."""
        inside = mask > ROI_THRESHOLD
        for name, sel in zip(self.PARTS, (inside, ~inside)):
            err = np.asarray(source[sel], np.float64) - decoded[sel]
            self.squared[name] += float(np.sum(err * err))
            self.count[name] += err.size

    def result(self) -> dict[str, float | None]:
        return {name: psnr_from_mse(self.squared[name] / self.count[name])
                if self.count[name] else None for name in self.PARTS}


def region_psnr_db(source: list[np.ndarray], decoded: list[np.ndarray], mask: Masks
                   ) -> dict[str, float | None]:
    """RegionScores of a clip held whole."""
    scores = RegionScores()
    for s, d, m in zip(source, decoded, mask):
        scores.add(s, d, m)
    return scores.result()


# How much the rate grows from one rung of the shipped ladder to the next (ssf-small-v5 on
# BasketballPass, 12 frames: x2.0, x1.9, x1.7), for keeping a quality map's file near its quality's.
RATE_PER_RUNG = 1.87
# The map value of quality 1 in the maps nvc writes: positions down to LADDER_BELOW rungs under it.
MAP_ORIGIN = round(LADDER_BELOW * QUALITY_MAP_STEPS)


def quality_map(mask: Masks, quality: float, boost: float, qualities: int,
                padded_hw: tuple[int, int], cell: int = 16) -> QualityMap:
    """Spatial bit allocation from a mask (frames, H, W): the clip's mean mask, pooled to the latent
    grid of the padded frame (`cell` pixels a side), moves each position on the quality ladder:
    +boost where the mask is 1, and the background down by what keeps the expected size at
    `quality`'s (rate taken to grow RATE_PER_RUNG-fold a rung), from the top rung down to
    LADDER_BELOW rungs below the first (below that the background cannot pay, and the file
    grows)."""
    m = mask.mean(axis=0)
    ph, pw = padded_hw
    m = np.pad(m, ((0, ph - m.shape[0]), (0, pw - m.shape[1])), mode="edge")
    m = m.reshape(ph // cell, cell, pw // cell, cell).mean(axis=(1, 3)).astype(np.float64)
    base = float(quality - 1)
    m = m - m.min()  # cells as covered as the least covered one are background (a flat mask: none)

    def positions(drop: float) -> np.ndarray:
        return np.clip(base + boost * m - drop * (1 - m), -LADDER_BELOW, qualities - 1)

    lo, hi = 0.0, qualities + LADDER_BELOW  # the background's drop, found by bisection
    for _ in range(40):
        mid = (lo + hi) / 2
        if (RATE_PER_RUNG ** (positions(mid) - base)).mean() > 1:
            lo = mid
        else:
            hi = mid
    values = np.round(positions(hi) * QUALITY_MAP_STEPS + MAP_ORIGIN).astype(np.uint8)
    return QualityMap(m.shape[0], m.shape[1], values.tobytes(), MAP_ORIGIN)


def uniform_quality_map(position: float, padded_hw: tuple[int, int], cell: int = 16
                        ) -> QualityMap:
    """The whole frame at one ladder position (0 = quality 1; fractional positions interpolate the
    gains between rungs), in steps of 1 / QUALITY_MAP_STEPS of a rung."""
    value = round(position * QUALITY_MAP_STEPS) + MAP_ORIGIN
    if not 0 <= value <= 255:
        raise ValueError(f"ladder position {position} lies outside the map's range")
    grid = (padded_hw[0] // cell, padded_hw[1] // cell)
    return QualityMap(grid[0], grid[1], bytes([value]) * (grid[0] * grid[1]), MAP_ORIGIN)


class RatePoint(NamedTuple):
    """What the encoder takes for a --quality (its keyword arguments: `._asdict()`)."""
    quality: int  # the rung the header names
    qmap: QualityMap | None
    schedule: GopSchedule


def rate_point(quality: float, qualities: int, padded_hw: tuple[int, int], intra_period: int,
               schedule: GopSchedule | None = None) -> RatePoint:
    """Where a --quality codes. A rung 1 .. `qualities` codes as it always has, with no map; any
    other quality from 1 - LADDER_BELOW up codes at its own ladder position under a uniform map
    (the gains interpolated between the rungs, extrapolated below the first), the header naming
    the nearest rung; `schedule`, or the default GOP schedule at the quality itself (in GOPs of
    `intra_period` frames)."""
    if not 1 - LADDER_BELOW <= quality <= qualities:  # NaN fails too
        raise InputError(f"quality must lie in {1 - LADDER_BELOW:g}..{qualities} (fractions lie "
                         f"between the rungs, below 1 the ladder goes on), got {quality:g}")
    schedule = resolve(schedule, quality, qualities, intra_period)
    if quality == int(quality) and quality >= 1:
        return RatePoint(int(quality), None, schedule)
    return RatePoint(min(max(round(quality), 1), qualities),
                     uniform_quality_map(quality - 1, padded_hw), schedule)


def uniform_position(qm: QualityMap, otherwise: float) -> float:
    """The one ladder position every cell of `qm` holds (a quality between the rungs codes under
    such a map), or `otherwise` for a map that varies (a region's)."""
    values = np.frombuffer(qm.values, np.uint8)
    if values.size and (values == values[0]).all():
        return (int(values[0]) - qm.origin) / QUALITY_MAP_STEPS
    return otherwise


def shifted_quality_map(qm: QualityMap, delta: float, qualities: int) -> QualityMap:
    """`qm` moved `delta` rungs along the ladder, each position kept between LADDER_BELOW rungs
    below the first (or what the map's origin can write) and the top rung."""
    values = np.frombuffer(qm.values, np.uint8).astype(np.int64) + round(delta * QUALITY_MAP_STEPS)
    lowest = max(qm.origin - round(LADDER_BELOW * QUALITY_MAP_STEPS), 0)
    highest = min(qm.origin + (qualities - 1) * QUALITY_MAP_STEPS, 255)
    return QualityMap(qm.height, qm.width, np.clip(values, lowest, highest).astype(np.uint8).tobytes(),
                      qm.origin)


def map_positions(qm: QualityMap) -> np.ndarray:
    """(height, width) float32 ladder positions, 0 = quality 1, negative below it."""
    values = np.frombuffer(qm.values, np.uint8).reshape(qm.height, qm.width).astype(np.float32)
    return (values - qm.origin) / QUALITY_MAP_STEPS
