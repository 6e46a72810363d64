"""`python -m train fit --config train/configs/cpu_smoke.yaml` (LightningCLI).

Example:
    python -m train fit --config train/configs/cpu_smoke.yaml --trainer.max_steps 20
"""
from __future__ import annotations

import sys
from argparse import RawDescriptionHelpFormatter

from lightning.pytorch.cli import LightningCLI

from nvc.errors import NvcError
from train.module import VideoCodecModule


def user_error(exc: BaseException) -> NvcError | None:
    """The NvcError (a bad setting, a missing file) behind `exc`, which LightningCLI and
    jsonargparse wrap in their own errors, or None."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        if isinstance(e, NvcError):
            return e
        seen.add(id(e))
        stack += [e.__cause__, e.__context__]
    return None


def main(args=None) -> None:
    example = {"epilog": "example:\n  python -m train fit --config train/configs/cpu_smoke.yaml",
               "formatter_class": RawDescriptionHelpFormatter}
    try:
        LightningCLI(VideoCodecModule, subclass_mode_data=True, args=args,
                     save_config_kwargs={"overwrite": True},
                     parser_kwargs={**example, "fit": example, "validate": example,
                                    "test": example, "predict": example})
    except Exception as e:
        cause = user_error(e)
        if cause is None:
            raise
        sys.exit(f"error: {cause}")


if __name__ == "__main__":
    main()
