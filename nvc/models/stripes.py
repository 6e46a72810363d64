"""The transforms' largest layers in row stripes, where no autograd runs on the CPU (coding).

The two largest scales of every transform (g_a's first two downsamplings, g_s's last two
upsamplings) hold the mid channels at half resolution: at 7680x4320 gigabytes. Without autograd
they run over stripes of STRIPE_ROWS full-resolution rows, each read with a halo of rows either
side wide enough for both kernels and cropped back to its own rows, so every output row sees all
it depends on (the warp samples its rows in the same stripes, nvc.models.warp). The partition
depends on the frame alone, and each stripe is computed with the caller's intra-op thread count
(one, pinned, when coding), so the stripes run on any number of threads (STRIPE_THREADS) with
the same bits: a fixed work partition, parallelism that does not move the decoder's arithmetic
(issue 11). On this project's CPU the result is also bit for bit one pass's (a convolution's sums
do not depend on the tensor's height): the same bytes and frames as before stripes. Frames of at
most STRIPE_ROWS rows (416x240 pads to 256) run in one pass as before; measured in
benchmarks/RESULTS.md, "Memory of large frames, and stripes on threads".
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import TypeVar

import torch
from torch import Tensor, nn

from .. import workers
from ..errors import MAX_THREADS, env_int

T = TypeVar("T")
STRIPE_ROWS = 256
# Threads the stripes of one transform run on; NVC_STRIPE_THREADS overrides it (1: in turn).
STRIPE_THREADS = env_int("NVC_STRIPE_THREADS", os.cpu_count() or 1, minimum=1, maximum=MAX_THREADS)


def analyze(g_a: nn.Sequential, x: Tensor, kernel: int, stripe_rows: int | None = None
            ) -> Tensor:
    """g_a(x) (`kernel`: its convolutions' size), its first two downsamplings in stripes of
    `stripe_rows` (STRIPE_ROWS) input rows where no autograd runs."""
    stripe_rows = stripe_rows or STRIPE_ROWS
    if not striped(x.device) or x.shape[-2] <= stripe_rows:
        return g_a(x)
    layers = list(g_a)
    # an output row of two stride-2 convolutions reads 3 (k // 2) input rows either side; the halo
    # is rounded up to the 4 that keeps both strides aligned
    halo = -(-3 * (kernel // 2) // 4) * 4
    return _run(layers[3:], _striped(layers[:3], x, 1, 4, stripe_rows, halo))


def synthesize(g_s: nn.Sequential, y: Tensor, kernel: int, stripe_rows: int | None = None
               ) -> Tensor:
    """g_s(y) (`kernel`: its convolutions' size), its last two upsamplings in stripes of
    `stripe_rows` (STRIPE_ROWS) output rows where no autograd runs."""
    stripe_rows = stripe_rows or STRIPE_ROWS
    if not striped(y.device) or y.shape[-2] * 16 <= stripe_rows:
        return g_s(y)
    layers = list(g_s)
    # an output row of two stride-2 transposed convolutions reads fewer than k // 2 rows of
    # their input either side
    return _striped(layers[-3:], _run(layers[:-3], y), 4, 1, stripe_rows // 4, kernel // 2)


def striped(device: torch.device) -> bool:
    """Whether work runs in stripes: on the CPU, without autograd. (A GPU runs the layers in one
    pass as before: there many small launches cost time and memory is not the constraint.)"""
    return device.type == "cpu" and not torch.is_grad_enabled()


def _run(layers: list[nn.Module], x: Tensor) -> Tensor:
    for layer in layers:
        x = layer(x)
    return x


def _striped(layers: list[nn.Module], x: Tensor, up: int, down: int, rows: int, halo: int
             ) -> Tensor:
    """`layers` (output rows = input rows * up / down) over stripes of `rows` input rows."""
    h = x.shape[-2]

    def stripe(top: int) -> Tensor:
        bottom = min(top + rows, h)
        lo, hi = max(top - halo, 0), min(bottom + halo, h)
        first = (top - lo) * up // down
        return _run(layers, x[..., lo:hi, :])[..., first:first + (bottom - top) * up // down, :]
    return torch.cat(in_parallel(stripe, range(0, h, rows), x.device), dim=-2)


def in_parallel(fn: Callable[[T], Tensor], items: Iterable[T], device: torch.device
                ) -> list[Tensor]:
    """[fn(item) for item in items], on the STRIPE_THREADS threads where no autograd runs on the
    CPU (each item computed as the calling thread would: the same bits on any number of threads),
    else in turn."""
    items = list(items)
    if STRIPE_THREADS == 1 or len(items) < 2 or not striped(device):
        return [fn(item) for item in items]
    return list(workers.shared("nvc-stripe", STRIPE_THREADS).map(_as_caller(fn), items))


def _as_caller(fn: Callable[[T], Tensor]) -> Callable[[T], Tensor]:
    """fn as the calling thread would run it: grad mode, autocast and the intra-op thread count
    are per thread, so a worker takes the caller's."""
    threads = torch.get_num_threads()
    enabled, dtype = torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")

    def call(item: T) -> Tensor:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=enabled):
            return fn(item)
    return call
