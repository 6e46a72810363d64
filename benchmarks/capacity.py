"""Decoder cost of the base's width variants: multiply-adds per pixel (I- and P-frames, counted on
every convolution the decoder runs, the hyper-synthesis included) and CPU decode speed of the
network, with random weights of each shape (cost does not depend on the values; quality does, and
needs training: see benchmarks/RESULTS.md).

Example:
    python -m benchmarks.capacity --variants 64/48,96/64,128/96 --size 416x240
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from nvc import bitstream
from nvc.codec import encode
from nvc.decoding import iter_decoded
from nvc.models.config import ModelConfig, width_variant
from nvc.models.ssf import SSF
from nvc.synthetic import as_video, demo_clip
from nvc.zoo import load_model, save_weights

from .speed import measure


class MacCounter:
    """Sums the multiply-adds of every Conv2d / ConvTranspose2d forward inside `model`."""

    def __init__(self, model: nn.Module):
        self.macs = 0
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()
                        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]

    def _hook(self, m: nn.Module, args: tuple, out: torch.Tensor) -> None:
        assert isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))
        k = m.kernel_size[0] * m.kernel_size[1] // m.groups
        if isinstance(m, nn.ConvTranspose2d):  # every input pixel scatters into k x k x out
            self.macs += args[0][0].numel() * m.out_channels * k
        else:
            self.macs += out[0].numel() * m.in_channels * k

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def decoder_macs_per_pixel(model: SSF, entry, size: tuple[int, int]) -> dict[str, float]:
    """Multiply-adds per source pixel to decode an I-frame and a P-frame. The decoder runs the
    hyper-synthesis in fixed point (nvc.models.exact); its float twin is run on the same z to count
    the same convolutions."""
    w, h = size
    video = as_video(demo_clip(frames=2, out_hw=(h, w)))
    stream = bitstream.unpack(encode(video, model, entry, 2).data)
    counter = MacCounter(model)
    out = {}
    try:
        frames = iter_decoded(stream, model, entry)
        for kind in ("I", "P"):  # the demo stream: an I-frame, then a P-frame
            counter.macs = 0
            next(frames)
            codecs = [model.intra.latent] if kind == "I" else [model.motion.latent,
                                                                model.residual.latent]
            for codec in codecs:
                with torch.no_grad():
                    codec.h_s(torch.zeros(1, codec.h_s[0].in_channels, *_z_shape(h, w, model)))
            out[kind] = counter.macs / (w * h)
    finally:
        counter.close()
    return out


def _z_shape(h: int, w: int, model: SSF) -> tuple[int, int]:
    m = model.cfg.multiple
    return (-(-h // m), -(-w // m))


def variant(spec: str) -> ModelConfig:
    """"N/M" = intra_mid / inter_mid (latents scale with them as in the shipped 96/64 -> 128/96),
    "N/M/K" with kernel size K (5 in the shipped base)."""
    values = [int(v) for v in spec.split("/")]
    if len(values) not in (2, 3):
        raise ValueError(spec)
    return width_variant(*values)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.capacity",
                                description=__doc__.split("Example")[0],
                                epilog="example:\n  python -m benchmarks.capacity --variants 64/48,96/64",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", default="64/48,96/64,128/96",
                   help="intra_mid/inter_mid widths, optionally /kernel, comma-separated (96/64 "
                        "is the shipped base, kernel 5)")
    p.add_argument("--size", default="416x240")
    p.add_argument("--frames", type=int, default=6, help="frames of the decode-speed clip")
    args = p.parse_args(argv)
    try:
        specs = [variant(v) for v in args.variants.split(",")]
        w, h = (int(v) for v in args.size.split("x"))
    except ValueError:
        p.error("--variants takes N/M or N/M/K and --size WxH, e.g. 96/64/3 and 416x240")
    print(f"{'variant':>14} {'params M':>9} {'I kMAC/px':>10} {'P kMAC/px':>10} {'decode fps':>11} "
          f"{'network s':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in specs:
            torch.manual_seed(0)
            path = Path(tmp) / f"{cfg.name}.safetensors"
            save_weights(SSF(cfg), path)
            model, entry = load_model(path=path)
            macs = decoder_macs_per_pixel(model, entry, (w, h))
            with torch.no_grad():
                r = measure(model, entry, (w, h), args.frames, torch.device("cpu"))
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{cfg.name:>14} {params:9.2f} {macs['I'] / 1e3:10.1f} "
                  f"{macs['P'] / 1e3:10.1f} {r['decode_fps']:11.2f} {r['decode_network_s']:10.2f}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
