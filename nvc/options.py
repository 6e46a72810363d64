"""What the coding options of `nvc encode` and `nvc eval` mean for the codec: where a quality codes
(nvc.roi.rate_point), the GOP schedule, precision, frame types and refinement; the region of
interest and the task model, and what they weigh; the adaptation's budget; checks that refuse a
combination that cannot work before anything is read. The command line's own (nvc.cli), apart
from the commands.
"""
from __future__ import annotations

import sys


def device(name: str):
    import torch

    from .errors import NvcError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise NvcError("--device cuda: no CUDA device is available")
    return torch.device(name)


def check_bitrate(args) -> None:
    """--bitrate instead of --quality (which defaults to 2 without it)."""
    from .errors import InputError

    if args.bitrate is None:
        args.quality = 2 if args.quality is None else args.quality
        return
    if args.quality is not None:
        raise InputError("--bitrate chooses the quality: give --bitrate or --quality, not both")
    if args.adapt:
        raise InputError("--adapt moves the rate where the clip's RD cost is lowest (the base's "
                         "best ladder position, the adapters): give it --quality, not --bitrate")


def coding(args, video, model, quality: float) -> dict:
    """The coding options every encoder call takes: where `quality` codes (nvc.roi.rate_point:
    the header's rung, and the quality map: --roi's, else a fractional quality's uniform one),
    the GOP schedule (--gop-schedule, else the default at the quality itself), synthesis
    precision, frame types, latent refinement."""
    import torch

    from .bitstream import SYNTHESIS_NAMES
    from .codec import padded_hw
    from .errors import InputError
    from .refine import Refinement
    from .roi import rate_point

    at = rate_point(quality, model.cfg.num_qualities,
                    padded_hw(video.height, video.width, model.cfg.multiple), args.intra_period,
                    args.gop_schedule)
    if at.quality != quality and args.adapt and args.roi:
        raise InputError(f"--adapt with --roi fits at a rung's lambda: give a whole --quality from "
                         f"1 to {model.cfg.num_qualities}, not {quality:g}")

    if args.refine and args.refine_precision == "bf16" and args.device != "cuda" and \
            not torch.ops.mkldnn._is_mkldnn_bf16_supported() and not getattr(args, "_warned", 0):
        print("nvc: warning: this CPU has no bf16 units: --refine-precision bf16 will be slow",
              file=sys.stderr)
        args._warned = 1  # once a command, not once a quality
    return {**at._asdict(), "qmap": quality_map(args, video, model, quality) or at.qmap,
            "matrix": colour_matrix(args, video),
            "synthesis": SYNTHESIS_NAMES[args.precision],
            "adaptive_intra": args.frame_types == "auto",
            "refine": Refinement(args.refine, bf16_steps=args.refine_precision == "bf16")}


def colour_matrix(args, video):
    """What the source's samples are converted to RGB with, recorded in the stream for the decoder
    to convert back: --colour-matrix, or with `auto` the source's tag (an mp4's, say), else
    BT.709."""
    from .io import ColourMatrix

    if args.colour_matrix != "auto":
        return ColourMatrix[args.colour_matrix.upper()]
    return video.matrix or ColourMatrix.BT709


def adapt_config(args):
    from adapt import AdaptConfig
    from nvc.adapters import AdapterKind

    return AdaptConfig(kind=AdapterKind[args.adapter.upper()], steps=args.adapt_steps,
                       seconds=args.adapt_seconds, window=args.adapt_window,
                       task_weight=args.task_weight)


def check_roi(args) -> None:
    from .errors import InputError

    if args.roi_quality < 0:
        raise InputError(f"--roi-quality must be >= 0, got {args.roi_quality}")
    if args.roi == "gradient" and not args.task_model:
        raise InputError("--roi gradient takes its map from the task model: it needs --task-model")
    if args.task_model and not (args.adapt or args.refine) and args.command == "encode" and \
            args.roi != "gradient":
        raise InputError("--task-model sets what --adapt and --refine minimise: it needs one of them")
    if not 0 <= args.task_weight <= 1:
        raise InputError(f"--task-weight must be in [0, 1], got {args.task_weight}")


def quality_map(args, video, model, quality: float):
    """The --roi quality map (nvc.roi.quality_map) for this quality, or None."""
    if not args.roi or not args.roi_quality:
        return None
    from .codec import padded_hw
    from .roi import quality_map

    return quality_map(roi_mask(args, video), quality, args.roi_quality, model.cfg.num_qualities,
                       padded_hw(video.height, video.width, model.cfg.multiple))


def objective(args, video):
    """What the coder minimises besides bits (nvc.objective): --roi's pixel weights where no
    quality map carries the region (--roi-quality 0), and the --task-model's term where the encoder
    optimises (--adapt, --refine); eval's task model alone only measures."""
    from .objective import Objective
    from .roi import pixel_weights

    weights = pixel_weights(roi_mask(args, video), args.roi_weight) \
        if args.roi and not args.roi_quality else None
    task = task_model(args) if args.adapt or args.refine else None
    return Objective.for_coding(weights, bool(args.roi and args.roi_quality), task,
                                args.task_weight)


def task_model(args):
    """The --task-model, loaded once per command (nvc.task), or None."""
    if not args.task_model:
        return None
    if getattr(args, "_task", None) is None:
        from .task import TaskModel

        args._task = TaskModel(args.task_model, device(args.device))  # where the codec runs
    return args._task


def roi_mask(args, video):
    """The --roi map (frames, H, W) in [0, 1]: a mask file, or the task model's gradients; made
    once per command (eval asks for it at every quality)."""
    if getattr(args, "_mask", None) is None:
        from .codec import source_rgb
        from .roi import FrameMaps, load_mask
        from .task import gradient_maps

        args._mask = FrameMaps.spooled(
            gradient_maps(task_model(args), (source_rgb(f) for f in video.frames)), video.height,
            video.width) if args.roi == "gradient" else \
            load_mask(args.roi, len(video.frames), video.width, video.height)
    return args._mask


def region_scores(args, video):
    """ROI and background PSNR-RGB, and the task model's FMSE and top-1 agreement, of a decoded
    clip, gathered frame by frame: (what evaluate_coded calls with each source frame and its
    decoded RGB, or None where neither is asked; what returns the figures once it is done)."""
    if not args.roi and not args.task_model:
        return None, dict
    from .codec import source_rgb
    from .roi import RegionScores
    from .task import TaskScores

    region = RegionScores() if args.roi else None
    task = TaskScores(task_model(args)) if args.task_model else None
    mask = roi_mask(args, video) if args.roi else None
    frame = iter(range(len(video.frames)))

    def on_frame(source, decoded) -> None:
        i, src = next(frame), source_rgb(source)
        if region is not None:
            region.add(src, decoded, mask[i])
        if task is not None:
            task.add(src, decoded)

    def figures() -> dict:
        return {**(region.result() if region is not None else {}),
                **(task.result() if task is not None else {})}
    return on_frame, figures
