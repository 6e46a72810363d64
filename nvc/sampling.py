"""y4m sample layouts other than 8-bit 4:2:0 (4:2:2, 4:4:4, 4:1:1, monochrome, 9-16 bits a sample,
an alpha plane), converted on reading to the 8-bit 4:2:0 samples nvc codes.

FFmpeg writes these when asked for y4m from a source that is not 8-bit 4:2:0 (`ffmpeg -i
prores.mov -f yuv4mpegpipe -` gives C422p10 with `-strict -1`, C422 without); x264 reads them too.
Each output sample is one rounding of the exact mean of the input samples it covers: chroma
averaged over the pairs (4:2:2 rows) or 2x2 blocks (4:4:4) that a 4:2:0 sample covers, the last
row / column repeated at odd sizes; 4:1:1 chroma repeated to double width, then its row pairs
averaged; monochrome given neutral chroma (128); more than 8 bits scaled down, halves rounded up;
alpha dropped.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Layout:
    """How a y4m frame's samples are laid out: the C tag, the chroma subsampling (x, y; None for
    monochrome), bits a sample (more than 8: two bytes, little-endian), and an alpha plane."""
    tag: str
    chroma: tuple[int, int] | None
    depth: int = 8
    alpha: bool = False

    @property
    def native(self) -> bool:
        """8-bit 4:2:0, what nvc codes: read as it is."""
        return self.chroma == (2, 2) and self.depth == 8 and not self.alpha

    @property
    def description(self) -> str:
        sub = {None: "monochrome", (2, 2): "4:2:0", (2, 1): "4:2:2", (1, 1): "4:4:4",
               (4, 1): "4:1:1"}[self.chroma]
        return f"{self.depth}-bit {sub}{' with alpha' if self.alpha else ''}"

    def _chroma_shape(self, w: int, h: int) -> tuple[int, int]:
        assert self.chroma is not None
        sx, sy = self.chroma
        return -(-h // sy), -(-w // sx)

    def frame_bytes(self, w: int, h: int) -> int:
        """The bytes of one frame of w x h."""
        samples = w * h * (2 if self.alpha else 1)
        if self.chroma is not None:
            ch, cw = self._chroma_shape(w, h)
            samples += 2 * ch * cw
        return samples * (1 if self.depth == 8 else 2)

    def to_420(self, data: bytes, w: int, h: int) -> bytes:
        """One frame's samples (`frame_bytes` of them) as 8-bit 4:2:0: luma, then U, then V."""
        a = np.frombuffer(data, np.uint8 if self.depth == 8 else np.dtype("<u2"))
        y, shape = a[: w * h].reshape(h, w), ((h + 1) // 2, (w + 1) // 2)
        planes = [_scaled(y.astype(np.int64), 1, self.depth)]
        if self.chroma is None:
            planes += [np.full(shape, 128, np.uint8)] * 2
        else:
            ch, cw = self._chroma_shape(w, h)
            for i in range(2):
                c = a[w * h + i * ch * cw: w * h + (i + 1) * ch * cw].reshape(ch, cw)
                planes.append(_to_half(c, self.chroma, shape, self.depth))
        return b"".join(p.tobytes() for p in planes)


NATIVE = Layout("420jpeg", (2, 2))
_SUBSAMPLING = {"420": (2, 2), "422": (2, 1), "444": (1, 1), "411": (4, 1), "mono": None}
_TAG = re.compile(r"(420|422|444|411|mono)(?:p?(9|1[0-6]))?(alpha)?")
_SITED_420 = {"420jpeg", "420paldv", "420mpeg2"}  # 8-bit 4:2:0, chroma sited differently


def layout(tag: str) -> Layout | None:
    """The layout a y4m C tag names (without its C): "420jpeg", "422", "444p10", "mono16",
    "444alpha"; None for one nvc cannot read."""
    if tag in _SITED_420:
        return Layout(tag, (2, 2))
    m = _TAG.fullmatch(tag)
    if m is None or (m.group(3) and m.group(1) != "444") or (m.group(3) and m.group(2)):
        return None  # alpha: FFmpeg writes it for 8-bit 4:4:4 only
    return Layout(tag, _SUBSAMPLING[m.group(1)], int(m.group(2) or 8), bool(m.group(3)))


_PIX_FMT = re.compile(r"yuv(420|422|444|411)p(?:(9|1[0-6])le)?|gray(?:(9|1[0-6])le)?|yuva444p")
# raw .yuv names: UVG's `Beauty_1920x1080_120fps_420_10bit_YUV.yuv`, `clip_1920x1080_10bit.yuv`
_NAME = re.compile(r"(?:_(420|422|444)(?=_))?_(8|9|1[0-6])bit(?=_|$)", re.IGNORECASE)


def pixel_format(name: str) -> Layout | None:
    """The layout of an FFmpeg pixel format name (`-pix_fmt`): "yuv420p", "yuv422p10le", "gray",
    "gray12le", "yuva444p"; None for one nvc cannot read (big-endian, packed, RGB)."""
    m = _PIX_FMT.fullmatch(name)
    if m is None:
        return None
    if name == "yuva444p":
        return layout("444alpha")
    if name.startswith("gray"):
        return layout("mono" + (m.group(3) or ""))
    return layout(m.group(1) + (f"p{m.group(2)}" if m.group(2) else ""))


def named_layout(stem: str) -> Layout | None:
    """The layout a raw file's name gives (`_420_10bit`, `_10bit`: 4:2:0 unless named), or None."""
    found = _NAME.findall(stem)
    if not found:
        return None
    sub, depth = found[-1]
    return layout((sub or "420") + (f"p{int(depth)}" if int(depth) > 8 else ""))


def _scaled(total: np.ndarray, count: int, depth: int) -> np.ndarray:
    """The 8-bit value of sums of `count` samples of `depth` bits: one rounding (halves up),
    clipped to 0..255."""
    divisor = count << (depth - 8)
    return np.minimum((total + divisor // 2) // divisor, 255).astype(np.uint8)


def _to_half(c: np.ndarray, sub: tuple[int, int], shape: tuple[int, int],
             depth: int) -> np.ndarray:
    """A chroma plane subsampled by `sub` (x, y) brought to 4:2:0's `shape` (rows, columns)."""
    c = c.astype(np.int64)
    count = 1
    for axis, (s, n) in enumerate(zip(reversed(sub), shape)):  # rows (y), then columns (x)
        if s == 4:  # 4:1:1 columns: each sample covers two of 4:2:0's
            c = np.repeat(c, 2, axis=axis)
        elif s == 1:  # full resolution: pairs summed, the last one repeated at an odd size
            if c.shape[axis] % 2:
                pad = [(0, 0), (0, 0)]
                pad[axis] = (0, 1)
                c = np.pad(c, pad, mode="edge")
            c = c.take(range(0, c.shape[axis], 2), axis) + c.take(range(1, c.shape[axis], 2), axis)
            count *= 2
        c = c.take(range(n), axis)
    return _scaled(c, count, depth)
