"""The command line's grammar: `nvc encode|decode|info|eval|demo`, their options, help and examples.

What the options mean for the codec is `options.py`; their types are `argtypes.py`; the commands
themselves are `cli.py`, which dispatches on `args.command`.
"""
from __future__ import annotations

import argparse
import sys

from . import argtypes


def _common(p: argparse.ArgumentParser, reading: bool = True, model: bool = True) -> None:
    if reading:
        p.add_argument("--frames", type=argtypes.positive, default=None, help="code at most N frames")
        p.add_argument("--start", type=int, default=0, help="first frame to read (default 0)")
        p.add_argument("--size", type=argtypes.size, default=None, help="WxH of a raw .yuv input")
        p.add_argument("--fps", type=argtypes.fps, default=None,
                       help="frame rate of a raw .yuv input (default: from its name, else 30) or "
                            "of numbered images (default 25); another file's own rate is "
                            "overridden")
        p.add_argument("--sample-aspect", type=argtypes.aspect, default=None, metavar="W:H",
                       help="the input's pixel shape, width to height, where its file does not say "
                            "it or says it wrong (anamorphic SD video: 32:27, 8:9, ...; 1:1 "
                            "square); recorded in the stream (default: what the file says)")
        p.add_argument("--pix-fmt", type=argtypes.pix_fmt, default=None, metavar="FMT",
                       help="sample layout of a raw .yuv input, FFmpeg's name (default: from the "
                            "file's name, e.g. _420_10bit, else yuv420p); converted to 8-bit "
                            "4:2:0")
    if model:
        p.add_argument("--model", default=None, help="zoo model name (default: the shipped base)")
        p.add_argument("--weights", default=None, help="a weights file instead of the zoo model")
        p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu",
                       help="where the network runs (default cpu; on the CPU the coder's "
                            "arithmetic is pinned to NVC_CODING_THREADS=1 thread on both sides)")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")


# The GOP's length: 32 frames coded the training clips box, cup and vtest (96 frames, q1-q4) in
# 9.1% fewer bits than 12 (24: 8.7%, 48: 7.3%, 96: 1.9%; BD-rate PSNR-RGB), the four longer
# evaluation clips in 1.2% fewer than 12 (benchmarks/RESULTS.md, "The GOP's length"); benchmarks
# code 12.
DEFAULT_INTRA_PERIOD = 32


def _coding_options(p: argparse.ArgumentParser, quality_type, quality_default, quality_help) -> None:
    from .schedule import CYCLE, CYCLE_FROM, FIELDS, GAP, SLOPE

    p.add_argument("--quality", type=quality_type, default=quality_default, help=quality_help)
    p.add_argument("--intra-period", type=argtypes.intra_period, default=DEFAULT_INTRA_PERIOD,
                   help=f"frames per GOP: an I-frame starts each (default {DEFAULT_INTRA_PERIOD})")
    p.add_argument("--gop-schedule", type=argtypes.gop_schedule, default=None,
                   metavar=FIELDS,
                   help="where each frame of a GOP sits on the quality ladder: the I-frame LIFT "
                        "rungs above --quality (at most the top rung), the P-frames DROP rungs "
                        "below it, sinking SLOPE rungs more by the GOP's last frame; CYCLE "
                        "(C1,...,Cn, in rungs) sinks P-frames 1..n C1..Cn more, and so on over "
                        "the GOP; 0: every frame at --quality (default: LIFT + DROP = "
                        f"{GAP:g}, SLOPE {SLOPE:g}, the pair sliding from 0,{GAP:g} at quality 1 "
                        f"to {GAP:g},0 at the top, and in GOPs of {CYCLE_FROM} frames or more "
                        f"CYCLE {','.join(f'{v:g}' for v in CYCLE)})")
    p.add_argument("--frame-types", choices=("auto", "fixed"), default="auto",
                   help="auto (default): a frame between the GOP's I-frames is coded as an "
                        "I-frame where that costs less at its quality's lambda than predicting "
                        "it (a new scene, texture the motion cannot follow); fixed: I-frames "
                        "every --intra-period frames only")
    p.add_argument("--colour-matrix", choices=("auto", "bt709", "bt601"), default="auto",
                   help="the matrix of the source's YUV, which nvc codes in RGB, recorded in the "
                        "stream for the decoder to convert back and to tag .mp4 / .mkv output "
                        "with: auto (default): the source file's tag (an mp4's, say), else bt709 "
                        "(y4m and raw .yuv carry none: give bt601 for SD video made with it)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="what the synthesis transforms compute in, on both sides, recorded in the "
                        "stream: fp32 (default) decodes on any machine within 1 code value; bf16 "
                        "decodes faster on CPUs and GPUs with bf16 units (1.2-1.5x on this "
                        "project's CPU) and bit-exactly only on the encoder's kind of device")
    p.add_argument("--refine", type=argtypes.steps, default=0, metavar="STEPS",
                   help="encoder effort: STEPS gradient steps on each frame's latents before it is "
                        "coded, for its own rate and distortion (about 0.2 s a step for a "
                        "416x240 frame on one CPU thread); fewer bits for the same quality, any "
                        "decoder reads the stream (default 0: off; 40 is a good start)")
    p.add_argument("--refine-precision", choices=("fp32", "bf16"), default="fp32",
                   help="what the refinement's steps compute the synthesis in (the frames are "
                        "coded in --precision as ever): bf16 takes 0.56-0.70x the time a step on "
                        "a CPU with AVX512-BF16, for a little less gain a step: give it about 1.6x "
                        "the steps (default fp32)")
    _adapt_options(p)
    _common(p)


