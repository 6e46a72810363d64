"""The project's own task models for `--task-model` (nvc ships none and downloads nothing).

Plainly: these are fixed random-feature networks, not trained ones. A seeded stack of strided 3x3
convolutions with ReLUs (Kaiming-initialised) maps RGB in [0, 1] to features at 1/8 resolution;
`--kind logits` adds global average pooling and a seeded linear layer to 10 "classes". Random
convolutional features respond to edges and textures the way early layers of trained networks do,
which is what FMSE and GSW measure here; a user's trained model follows the same contract.

    python -m benchmarks.task_model -o out/task-features.pt
    python -m benchmarks.task_model --kind logits -o out/task-logits.pt
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import torch
from torch import nn

WIDTHS = (3, 16, 32, 32)
CLASSES = 10


class RandomFeatures(nn.Module):
    def __init__(self, logits: bool, seed: int):
        super().__init__()
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for cin, cout in zip(WIDTHS, WIDTHS[1:]):
            conv = nn.Conv2d(cin, cout, 3, stride=2, padding=1)
            nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            layers += [conv, nn.ReLU()]
        self.trunk = nn.Sequential(*layers[:-1])  # the last convolution's output, unrectified
        self.head = nn.Linear(WIDTHS[-1], CLASSES) if logits else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.trunk(x * 2 - 1)
        if self.head is None:
            return f
        return self.head(f.mean(dim=(2, 3)))


def build(kind: str, seed: int = 0) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():  # TorchScript is nvc's contract, deprecated or not
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.script(RandomFeatures(kind == "logits", seed).eval())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.task_model", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python -m benchmarks.task_model -o out/task-features.pt")
    p.add_argument("-o", "--output", type=Path, required=True, help="TorchScript file to write")
    p.add_argument("--kind", choices=("features", "logits"), default="features")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".partial")
    build(args.kind, args.seed).save(str(tmp))
    tmp.replace(args.output)
    print(f"{args.output}: random-feature {args.kind} model (seed {args.seed})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
