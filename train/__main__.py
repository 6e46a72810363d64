"""`python -m train fit --config train/configs/cpu_smoke.yaml` (LightningCLI).

Example:
    python -m train fit --config train/configs/cpu_smoke.yaml --trainer.max_steps 20
"""
from __future__ import annotations

from lightning.pytorch.cli import LightningCLI

from train.module import VideoCodecModule


def main(args=None) -> None:
    LightningCLI(VideoCodecModule, subclass_mode_data=True, args=args,
                 save_config_kwargs={"overwrite": True})


if __name__ == "__main__":
    main()