def _adapt_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--adapt", action="store_true",
                   help="fit decoder adapters to this clip and send them in the stream")
    p.add_argument("--adapter", choices=("lora", "dora", "full"), default="lora",
                   help="lora (default), dora, or full: fine-tune every decoder weight (baseline)")
    p.add_argument("--adapt-steps", type=argtypes.positive, default=300, help="most fitting steps (300)")
    p.add_argument("--adapt-seconds", type=argtypes.positive_real, default=None,
                   help="wall-clock budget for fitting; whichever of steps/seconds ends first")
    p.add_argument("--adapt-window", type=argtypes.window, default=256, metavar="PIXELS",
                   help="the square each fitting step codes, a multiple of 64, clipped to the "
                        "frame: larger fits adapters that pay more, for more time a step "
                        "(default 256; BasketballPass, 96 frames: -5.2%% BD-rate at 256, +0.6%% "
                        "at 128)")
    p.add_argument("--roi", default=None, metavar="MASK",
                   help="region of interest: an image (one mask) or a video (one a frame), white "
                        "= important, or 'gradient' (the --task-model's gradient map, GSW); coded "
                        "at a higher quality (--roi-quality) and weighted (--roi-weight) in what "
                        "--adapt fits (and, with --roi-quality 0, in what --refine refines and "
                        "the frame types are chosen by); eval then reports ROI and background PSNR")
    p.add_argument("--roi-weight", type=argtypes.positive_real, default=4.0,
                   help="how much more an important pixel counts in the adaptation (and, with "
                        "--roi-quality 0, in the refinement and the frame-type choice; default 4)")
    p.add_argument("--roi-quality", type=float, default=1.0, metavar="STEPS",
                   help="quality steps the region gains; the background drops so that the file "
                        "stays near --quality's size (at quality 1 it cannot, and the file grows; "
                        "default 1; 0: no quality map)")
    p.add_argument("--task-model", default=None, metavar="MODEL.pt",
                   help="TorchScript model taking RGB in [0, 1], returning features or logits: "
                        "--adapt and --refine then minimise (1 - beta) MSE + beta k FMSE, k = MSE "
                        "/ FMSE of the first frame's unrefined I-frame; eval reports FMSE and "
                        "top-1 agreement")
    p.add_argument("--task-weight", type=float, default=0.5, metavar="BETA",
                   help="beta, the share of the task model's FMSE in the distortion (default 0.5)")


def _sub(subs, name: str, help_text: str, example: str) -> argparse.ArgumentParser:
    label = "examples" if "\n" in example else "example"
    return subs.add_parser(name, help=help_text, description=help_text,
                           epilog=f"{label}:\n  {example}",
                           formatter_class=argparse.RawDescriptionHelpFormatter)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    from .bitstream import FORMAT_VERSION
    from .zoo import DEFAULT_MODEL

    try:
        own = version("nvc")
    except PackageNotFoundError:  # run from a source tree that was never installed
        own = "(not installed)"
    return f"nvc {own}: writes stream format {FORMAT_VERSION} (reads 1-{FORMAT_VERSION}), " \
           f"base model {DEFAULT_MODEL}"


