"""`python -m train fit --config train/configs/cpu_smoke.yaml` (LightningCLI).

Example:
    python -m train fit --config train/configs/cpu_smoke.yaml --trainer.max_steps 20
"""
from __future__ import annotations

from argparse import RawDescriptionHelpFormatter

from lightning.pytorch.cli import LightningCLI

from train.module import VideoCodecModule


def main(args=None) -> None:
    example = {"epilog": "example:\n  python -m train fit --config train/configs/cpu_smoke.yaml",
               "formatter_class": RawDescriptionHelpFormatter}
    LightningCLI(VideoCodecModule, subclass_mode_data=True, args=args,
                 save_config_kwargs={"overwrite": True},
                 parser_kwargs={"fit": example, "validate": example, "test": example,
                                "predict": example})


if __name__ == "__main__":
    main()
