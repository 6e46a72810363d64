"""Where each frame of a GOP sits on the quality ladder (format 7).

Every P-frame is predicted from the one before it, so bits spent on the I-frame improve every frame of
its GOP, and bits spent on a P-frame near the GOP's end improve few. The schedule codes the I-frame at
the stream's quality (or at its quality map's positions) and P-frame k of the GOP (k = 1 ..
intra_period - 1) `drop` rungs lower, sinking `slope` rungs more by the GOP's last frame. Both are
kept in steps of 1 / QUALITY_MAP_STEPS of a rung, the unit the sequence header writes, so encoder and
decoder derive the same positions from integers. Positions never go below LADDER_BELOW rungs under
the first rung (where the model's gains stop).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .bitstream import QUALITY_MAP_STEPS
from .models.config import LADDER_BELOW

if TYPE_CHECKING:  # torch is imported where a frame is coded, not where the CLI parses options
    import torch
    from torch import Tensor

MAX_RUNGS = 255 / QUALITY_MAP_STEPS  # one byte each in the sequence header


@dataclass(frozen=True)
class GopSchedule:
    drop: int = 0  # in 1 / QUALITY_MAP_STEPS of a rung
    slope: int = 0

    @classmethod
    def from_rungs(cls, drop: float, slope: float) -> GopSchedule:
        """The schedule nearest to `drop` and `slope` rungs; ValueError outside 0 .. MAX_RUNGS."""
        if not all(0 <= v <= MAX_RUNGS for v in (drop, slope)):  # NaN fails too
            raise ValueError(f"a GOP schedule's drop and slope lie in 0 .. {MAX_RUNGS:g} rungs, "
                             f"got {drop:g},{slope:g}")
        return cls(round(drop * QUALITY_MAP_STEPS), round(slope * QUALITY_MAP_STEPS))

    @classmethod
    def parse(cls, text: str) -> GopSchedule:
        """'DROP,SLOPE' in rungs, e.g. '0.75,0.5' ('0.75' alone: no slope; '0': flat)."""
        try:
            values = [float(p) for p in text.split(",")]
        except ValueError:
            values = []
        if len(values) not in (1, 2):
            raise ValueError(f"a GOP schedule is DROP,SLOPE in rungs (e.g. 0.75,0.5), got {text!r}")
        return cls.from_rungs(values[0], values[1] if len(values) == 2 else 0.0)

    @property
    def flat(self) -> bool:
        return self.drop == 0 and self.slope == 0

    def rungs(self) -> tuple[float, float]:
        return self.drop / QUALITY_MAP_STEPS, self.slope / QUALITY_MAP_STEPS

    def offset_steps(self, index: int, intra_period: int) -> int:
        """How many steps below the I-frame frame `index` of the GOP (0 = the I-frame) is coded."""
        if index == 0:
            return 0
        return self.drop + self.slope * (index - 1) // max(intra_period - 2, 1)

    def frame_q(self, q: int | Tensor, index: int, intra_period: int,
                device: torch.device) -> int | Tensor:
        """The model's q for frame `index` of a GOP whose I-frame takes `q` (a quality index or a
        (1, 1, h, w) map of ladder positions): unchanged where the offset is 0, else positions."""
        steps = self.offset_steps(index, intra_period)
        if steps == 0:
            return q
        import torch

        pos = torch.full((1, 1, 1, 1), float(q), device=device) if isinstance(q, int) else q
        return (pos - steps / QUALITY_MAP_STEPS).clamp(min=-LADDER_BELOW)


FLAT = GopSchedule()
# Chosen on the training clips (box, cup, vtest; benchmarks/RESULTS.md, "A quality schedule over the
# GOP"), measured on the evaluation clips.
DEFAULT_SCHEDULE = GopSchedule.from_rungs(0.75, 0.5)
