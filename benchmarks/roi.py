"""Region- and task-aware coding against MSE coding at equal file size (issue 13).

For one clip and every quality, code it with plain MSE adaptation, with a region of interest (a
centred rectangle of half the width and half the height: a quarter of the frame; the fit weights it
--roi-weight times, the coder's quality map lifts it --roi-quality steps, as `nvc encode --adapt
--roi` does) and with a task model (FMSE weight --task-weight); each kept file is measured on every
metric; `gsw` is the task model with its gradient map as the region (`--task-model M --roi
gradient`). The MSE-adaptation curve is then read at each variant's file size (linear in log bytes
between its points, or its end point for a size within 3% beyond it), so the gains below are at
equal size. `--refine STEPS` refines every coding's latents (nvc.refine) for the variant's
objective (nvc.objective); `--adapt-steps 0` codes without adaptation, so that the refinement
alone carries the region or the task (`nvc encode --refine S --roi M` / `--task-model M`).

Example:
    python -m benchmarks.task_model -o out/task-features.pt
    python -m benchmarks.roi ../shared/videos/BasketballPass_416x240_50fps_f101_fromPNG.yuv \\
        --size 416x240 --fps 50 --frames 12 --task-model out/task-features.pt --out out/roi
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from adapt import AdaptConfig, encode_adaptive
from nvc.codec import encode, padded_hw, source_rgb
from nvc.decoding import reconstructions
from nvc.errors import NvcError
from nvc.io import read_video
from nvc.metrics import bpp, psnr_rgb_db
from nvc.objective import Objective
from nvc.roi import pixel_weights, quality_map, region_psnr_db
from nvc.task import TaskModel, gradient_mask, task_metrics
from nvc.writers import AtomicFile
from nvc.zoo import DEFAULT_MODEL, load_model


def centre_mask(frames: int, height: int, width: int) -> np.ndarray:
    mask = np.zeros((frames, height, width), np.float32)
    mask[:, height // 4: height // 4 + height // 2, width // 4: width // 4 + width // 2] = 1
    return mask


def measure(video, coded, mask: np.ndarray, task: TaskModel, model, entry) -> dict:
    sources = [source_rgb(f) for f in video.frames]
    rec = list(reconstructions(coded, model, entry))  # the adaptive encoder keeps none
    return {"bytes": len(coded.data), "bpp": bpp(len(coded.data), video.width, video.height,
                                                 len(video.frames)),
            "psnr_rgb_db": psnr_rgb_db(sources, rec),
            **region_psnr_db(sources, rec, mask), **task_metrics(task, sources, rec)}


SIZE_TOLERANCE = 0.03  # "equal file size": within 3%


def at_size(curve: list[dict], size: int, key: str) -> float | None:
    """`key` of the MSE-adaptation curve at `size` bytes (linear in log bytes; its end point within
    SIZE_TOLERANCE beyond an end), None further outside it."""
    pts = sorted(curve, key=lambda p: p["bytes"])
    x = np.log([p["bytes"] for p in pts])
    slack = np.log1p(SIZE_TOLERANCE)
    if not x[0] - slack <= np.log(size) <= x[-1] + slack:
        return None
    return float(np.interp(np.log(size), x, [p[key] for p in pts]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.roi", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python -m benchmarks.roi clip_416x240_50.yuv "
                                       "--frames 12 --out out/roi")
    p.add_argument("input", type=Path)
    p.add_argument("--size", default=None, help="WxH of a raw .yuv input")
    p.add_argument("--fps", type=Fraction, default=None)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--qualities", default="1,2,3,4")
    p.add_argument("--intra-period", type=int, default=12)
    p.add_argument("--adapt-steps", type=int, default=60, help="0: no adaptation, the coder alone")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="refinement steps for every coding (nvc.refine; default 0)")
    p.add_argument("--adapt-window", type=int, default=128)
    p.add_argument("--roi-weight", type=float, default=8.0)
    p.add_argument("--roi-quality", default="1", help="quality steps of the region; a list, one "
                   "roi variant each (roi, roi@2, ...)")
    p.add_argument("--task-model", type=Path, required=True)
    p.add_argument("--task-weight", type=float, default=0.5)
    p.add_argument("--variants", default="task,gsw,roi", help="what to code beside MSE adaptation "
                   "(comma-separated; roi is every --roi-quality)")
    p.add_argument("--weights", type=Path, default=None, help="weights file (default: the zoo's)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        size = tuple(int(v) for v in args.size.split("x")) if args.size else None
        video = read_video(args.input, size=size, fps=args.fps, frames=args.frames)
        video = replace(video, frames=list(video.frames))
        task = TaskModel(args.task_model)
        model, entry = load_model(DEFAULT_MODEL, args.weights)
    except NvcError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    mask = centre_mask(len(video.frames), video.height, video.width)
    base_cfg = AdaptConfig(steps=args.adapt_steps, window=args.adapt_window,
                           task_weight=args.task_weight)
    padded = padded_hw(video.height, video.width, model.cfg.multiple)
    boosts = [float(v) for v in args.roi_quality.split(",")]
    wanted = set(args.variants.split(","))
    roi_names = ["roi" if i == 0 else f"roi@{b:g}" for i, b in enumerate(boosts)] \
        if "roi" in wanted else []
    gsw = gradient_mask(task, [source_rgb(f) for f in video.frames])
    others = [name for name in ("task", "gsw") if name in wanted] + roi_names
    points: dict[str, list[dict]] = {name: [] for name in ["mse"] + others}
    args.out.mkdir(parents=True, exist_ok=True)
    for q in (int(v) for v in args.qualities.split(",")):
        variants: dict[str, dict] = {
            "mse": {}, "task": {"task": task},
            "gsw": {"task": task, "weights": pixel_weights(gsw, args.roi_weight),
                    "qmap": quality_map(gsw, q, boosts[0], model.cfg.num_qualities, padded)}}
        for name, boost in zip(roi_names, boosts):
            variants[name] = {"weights": pixel_weights(mask, args.roi_weight),  # 0: no map
                              "qmap": quality_map(mask, q, boost, model.cfg.num_qualities, padded)
                              if boost else None}
        for name, kw in variants.items():
            if name not in points:
                continue
            if args.adapt_steps > 0:
                r = encode_adaptive(video, model, entry, q, args.intra_period, base_cfg,
                                    refine=args.refine, **kw)
                coded, kept, adapter_bytes = r.coded, r.mode, r.adapter_bytes
            else:
                mapped = kw.get("qmap") is not None
                objective = Objective.for_coding(kw.get("weights"), mapped, kw.get("task"),
                                                 args.task_weight)
                coded = encode(video, model, entry, q, args.intra_period, qmap=kw.get("qmap"),
                               refine=args.refine, objective=objective)
                kept, adapter_bytes = "base" + (" + map" if mapped else ""), 0
            points[name].append({"quality": q, "kept": kept, "adapter_bytes": adapter_bytes,
                                 **measure(video, coded, mask, task, model, entry)})
            print(f"q{q} {name:5} {json.dumps(points[name][-1])}", flush=True)
    for name in others:
        for pt in points[name]:
            for key in ("roi_psnr_db", "background_psnr_db", "psnr_rgb_db", "fmse"):
                ref = at_size(points["mse"], pt["bytes"], key)
                pt[f"mse_adapt_{key}_at_size"] = ref
    with AtomicFile(args.out / "results.json") as tmp:
        tmp.write_text(json.dumps({"input": str(args.input), "model": entry.name,
                                   "conditions": {k: str(v) for k, v in vars(args).items()},
                                   "points": points}, indent=1))
    print(f"{'variant':8} {'q':>2} {'bytes':>7} {'ROI dB':>7} {'bg dB':>7} {'FMSE':>8} "
          f"{'ROI gain at size':>17} {'FMSE change at size':>20}")
    for name in points:
        for pt in points[name]:
            roi_ref, fmse_ref = pt.get("mse_adapt_roi_psnr_db_at_size"), pt.get("mse_adapt_fmse_at_size")
            gain = f"{pt['roi_psnr_db'] - roi_ref:+.2f} dB" if roi_ref is not None else "-"
            change = f"{100 * (pt['fmse'] / fmse_ref - 1):+.1f}%" if fmse_ref else "-"
            print(f"{name:8} {pt['quality']:>2} {pt['bytes']:>7} {pt['roi_psnr_db']:>7.2f} "
                  f"{pt['background_psnr_db']:>7.2f} {pt['fmse']:>8.4f} {gain:>17} {change:>20}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
