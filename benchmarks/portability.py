"""How far a stream's decoded frames move when the decoder's convolution kernels change: each
stream is encoded as usual and decoded once with oneDNN switched off (other CPU kernels, standing
in for another device), then compared with the encoder's reconstruction, frame by frame. With
`--encode-device cuda` the stream is encoded on the GPU and decoded on the CPU (its usual kernels):
a stream made on a GPU server, played on a laptop.

Example:
    python -m benchmarks.portability \
        ../shared/videos/BasketballPass_416x240_50fps_f101_fromPNG.yuv --frames 12
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from nvc import bitstream
from nvc.codec import encode
from nvc.decoding import decode_stream
from nvc.io import read_video
from nvc.zoo import load_model

PRECISIONS = bitstream.SYNTHESIS_NAMES


def compare(encoded: list[np.ndarray], decoded: list[np.ndarray]) -> dict:
    """Per frame: the largest difference in 8-bit code values, and overall the share of samples
    that differ and the lowest PSNR between the two."""
    diffs = [np.abs(np.round(a * 255) - np.round(b * 255)) for a, b in zip(encoded, decoded)]
    mse = [float(np.mean(d ** 2)) for d in diffs]
    return {"max_diff_per_frame": [int(d.max()) for d in diffs],
            "differing_share": float(np.mean([np.mean(d > 0) for d in diffs])),
            "min_psnr_db": min(10 * np.log10(255 ** 2 / max(m, 1e-12)) for m in mse)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.portability",
                                description=__doc__.split("Example")[0],
                                epilog="example:\n  python -m benchmarks.portability clip.y4m --frames 12",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", help="y4m, raw .yuv, or anything FFmpeg reads")
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--qualities", default="1,4")
    p.add_argument("--precisions", default="fp32,bf16", help="synthesis precisions: fp32, bf16")
    p.add_argument("--encode-device", default="cpu", choices=("cpu", "cuda"),
                   help="cpu: decode with oneDNN off; cuda: encode on the GPU, decode on the CPU")
    args = p.parse_args(argv)
    if not Path(args.input).is_file():
        p.error(f"{args.input}: no such file")
    if args.encode_device == "cuda" and not torch.cuda.is_available():
        p.error("--encode-device cuda: no CUDA device is available")
    video = read_video(args.input, frames=args.frames)
    model, entry = load_model()
    encoder = load_model()[0].to(args.encode_device)
    other_kernels = args.encode_device == "cpu"
    for precision in args.precisions.split(","):
        for q in (int(v) for v in args.qualities.split(",")):
            coded = encode(video, encoder, entry, q, synthesis=PRECISIONS[precision])
            torch.backends.mkldnn.enabled = not other_kernels
            try:
                decoded = decode_stream(bitstream.unpack(coded.data), model, entry)
            finally:
                torch.backends.mkldnn.enabled = True
            r = compare(coded.reconstruction, decoded.frames)
            print(f"{args.encode_device} -> cpu{' (oneDNN off)' if other_kernels else ''}, "
                  f"{precision} q{q}, {len(coded.data)} bytes: "
                  f"{100 * r['differing_share']:.3f}% of samples differ, at most "
                  f"{r['max_diff_per_frame']} code values per frame, {r['min_psnr_db']:.1f} dB "
                  f"between", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
