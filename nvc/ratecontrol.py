"""A target bit rate (`nvc encode --bitrate`): the quality that codes the clip at that rate.

nvc codes a clip at one position on its quality ladder (a stream carries one quality map, not one a
GOP), so a target rate is met by choosing that position before coding: the clip's rate is probed at
a few qualities on up to PROBE_GOPS whole GOPs spread evenly through it (the whole clip where it is
no longer), and the quality whose probe meets the target is searched by the secant method on the
logarithm of the rate (which the ladder makes close to linear in the quality: each rung about
doubles the rate), to within TOLERANCE or MAX_PROBES probes. The clip's own rate then differs
from the probe's by how unlike the probed GOPs the rest of the clip is.
"""
from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from .bitstream import QUALITY_MAP_STEPS
from .roi import RATE_PER_RUNG  # the first secant's slope

PROBE_GOPS = 3
MAX_PROBES = 6
TOLERANCE = 0.02  # a probe within 2% of the target ends the search
STEP = 1 / QUALITY_MAP_STEPS  # qualities are coded in steps of a map's
START = 2.0

_RATE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([kKmM]?)")


def parse_bitrate(text: str) -> float:
    """Bits a second from '500k', '1.5M', '250000'; ValueError for anything else or <= 0."""
    m = _RATE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"a bit rate is a number of bits a second like 500k or 1.5M, got {text!r}")
    value = float(m.group(1)) * {"": 1, "k": 1e3, "m": 1e6}[m.group(2).lower()]
    if value <= 0:
        raise ValueError(f"a bit rate must be positive, got {text!r}")
    return value


def probe_frames(count: int, intra_period: int, gops: int = PROBE_GOPS) -> list[int]:
    """The frame indexes probed in a clip of `count` frames: up to `gops` whole GOPs (each
    starting at a multiple of `intra_period`, so they code as they would in the clip), spread
    evenly from its first GOP to its last; every frame where the clip has no more GOPs than that."""
    starts = range(0, count, intra_period)
    if len(starts) <= gops:
        return list(range(count))
    chosen = sorted({starts[round(j * (len(starts) - 1) / (gops - 1))] for j in range(gops)}) \
        if gops > 1 else [0]
    return [i for s in chosen for i in range(s, min(s + intra_period, count))]


@dataclass
class Search:
    """The probes made (quality -> bytes) and the quality chosen."""
    quality: float
    probes: dict[float, int] = field(default_factory=dict)

    @property
    def bytes(self) -> int:
        return self.probes[self.quality]


def find_quality(probe: Callable[[float], int], target_bytes: float, lowest: float,
                 highest: float) -> Search:
    """The quality in [lowest, highest] (in steps of STEP) whose `probe` (bytes at a quality,
    taken to grow with it) comes nearest `target_bytes` without passing it by more than TOLERANCE:
    the secant method on log bytes, kept inside the bracket once probes lie on both sides of the
    target. Where even `lowest` or `highest` misses the target, that end is chosen."""
    probes: dict[float, int] = {}
    goal, slope = math.log(target_bytes), math.log(RATE_PER_RUNG)

    def snap(q: float) -> float:
        return min(max(round(q / STEP) * STEP, lowest), highest)

    q = snap(START)
    for _ in range(MAX_PROBES):
        probes[q] = probe(q)
        if abs(probes[q] / target_bytes - 1) <= TOLERANCE:
            break
        below = [p for p in probes if probes[p] < target_bytes]
        above = [p for p in probes if probes[p] > target_bytes]
        if below and above:  # the secant between the bracket's ends, kept well inside it
            lo, hi = max(below), min(above)
            t = (goal - math.log(probes[lo])) / (math.log(probes[hi]) - math.log(probes[lo]))
            nxt = snap(lo + min(max(t, 0.1), 0.9) * (hi - lo))
        else:  # one side only: along the slope of the two probes nearest the target
            near = sorted(probes)[-2:] if below else sorted(probes)[:2]
            if len(near) == 2 and probes[near[1]] > probes[near[0]]:
                slope = (math.log(probes[near[1]]) - math.log(probes[near[0]])) / (near[1] - near[0])
            nxt = snap(q + (goal - math.log(probes[q])) / slope)
        if nxt in probes:  # the ladder's end, or a bracket one step wide
            break
        q = nxt
    under = [p for p in probes if probes[p] <= target_bytes * (1 + TOLERANCE)]
    return Search(max(under) if under else min(probes), probes)