class _Version(argparse.Action):
    """--version, its text read (package metadata) only when asked, not at every start."""

    def __call__(self, parser, namespace, values, option_string=None):
        parser._print_message(_version() + "\n", sys.stdout)  # as argparse's own does
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nvc", description="nvc: an instance-adaptive neural video codec",
        epilog="example:\n  nvc demo", formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log details (and tracebacks)")
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show nvc's version, the stream format it writes and its base model")
    subs = parser.add_subparsers(dest="command", required=True)

    p = _sub(subs, "encode", "encode a video into an .nvc stream",
             "nvc encode clip_416x240_50.yuv -o clip.nvc --quality 2 --frames 12 --adapt --adapt-steps 100"
             "\n  nvc encode clip.mp4 -o clip.nvc --bitrate 500k"
             "\n  ffmpeg -i clip.mp4 -f yuv4mpegpipe - | nvc encode - -o clip.nvc"
             "\n  ffmpeg -i CAMERA -f yuv4mpegpipe - | nvc encode - -o - | nvc decode - -o - | ffplay -")
    p.add_argument("input", help="y4m, raw .yuv, numbered images (frame_%%04d.png), or anything "
                                 "FFmpeg reads (mp4, mkv, avi, .264); "
                                 "-: y4m from standard input (a named pipe, <(...), likewise), coded "
                                 "as it arrives (a live stream; with --adapt, --roi or --task-model "
                                 "spooled to TMPDIR first)")
    p.add_argument("-o", "--output", required=True,
                   help="the .nvc file to write (-: standard output)")
    _coding_options(p, argtypes.quality, None, "rate point: 1 (the smallest file) to 4 (the largest), the "
                    "ladder's rungs; fractions lie between them (2.5), and the ladder goes on two "
                    "rungs below 1 (down to -1), each rung about halving the rate (default 2)")
    p.add_argument("--bitrate", type=argtypes.bitrate, default=None, metavar="RATE",
                   help="bits a second to aim at (500k, 1.5M), instead of --quality: the quality "
                        "is chosen by coding up to three GOPs spread through the clip at 3-6 "
                        "qualities first (where they are the clip, the last is the file); the "
                        "file's rate differs from theirs by how unlike them the rest of the clip "
                        "is")

    p = _sub(subs, "decode", "decode an .nvc stream to y4m, yuv, mp4, mkv or PNG frames",
             "nvc decode clip.nvc -o clip_decoded.y4m\n  nvc decode clip.nvc -o - | ffplay -\n"
             "  nvc decode partial_download.nvc -o what_came.y4m --salvage")
    p.add_argument("input", help="an .nvc file (-: standard input; a named pipe likewise)")
    p.add_argument("--start", type=int, default=0,
                   help="first frame to write (default 0); decoding starts at the I-frame at or "
                        "before it, the frames before that are read, not decoded")
    p.add_argument("--frames", type=argtypes.positive, default=None, help="write at most N frames")
    p.add_argument("--salvage", action="store_true",
                   help="decode what a damaged stream still holds instead of failing with no "
                        "output: a frame whose unit cannot be read (its checksum fails, its "
                        "length is damaged, bytes were lost) is the last decoded frame moved on "
                        "by its motion, and the P-frames after it, up to the next I-frame, are "
                        "decoded from that (they drift); reading goes on at the next whole unit; "
                        "a damaged adapter "
                        "unit: the base decoder; a stream cut short (a download that stopped) ends "
                        "at the cut; a warning says which frames")
    p.add_argument("-o", "--output", required=True,
                   help="OUT.y4m, OUT.yuv, OUT.mp4 (H.264 for viewing), OUT.mkv (FFV1, "
                        "lossless), OUT_%%04d.png, or - (y4m to standard output, each frame as it "
                        "is decoded)")
    _common(p, reading=False)

    p = _sub(subs, "info", "show an .nvc stream's header and bytes per unit type",
             "nvc info clip.nvc --json")
    p.add_argument("input", help="an .nvc file (-: standard input; a named pipe likewise)")
    _common(p, reading=False, model=False)

    p = _sub(subs, "eval", "encode, decode and report bytes, bpp, PSNR, MS-SSIM and seconds",
             "nvc eval clip_416x240_50.yuv --quality 1,2,3,4 --frames 12")
    p.add_argument("input", help="y4m, raw .yuv, numbered images (frame_%%04d.png), or anything "
                                 "FFmpeg reads; -: y4m from standard "
                                 "input (a named pipe likewise)")
    _coding_options(p, argtypes.qualities, [2], "rate point N or a list like 1,2,3,4 or 0.5,1.5 (see "
                    "encode; default 2)")

    p = _sub(subs, "demo", "code the embedded offline clip end to end and print a summary",
             "nvc demo --out-dir nvc-demo")
    p.add_argument("--out-dir", default="nvc-demo", help="where the demo files go (default nvc-demo)")
    p.add_argument("--frames", type=argtypes.demo_frames, default=12,
                   help=f"clip length, 1 to {argtypes.MAX_DEMO_FRAMES} (default 12)")
    p.add_argument("--quality", type=int, default=2, help="rate point (default 2)")
    p.add_argument("--intra-period", type=argtypes.intra_period, default=12,
                   help="frames per I-frame (default 12)")
    _common(p, reading=False)
    return parser
