"""What refinement needs in memory on the CPU, and what the machine has: an encoder that cannot
hold one refinement of a frame says so in one line before it starts (not the kernel's kill,
an hour in), and refines a P-frame and its intra trial side by side only where both fit.

The figures are peak RSS measured with /usr/bin/time on this project's CPU (`nvc encode --refine 1`,
street's first two frames at 1920x1080 and scaled to 3840x2160, candidates coded in turn): the
process with the model, and what one refinement adds per padded pixel for the synthesis activations
its backward pass keeps, in float32 and in bfloat16 steps (benchmarks/RESULTS.md, "Memory of large
frames, and stripes on threads").
"""
from __future__ import annotations

from pathlib import Path

import torch

from .errors import ConfigError
from .refine import Refinement

PROCESS_BYTES = 1.1e9  # torch, the model, a frame's buffers
REFINE_BYTES_PER_PIXEL = {False: 930.0, True: 560.0}  # by bf16_steps
MEMINFO = Path("/proc/meminfo")


def refinement_bytes(how: Refinement, padded_pixels: int, side_by_side: int = 1) -> float:
    """Peak bytes of coding with `side_by_side` refinements of a frame at once."""
    return PROCESS_BYTES + side_by_side * padded_pixels * REFINE_BYTES_PER_PIXEL[how.bf16_steps]


def available_bytes() -> float | None:
    """Memory the kernel can give this process now (MemAvailable + SwapFree); None where unknown
    (not Linux)."""
    try:
        fields = dict(line.split(":", 1) for line in MEMINFO.read_text().splitlines() if ":" in line)
        return sum(float(fields[k].split()[0]) * 1024 for k in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError, IndexError):
        return None


def fits(how: Refinement, padded_pixels: int, device: torch.device, side_by_side: int) -> bool:
    """Whether `side_by_side` refinements fit: always on a GPU (its own memory) and where the
    machine's memory is unknown."""
    free = available_bytes() if device.type == "cpu" else None
    return free is None or refinement_bytes(how, padded_pixels, side_by_side) <= free


def require(how: Refinement, height: int, width: int, padded_pixels: int,
            device: torch.device) -> None:
    """A one-line ConfigError where even one refinement of the frame cannot fit."""
    if not how.steps or fits(how, padded_pixels, device, 1):
        return
    bf16 = Refinement(1, bf16_steps=True)
    hint = f"--refine-precision bf16 (about {refinement_bytes(bf16, padded_pixels) / 1e9:.1f} GB), " \
        if not how.bf16_steps and fits(bf16, padded_pixels, device, 1) else ""
    raise ConfigError(f"--refine at {width}x{height} needs about "
                      f"{refinement_bytes(how, padded_pixels) / 1e9:.1f} GB of memory and "
                      f"{(available_bytes() or 0) / 1e9:.1f} GB are available: use {hint}"
                      "--refine 0 or a smaller --size")
