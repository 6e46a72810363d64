"""Export trained weights to weights/ for the zoo: config inside, fp16 safetensors, sha256 printed.

Several checkpoints may be merged: later files override earlier ones tensor by tensor, e.g. the
intra stage's codec and the inter stage's motion and residual codecs.

Example:
    python -m train.export runs/intra/ckpt/last.ckpt runs/inter/ckpt/last.ckpt \\
        --take intra motion,residual -o runs/export.safetensors
"""
from __future__ import annotations

import argparse
from pathlib import Path

from nvc.models.ssf import SSF
from nvc.zoo import read_weights, save_weights


def merge(paths: list[str], takes: list[str] | None) -> SSF:
    """Build one model; from the i-th file copy only the sub-codecs named in takes[i]."""
    cfg, _ = read_weights(Path(paths[0]))
    model = SSF(cfg)
    own = model.state_dict()
    for i, path in enumerate(paths):
        file_cfg, state = read_weights(Path(path))
        if file_cfg != cfg:
            raise SystemExit(f"{path}: model config differs from {paths[0]}")
        prefixes = tuple(f"{p}." for p in takes[i].split(",")) if takes else ("",)
        for k, v in state.items():
            if k.startswith(prefixes) and k in own:
                own[k] = v
    model.load_state_dict(own)
    return model


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("Example")[0],
        epilog="example:\n  python -m train.export runs/intra/ckpt/last.ckpt runs/inter/ckpt/last.ckpt "
               "--take intra motion,residual -o runs/export.safetensors",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", help=".ckpt or .safetensors files")
    p.add_argument("--take", nargs="*", default=None,
                   help="per checkpoint, comma-separated sub-codecs to copy (intra, motion, residual)")
    p.add_argument("-o", "--output", required=True, help="the .safetensors file to write")
    args = p.parse_args(argv)
    if args.take and len(args.take) != len(args.checkpoints):
        raise SystemExit("--take needs one entry per checkpoint")
    model = merge(args.checkpoints, args.take)
    digest = save_weights(model, Path(args.output), extra={"sources": " ".join(args.checkpoints)})
    print(f"{args.output}\nsha256 {digest}")


if __name__ == "__main__":
    main()
