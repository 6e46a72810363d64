"""Offline default content: natural photographs shipped in scikit-image, moved by synthetic camera
motion (pan, zoom, rotation) and a moving foreground object. Used by `nvc demo` and by training."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F

from .io import Video, rgb_to_yuv

# Colour photographs bundled inside the scikit-image wheel (no download).
SKIMAGE_PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
                  "hubble_deep_field", "retina", "cat")


def natural_images() -> list[np.ndarray]:
    """The bundled photographs as float32 (H, W, 3) arrays in [0, 1]."""
    import skimage.data

    return [getattr(skimage.data, name)()[..., :3].astype(np.float32) / 255
            for name in SKIMAGE_PHOTOS]


def _sample(img: torch.Tensor, centre: torch.Tensor, scale: float, angle: float,
            out_hw: tuple[int, int]) -> torch.Tensor:
    """Bilinear sample an out_hw window of img (3, H, W) centred at `centre` (px), zoomed, rotated."""
    _, h, w = img.shape
    oh, ow = out_hw
    ys, xs = torch.meshgrid(torch.arange(oh, dtype=torch.float32) - (oh - 1) / 2,
                            torch.arange(ow, dtype=torch.float32) - (ow - 1) / 2, indexing="ij")
    c, s = np.cos(angle), np.sin(angle)
    px = centre[0] + (c * xs - s * ys) / scale
    py = centre[1] + (s * xs + c * ys) / scale
    grid = torch.stack((2 * px / (w - 1) - 1, 2 * py / (h - 1) - 1), dim=-1)[None]
    return F.grid_sample(img[None], grid, mode="bilinear", padding_mode="reflection",
                         align_corners=True)[0]


def render_clip(background: np.ndarray, foreground: np.ndarray, frames: int,
                out_hw: tuple[int, int], rng: np.random.Generator,
                max_speed_px: float = 6.0) -> np.ndarray:
    """Returns float32 (frames, 3, H, W) in [0, 1]: a camera moving over `background` and an
    elliptical cut-out of `foreground` moving across it on its own path."""
    bg = torch.from_numpy(background).permute(2, 0, 1).contiguous()
    fg = torch.from_numpy(foreground).permute(2, 0, 1).contiguous()
    oh, ow = out_hw
    _, bh, bw = bg.shape
    min_zoom = max(oh / bh, ow / bw) * 1.2  # outputs larger than the photo magnify it
    zoom0 = rng.uniform(min_zoom, max(1.5, min_zoom * 1.25))
    cam_v = rng.uniform(-max_speed_px, max_speed_px, 2)
    zoom_rate = rng.uniform(-0.01, 0.01)
    spin = rng.uniform(-0.004, 0.004)
    centre = np.array([bw / 2, bh / 2]) + rng.uniform(-0.15, 0.15, 2) * np.array([bw, bh])
    obj_hw = (int(oh * rng.uniform(0.3, 0.6)), int(ow * rng.uniform(0.3, 0.6)))
    obj_pos = rng.uniform(0, 1, 2) * np.array([ow - obj_hw[1], oh - obj_hw[0]])
    obj_v = rng.uniform(-max_speed_px, max_speed_px, 2)
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, obj_hw[0]), torch.linspace(-1, 1, obj_hw[1]),
                            indexing="ij")
    mask = torch.sigmoid((1 - (xs ** 2 + ys ** 2)) * 12)[None]
    fg_centre = torch.tensor([fg.shape[2] / 2, fg.shape[1] / 2])
    out = []
    for t in range(frames):
        zoom = zoom0 * (1 + zoom_rate) ** t
        c = torch.tensor(centre + cam_v * t / zoom, dtype=torch.float32)
        frame = _sample(bg, c, zoom, spin * t, out_hw)
        obj = _sample(fg, fg_centre, 1.0, 0.0, obj_hw)
        x0, y0 = (obj_pos + obj_v * t).round().astype(int)
        frame = _paste(frame, obj, mask, x0, y0)
        out.append(frame)
    return torch.stack(out).clamp(0, 1).numpy()


def _paste(frame: torch.Tensor, obj: torch.Tensor, mask: torch.Tensor, x0: int, y0: int):
    _, h, w = frame.shape
    _, oh, ow = obj.shape
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x0 + ow, w), min(y0 + oh, h)
    if fx0 >= fx1 or fy0 >= fy1:
        return frame
    ox0, oy0 = fx0 - x0, fy0 - y0
    o = obj[:, oy0: oy0 + fy1 - fy0, ox0: ox0 + fx1 - fx0]
    m = mask[:, oy0: oy0 + fy1 - fy0, ox0: ox0 + fx1 - fx0]
    frame = frame.clone()
    frame[:, fy0:fy1, fx0:fx1] = m * o + (1 - m) * frame[:, fy0:fy1, fx0:fx1]
    return frame


def demo_clip(frames: int = 12, out_hw: tuple[int, int] = (240, 416), seed: int = 7) -> np.ndarray:
    """The embedded default clip of `nvc demo`: deterministic for a seed."""
    rng = np.random.default_rng(seed)
    images = natural_images()
    return render_clip(images[1], images[0], frames, out_hw, rng, max_speed_px=3.0)


def as_video(clip: np.ndarray, fps: Fraction = Fraction(25), source: str = "") -> Video:
    """A rendered (frames, 3, H, W) RGB clip as a 4:2:0 Video, the form every coder takes."""
    return Video([rgb_to_yuv(np.transpose(f, (1, 2, 0))) for f in clip], fps, source)
