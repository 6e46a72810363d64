"""Rate-distortion benchmark: nvc against x264 / x265 on UVG, HEVC classes or any manifest.

Every point is cached under OUT/points/, so an interrupted run resumes where it stopped.
Writes OUT/results.json (with provenance), OUT/results.md (tables, BD-rates) and OUT/rd_*.png.

Example:
    python -m benchmarks.rd --root ../shared/videos --dataset shared --codecs nvc,x264,x265 \\
        --frames 12 --out out/rd-shared
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

from nvc.bitstream import DEFAULT_PROFILE, FORMAT_VERSION, FrameType
from nvc.codec import LOOK_AHEAD
from nvc.errors import NvcError
from nvc.io import read_video
from nvc.refine import LEARNING_RATES
from nvc.schedule import GAP, SLOPE, default_cycle
from nvc.writers import AtomicFile

from .anchors import ffmpeg_version
from .codecs import (
    CODECS,
    Conditions,
    PointResult,
    codec_schedule,
    nvc_weights_sha256,
    points,
)
from .manifest import DATASETS, Sequence, dataset_manifest, read_manifest
from .report import summarize, write_markdown, write_plots


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def provenance(cond: Conditions, codecs: list[str]) -> dict:
    import torch

    from nvc.zoo import DEFAULT_MODEL

    return {"git_commit": _git_commit(), "model": cond.weights or DEFAULT_MODEL,
            "weights_sha256": nvc_weights_sha256(cond), "ffmpeg": ffmpeg_version(),
            "torch": torch.__version__, "python": platform.python_version(),
            "device": (cond.device if cond.device != "cpu"
                       else f"cpu ({platform.processor() or platform.machine()})"),
            "conditions": asdict(cond), "codecs": codecs}


def _nvc_key(codec: str, cond: Conditions) -> str:
    """nvc points depend on the shipped weights, the stream format, its default numeric profile and
    GOP schedule, the frame-type rule, the refinement's steps and step sizes (and the adaptation
    budget): a new base, format, profile, schedule, rule or refinement must not reuse a cached
    point of the old one."""
    if not codec.startswith("nvc"):
        return ""
    budget = f"_s{cond.adapt_steps}w{cond.adapt_window}" if codec.startswith("nvc-") else ""
    schedule = codec_schedule(codec, cond)
    cycle = default_cycle(cond.intra_period)
    gop = f"g{GAP:g}s{SLOPE:g}c{'-'.join(f'{c:g}' for c in cycle)}" if schedule is None else \
        f"g{schedule.lift}-{schedule.drop}-{schedule.slope}c{'-'.join(map(str, schedule.cycle))}"
    types = "" if codec == "nvc-fixed" else f"la{LOOK_AHEAD}"
    lrs = LEARNING_RATES
    refine = f"r{cond.refine}c{lrs[FrameType.I]:g}-{lrs[FrameType.P]:g}" \
        f"{'h' if cond.refine_bf16 else ''}" if cond.refine else ""
    return (f"_{nvc_weights_sha256(cond)[:8]}_v{FORMAT_VERSION}p{int(DEFAULT_PROFILE)}{gop}{types}"
            f"{refine}{budget}")


def run_point(seq: Sequence, source, codec: str, point: str, cond: Conditions,
              cache: Path) -> dict:
    key = f"{seq.name}__{codec}__{point}__f{cond.frames}_ip{cond.intra_period}{_nvc_key(codec, cond)}"
    path = cache / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text())
    result: PointResult = CODECS[codec](source, point, cond)
    record = {"sequence": seq.name, "frames": len(source.frames), "width": source.width,
              "height": source.height, **asdict(result)}
    tmp = path.with_suffix(".partial")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(path)
    return record


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.rd", description=__doc__.split("Example")[0],
                                epilog="example:\n  python -m benchmarks.rd --root ../shared/videos "
                                       "--dataset shared --codecs nvc,x264,x265 --frames 12 "
                                       "--out out/rd-shared",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", required=True, help="folder holding the dataset's files")
    p.add_argument("--dataset", required=True, choices=(*DATASETS, "manifest"))
    p.add_argument("--manifest", help="a manifest file (with --dataset manifest)")
    p.add_argument("--codecs", default="nvc,x264,x265", help=f"from {', '.join(CODECS)}")
    p.add_argument("--anchor", default="x265", help="BD-rates are against this codec (default x265)")
    p.add_argument("--frames", type=int, default=96, help="frames per sequence (default 96)")
    p.add_argument("--intra-period", type=int, default=12, help="12 by default, 32 as an option")
    p.add_argument("--qualities", default="1,2,3,4",
                   help="nvc rate points (1-4; fractions and points below 1, e.g. 0.5, lie "
                        "between and below the rungs)")
    p.add_argument("--crfs", default=None, help="CRF sweep of the anchors (default 22..47 step 5)")
    p.add_argument("--sequences", default=None, help="only these sequence names, comma-separated")
    p.add_argument("--adapt-steps", type=int, default=100, help="budget of nvc-adapt/-dora/-full")
    p.add_argument("--adapt-window", type=int, default=256, help="fitting window of nvc-adapt (px)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--weights", default=None, help="a weights file for nvc instead of the shipped base")
    p.add_argument("--gop-schedule", default=None, metavar="LIFT,DROP,SLOPE",
                   help="nvc's GOP quality schedule (default: nvc's; nvc-flat is always flat)")
    p.add_argument("--refine", type=int, default=0, metavar="STEPS",
                   help="nvc's encoder-side latent refinement (nvc encode --refine; default 0)")
    p.add_argument("--refine-precision", choices=("fp32", "bf16"), default="fp32",
                   help="the refinement steps' synthesis (nvc encode --refine-precision)")
    p.add_argument("--out", required=True, help="output folder (cache, results.json, .md, .png)")
    args = p.parse_args(argv)
    try:
        return _run(args)
    except (NvcError, ValueError, OSError) as e:
        print(f"benchmarks.rd: error: {e}", file=sys.stderr)
        return 1


def _run(args) -> int:
    from tqdm import tqdm

    codecs = args.codecs.split(",")
    unknown = [c for c in codecs if c not in CODECS]
    if unknown:
        raise ValueError(f"unknown codecs {unknown}; known: {', '.join(CODECS)}")
    if args.anchor not in codecs:
        raise ValueError(f"the anchor {args.anchor} must be one of --codecs")
    manifest = Path(args.manifest) if args.dataset == "manifest" else dataset_manifest(args.dataset)
    if args.dataset == "manifest" and not args.manifest:
        raise ValueError("--dataset manifest needs --manifest FILE")
    seqs = read_manifest(manifest)
    if args.sequences:
        wanted = set(args.sequences.split(","))
        seqs = [s for s in seqs if s.name in wanted]
    qualities = tuple(float(q) for q in args.qualities.split(","))
    cond = Conditions(intra_period=args.intra_period, frames=args.frames, qualities=qualities,
                      device=args.device, adapt_steps=args.adapt_steps,
                      adapt_window=args.adapt_window, weights=args.weights,
                      gop_schedule=args.gop_schedule, refine=args.refine,
                      refine_bf16=args.refine_precision == "bf16")
    codec_schedule("nvc", cond)  # a bad --gop-schedule is refused before any work
    cond.refinement()  # and a bad --refine
    if args.crfs:
        cond.crfs = tuple(int(c) for c in args.crfs.split(","))
    root, out = Path(args.root), Path(args.out)
    missing = [s.file for s in seqs if not (root / s.file).exists()]
    if missing:
        raise ValueError(f"{root}: missing {len(missing)} sequence file(s), e.g. {missing[0]}")
    (out / "points").mkdir(parents=True, exist_ok=True)
    jobs = [(s, c, pt) for s in seqs for c in codecs for pt in points(c, cond)]
    records = []
    bar = tqdm(total=len(jobs), desc="points", unit="point", file=sys.stderr)
    for seq in seqs:
        source = read_video(root / seq.file, size=seq.size, fps=seq.fps,
                            frames=min(cond.frames, seq.frames), lazy=True)  # frame by frame
        for _, codec, point in [j for j in jobs if j[0] is seq]:
            bar.set_postfix_str(f"{seq.name} {codec} {point}")
            records.append(run_point(seq, source, codec, point, cond, out / "points"))
            bar.update()
    bar.close()
    summary = summarize(records, codecs, args.anchor)
    results = {"provenance": provenance(cond, codecs), "manifest": str(manifest),
               "points": records, "summary": summary}
    with AtomicFile(out / "results.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1))
    plots = write_plots(records, codecs, summary, out)
    write_markdown(results, plots, out / "results.md")
    print((out / "results.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
