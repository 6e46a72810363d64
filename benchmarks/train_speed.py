"""Training throughput: steps/s and pixels/s of the joint stage on this machine (issue 10, item 5).

Each variant builds train.module.VideoCodecModule, then times full training steps on random clips
already on the device (the on-card data path cuts crops there, so the loader is not what is
measured): the loss over the unrolled GOP, one backward, the clipped Adam step and the auxiliary
step, as training_step does. Pixels/s counts every frame of every clip (B x T x H x W) a step.

Example:
    python -m benchmarks.train_speed --device cuda --batch 8,16,32 --crop 256 --frames 7
    python -m benchmarks.train_speed --device cpu --batch 4 --crop 128 --frames 6 --steps 5
"""
from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time

import torch


def _figures(value: float) -> float:
    """Four significant figures (a slow CPU's Mpixels/s would round to 0 at three decimals)."""
    return float(f"{value:.4g}")


def measure(device: torch.device, batch: int, crop: int, frames: int, steps: int, warmup: int,
            bf16: bool, channels_last: bool, arch: str = "ssf-small") -> dict:
    from train.module import VideoCodecModule

    module = VideoCodecModule(arch=arch, stage="joint", unroll=[[0, frames - 1]],
                              channels_last=channels_last).to(device)
    module.setup("fit")
    opt, aux_opt = module.configure_optimizers()
    clip = torch.rand(batch, frames, 3, crop, crop, device=device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else \
        contextlib.nullcontext()

    def step() -> None:
        with autocast:
            loss = module.rd_loss(clip)["loss"]
        aux = sum(mod.latent.aux_loss() for mod in module._active_modules())
        opt.zero_grad()
        aux_opt.zero_grad()
        (loss + aux).backward()
        torch.nn.utils.clip_grad_norm_(module._params(aux=False), 1.0)
        opt.step()
        aux_opt.step()

    for _ in range(warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = (time.perf_counter() - t0) / steps
    return {"device": str(device), "batch": batch, "crop": crop, "frames": frames, "bf16": bf16,
            "channels_last": channels_last, "steps_per_s": _figures(1 / seconds),
            "mpixels_per_s": _figures(batch * frames * crop * crop / seconds / 1e6),
            "peak_gib": round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
            if device.type == "cuda" else None}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.train_speed",
                                description=__doc__.split("Example")[0],
                                epilog=__doc__[__doc__.index("Example"):],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", default="16", help="batch sizes, comma-separated")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--frames", type=int, default=7, help="frames a clip: the I-frame + P-frames")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", default="bf16,fp32", help="bf16 (transforms under autocast), fp32")
    p.add_argument("--channels-last", default="1", help="1, 0 or 1,0")
    p.add_argument("--arch", default="ssf-small")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    if args.frames < 2 or args.crop % 64:
        print("error: --frames must be >= 2 and --crop a multiple of 64", file=sys.stderr)
        return 1
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda: no CUDA device is available", file=sys.stderr)
        return 1
    rows = []
    for batch in (int(b) for b in args.batch.split(",")):
        for precision in args.precision.split(","):
            for cl in (v == "1" for v in args.channels_last.split(",")):
                row = measure(device, batch, args.crop, args.frames, args.steps, args.warmup,
                              precision == "bf16", cl, args.arch)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
