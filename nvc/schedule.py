"""Where each frame of a GOP sits on the quality ladder (format 7; the cycle, format 11).

Every P-frame is predicted from the one before it, so bits spent on the I-frame improve every frame of
its GOP, and bits spent on a P-frame near the GOP's end improve few. Relative to the stream's quality
(or its quality map's positions), the schedule codes the I-frame `lift` rungs higher (the model
stops at its top rung) and P-frame k of the GOP (k = 1 .. intra_period - 1) `drop` rungs lower,
sinking `slope` rungs more by the GOP's last frame; a `cycle` (c_1 .. c_n) sinks P-frame k
c_((k - 1) mod n + 1) rungs more, so that every n-th P-frame, kept higher, refreshes the
references of the n - 1 after it (as the QP offsets of HEVC's low-delay configurations cycle).
All are kept in steps of 1 / QUALITY_MAP_STEPS of a rung, the unit the sequence header writes, so
encoder and decoder derive the same positions from integers. Positions never go below
LADDER_BELOW rungs under the first rung (where the model's gains stop).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .bitstream import MAX_GOP_CYCLE as MAX_CYCLE
from .bitstream import QUALITY_MAP_STEPS
from .models.config import LADDER_BELOW

if TYPE_CHECKING:  # torch is imported where a frame is coded, not where the CLI parses options
    import torch
    from torch import Tensor

    from .bitstream import SequenceHeader

MAX_RUNGS = 255 / QUALITY_MAP_STEPS  # one byte each in the sequence header
FIELDS = "LIFT,DROP,SLOPE[/CYCLE]"


@dataclass(frozen=True)
class GopSchedule:
    lift: int = 0  # in 1 / QUALITY_MAP_STEPS of a rung
    drop: int = 0
    slope: int = 0
    cycle: tuple[int, ...] = ()  # format 11: P-frame k sinks cycle[(k - 1) % len(cycle)] more

    @classmethod
    def from_rungs(cls, lift: float, drop: float, slope: float,
                   cycle: tuple[float, ...] = ()) -> GopSchedule:
        """The schedule nearest to these rungs; ValueError outside 0 .. MAX_RUNGS, or for a cycle
        of more than MAX_CYCLE P-frames."""
        values = (lift, drop, slope, *cycle)
        if not all(0 <= v <= MAX_RUNGS for v in values):  # NaN fails too
            raise ValueError(f"a GOP schedule's {FIELDS} lie in 0 .. {MAX_RUNGS:g} rungs, got "
                             f"{_text(values[:3], values[3:])}")
        if len(cycle) > MAX_CYCLE:
            raise ValueError(f"a GOP schedule's CYCLE has at most {MAX_CYCLE} P-frames, got "
                             f"{len(cycle)}")
        return cls(_steps(lift), _steps(drop), _steps(slope),
                   _no_flat_cycle(tuple(map(_steps, cycle))))

    @classmethod
    def parse(cls, text: str) -> GopSchedule:
        """'LIFT,DROP,SLOPE' in rungs, e.g. '0.75,0,0.5', optionally '/' and the cycle's rungs,
        e.g. '0.25,0.5,0.5/0.5,0.5,0.5,0'; '0' is flat."""
        head, cycled, tail = text.partition("/")
        try:
            values = [float(p) for p in head.split(",")]
            cycle = tuple(float(p) for p in tail.split(",")) if cycled else ()
        except ValueError:
            values, cycle = [], ()
        if values == [0.0] and not cycled:
            return FLAT
        if len(values) != 3:
            raise ValueError(f"a GOP schedule is {FIELDS} in rungs (e.g. 0.75,0,0.5 or "
                             f"0.25,0.5,0.5/0.5,0.5,0.5,0) or 0, got {text!r}")
        lift, drop, slope = values
        return cls.from_rungs(lift, drop, slope, cycle)

    def rungs(self) -> tuple[float, ...]:
        """LIFT, DROP, SLOPE in rungs (the cycle: `cycle_rungs`)."""
        return tuple(v / QUALITY_MAP_STEPS for v in (self.lift, self.drop, self.slope))

    def cycle_rungs(self) -> tuple[float, ...]:
        return tuple(v / QUALITY_MAP_STEPS for v in self.cycle)

    def __str__(self) -> str:
        return _text(self.rungs(), self.cycle_rungs())

    def offset_steps(self, index: int, intra_period: int) -> int:
        """Frame `index` of the GOP (0 = the I-frame) sits this many steps above the quality."""
        if index == 0:
            return self.lift
        cycled = self.cycle[(index - 1) % len(self.cycle)] if self.cycle else 0
        return -(self.drop + self.slope * (index - 1) // max(intra_period - 2, 1) + cycled)

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


def _text(values, cycle) -> str:
    return ",".join(f"{v:g}" for v in values) + ("/" + ",".join(f"{v:g}" for v in cycle)
                                                  if cycle else "")


def _steps(rungs: float) -> int:
    return round(rungs * QUALITY_MAP_STEPS)


def _no_flat_cycle(cycle: tuple[int, ...]) -> tuple[int, ...]:
    """A cycle of zeros moves nothing: the same schedule as none (and formats before 11 hold it)."""
    return cycle if any(cycle) else ()


FLAT = GopSchedule()
# The default: the first P-frame GAP rungs below the I-frame, the last SLOPE more, chosen on the
# training clips (box, cup, vtest; benchmarks/RESULTS.md, "A quality schedule over the GOP") and
# measured on the evaluation clips.
GAP, SLOPE = 0.75, 0.5
# and, in GOPs of CYCLE_FROM frames or more, the cycle over the P-frames (format 11), in rungs:
# chosen at 32 on the training clips (-2.9% BD-rate there, -1.7% on the evaluation clips); -1.3% at
# 24, -0.6% at 20 (+0.1% on the evaluation clips), +0.1% at 16, +1.6% at 12 (benchmarks/RESULTS.md,
# "A cycle over the P-frames")
CYCLE: tuple[float, ...] = (0.5, 0.5, 0.5, 0.0)
CYCLE_FROM = 24


def default_schedule(quality: float, qualities: int, intra_period: int) -> GopSchedule:
    """The default for `quality` of a ladder of `qualities` rungs in GOPs of `intra_period` frames:
    the same GAP and SLOPE at every rung; where the pair sits slides with the rung, from the
    I-frame at the quality (the P-frames below it) at quality 1 to the first P-frame at the quality
    (the I-frame above it) at the top, so that the ladder keeps its reach at both ends (the I-frame
    cannot rise above the top rung). A quality between rungs slides it in between; one below
    quality 1 keeps quality 1's. GOPs of CYCLE_FROM frames or more add the CYCLE."""
    gap = _steps(GAP)
    lift = round(gap * max(quality - 1, 0) / max(qualities - 1, 1))
    return GopSchedule(lift, gap - lift, _steps(SLOPE),
                       _no_flat_cycle(tuple(map(_steps, default_cycle(intra_period)))))


def default_cycle(intra_period: int) -> tuple[float, ...]:
    """The default cycle (in rungs) in GOPs of `intra_period` frames: CYCLE from CYCLE_FROM on."""
    return CYCLE if intra_period >= CYCLE_FROM else ()


def of_header(header: SequenceHeader) -> GopSchedule:
    """The schedule a sequence header records."""
    return GopSchedule(header.gop_lift, header.gop_drop, header.gop_slope, header.gop_cycle)


def header_fields(schedule: GopSchedule) -> dict:
    """The sequence header's fields that record `schedule` (SequenceHeader's keywords)."""
    return {"gop_lift": schedule.lift, "gop_drop": schedule.drop, "gop_slope": schedule.slope,
            "gop_cycle": schedule.cycle}


def resolve(schedule: GopSchedule | None, quality: float, qualities: int,
            intra_period: int) -> GopSchedule:
    """`schedule`, or the default for `quality` in GOPs of `intra_period` where it is None."""
    return default_schedule(quality, qualities, intra_period) if schedule is None else schedule
