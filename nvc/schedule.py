"""Where each frame of a GOP sits on the quality ladder (format 7).

Every P-frame is predicted from the one before it, so bits spent on the I-frame improve every frame of
its GOP, and bits spent on a P-frame near the GOP's end improve few. Relative to the stream's quality
(or its quality map's positions), the schedule codes the I-frame `lift` rungs higher (the model
stops at its top rung) and P-frame k of the GOP (k = 1 .. intra_period - 1) `drop` rungs lower,
sinking `slope` rungs more by the GOP's last frame. All three are kept in steps of
1 / QUALITY_MAP_STEPS of a rung, the unit the sequence header writes, so encoder and decoder derive
the same positions from integers. Positions never go below LADDER_BELOW rungs under the first rung
(where the model's gains stop).
"""
from __future__ import annotations

from dataclasses import astuple, dataclass
from typing import TYPE_CHECKING

from .bitstream import QUALITY_MAP_STEPS
from .models.config import LADDER_BELOW

if TYPE_CHECKING:  # torch is imported where a frame is coded, not where the CLI parses options
    import torch
    from torch import Tensor

MAX_RUNGS = 255 / QUALITY_MAP_STEPS  # one byte each in the sequence header
FIELDS = "LIFT,DROP,SLOPE"


@dataclass(frozen=True)
class GopSchedule:
    lift: int = 0  # in 1 / QUALITY_MAP_STEPS of a rung
    drop: int = 0
    slope: int = 0

    @classmethod
    def from_rungs(cls, lift: float, drop: float, slope: float) -> GopSchedule:
        """The schedule nearest to these rungs; ValueError outside 0 .. MAX_RUNGS."""
        values = (lift, drop, slope)
        if not all(0 <= v <= MAX_RUNGS for v in values):  # NaN fails too
            raise ValueError(f"a GOP schedule's {FIELDS} lie in 0 .. {MAX_RUNGS:g} rungs, got "
                             f"{','.join(f'{v:g}' for v in values)}")
        return cls(*(round(v * QUALITY_MAP_STEPS) for v in values))

    @classmethod
    def parse(cls, text: str) -> GopSchedule:
        """'LIFT,DROP,SLOPE' in rungs, e.g. '0.75,0,0.5'; '0' is flat."""
        try:
            values = [float(p) for p in text.split(",")]
        except ValueError:
            values = []
        if values == [0.0]:
            return FLAT
        if len(values) != 3:
            raise ValueError(f"a GOP schedule is {FIELDS} in rungs (e.g. 0.75,0,0.5) or 0, got "
                             f"{text!r}")
        return cls.from_rungs(*values)

    def rungs(self) -> tuple[float, ...]:
        return tuple(v / QUALITY_MAP_STEPS for v in astuple(self))

    def __str__(self) -> str:
        return ",".join(f"{v:g}" for v in self.rungs())

    def offset_steps(self, index: int, intra_period: int) -> int:
        """Frame `index` of the GOP (0 = the I-frame) sits this many steps above the quality."""
        if index == 0:
            return self.lift
        return -(self.drop + self.slope * (index - 1) // max(intra_period - 2, 1))

    def position(self, q: float, index: int, intra_period: int) -> float:
        """The ladder position of frame `index` of a GOP coded at position `q` (0 = quality 1),
        never below LADDER_BELOW rungs under the first rung."""
        return max(q + self.offset_steps(index, intra_period) / QUALITY_MAP_STEPS, -LADDER_BELOW)

    def frame_q(self, q: int | Tensor, index: int, intra_period: int,
                device: torch.device) -> int | Tensor:
        """The model's q for frame `index` of a GOP coded at `q` (a quality index or a (1, 1, h, w)
        map of ladder positions): unchanged where the offset is 0, else positions (the model clamps
        them to its top rung)."""
        steps = self.offset_steps(index, intra_period)
        if steps == 0:
            return q
        import torch

        if isinstance(q, int):
            return torch.full((1, 1, 1, 1), self.position(q, index, intra_period), device=device)
        return (q + steps / QUALITY_MAP_STEPS).clamp(min=-LADDER_BELOW)


FLAT = GopSchedule()
# The default: the first P-frame GAP rungs below the I-frame, the last SLOPE more, chosen on the
# training clips (box, cup, vtest; benchmarks/RESULTS.md, "A quality schedule over the GOP") and
# measured on the evaluation clips.
GAP, SLOPE = 0.75, 0.5


def default_schedule(quality: float, qualities: int) -> GopSchedule:
    """The default for `quality` of a ladder of `qualities` rungs: the same GAP and SLOPE at every
    rung; where the pair sits slides with the rung, from the I-frame at the quality (the P-frames
    below it) at quality 1 to the first P-frame at the quality (the I-frame above it) at the top,
    so that the ladder keeps its reach at both ends (the I-frame cannot rise above the top rung).
    A quality between rungs slides it in between; one below quality 1 keeps quality 1's."""
    gap = round(GAP * QUALITY_MAP_STEPS)
    lift = round(gap * max(quality - 1, 0) / max(qualities - 1, 1))
    return GopSchedule(lift, gap - lift, round(SLOPE * QUALITY_MAP_STEPS))


def resolve(schedule: GopSchedule | None, quality: int, qualities: int) -> GopSchedule:
    """`schedule`, or the default for `quality` where it is None."""
    return default_schedule(quality, qualities) if schedule is None else schedule
