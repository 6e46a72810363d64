"""Peak resident memory of `nvc encode` and `nvc decode` against clip length: streaming means the
peak is bounded by the model and a GOP, not by the number of frames.

Each measurement is a fresh process running the CLI's own `main`, which then prints its peak RSS
(`ru_maxrss`) as its last line of stderr. The clip is the demo's synthetic motion rendered at
the requested size and written once as y4m (`--input mp4`: then encoded to H.264 by PyAV's
FFmpeg, which nvc decodes while it codes).

`--adapt-steps N` measures the adaptive encoder (`--adapt`), which reads the clip a window at a
time.

Example:
    python -m benchmarks.memory --size 416x240 --frames 24,600
    python -m benchmarks.memory --size 208x120 --frames 24,600 --adapt-steps 4
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def _write_clip(path: Path, frames: int, w: int, h: int) -> None:
    """A y4m of `frames` frames, written one at a time (12 rendered frames, repeated with a shift,
    so writing 600 frames of 1080p needs no more memory than 12)."""
    from nvc.io import rgb_to_yuv
    from nvc.synthetic import demo_clip

    base = [rgb_to_yuv(np.transpose(f, (1, 2, 0))) for f in demo_clip(12, (h, w))]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F25:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            fr = base[i % 12]
            shift = (i // 12) % 8
            f.write(b"FRAME\n" + np.roll(fr.y, shift, 1).tobytes() + fr.u.tobytes() +
                    fr.v.tobytes())


def _to_mp4(y4m: Path) -> Path:
    """The y4m re-encoded to H.264 one frame at a time; the y4m is deleted."""
    from nvc.io import read_video
    from nvc.writers import write_video

    mp4 = y4m.with_suffix(".mp4")
    write_video(mp4, read_video(y4m, lazy=True))
    y4m.unlink()
    return mp4


_CHILD = ("import resource, sys; from nvc.cli import main; code = main(sys.argv[1:]); "
          "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
          "sys.exit(code)")


def _peak_rss_mib(argv: list[str]) -> float:
    """Run `nvc ARGV` in a fresh process; its peak resident set size in MiB."""
    proc = subprocess.run([sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"nvc {' '.join(argv)} failed: {proc.stderr.strip()}")
    return int(proc.stderr.strip().splitlines()[-1]) / 1024  # Linux reports KiB


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("Example")[0],
                                epilog="example:\n  python -m benchmarks.memory --size 416x240 "
                                       "--frames 24,600",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="416x240", help="WxH of the rendered clip (default 416x240)")
    p.add_argument("--frames", default="24,600", help="clip lengths (default 24,600)")
    p.add_argument("--quality", default="1")
    p.add_argument("--input", choices=("y4m", "mp4"), default="y4m", help="the clip's container")
    p.add_argument("--eval", action="store_true", help="also `nvc eval` (encode, decode, score)")
    p.add_argument("--adapt-steps", type=int, default=0,
                   help="encode (and eval) with --adapt and this many fitting steps (default 0: "
                        "no adaptation)")
    p.add_argument("--weights", default=None, help="a weights file instead of the shipped base")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    w, h = (int(v) for v in args.size.split("x"))
    lengths = sorted(int(v) for v in args.frames.split(","))
    extra = ["--weights", args.weights] if args.weights else []
    adapt = ["--adapt", "--adapt-steps", str(args.adapt_steps)] if args.adapt_steps > 0 else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in lengths:
            clip, stream, out = (Path(tmp) / f"c{n}.y4m", Path(tmp) / f"c{n}.nvc",
                                 Path(tmp) / f"d{n}.y4m")
            _write_clip(clip, n, w, h)
            if args.input == "mp4":
                clip = _to_mp4(clip)
            enc = _peak_rss_mib(["encode", str(clip), "-o", str(stream), "--quality",
                                 args.quality, *adapt, *extra])
            dec = _peak_rss_mib(["decode", str(stream), "-o", str(out), *extra])
            ev = _peak_rss_mib(["eval", str(clip), "--quality", args.quality, *adapt, *extra]) \
                if args.eval else None
            rows.append({"frames": n, "size": f"{w}x{h}", "input": args.input,
                         "adapt_steps": args.adapt_steps,
                         "eval_peak_rss_mib": None if ev is None else round(ev, 1),
                         "encode_peak_rss_mib": round(enc, 1),
                         "decode_peak_rss_mib": round(dec, 1),
                         "clip_mib": round(clip.stat().st_size / 2**20, 1)})
            for f in (clip, stream, out):
                f.unlink()
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'frames':>6} {'size':>9} {'input':>5} {'clip MiB':>9} {'encode peak MiB':>16} "
              f"{'decode peak MiB':>16} {'eval peak MiB':>14}")
        for r in rows:
            print(f"{r['frames']:>6} {r['size']:>9} {r['input']:>5} {r['clip_mib']:>9} "
                  f"{r['encode_peak_rss_mib']:>16} {r['decode_peak_rss_mib']:>16} "
                  f"{r['eval_peak_rss_mib'] or '-':>14}")
        first, last = rows[0], rows[-1]
        print(f"ratio {last['frames']} / {first['frames']} frames: encode "
              f"{last['encode_peak_rss_mib'] / first['encode_peak_rss_mib']:.2f}x, decode "
              f"{last['decode_peak_rss_mib'] / first['decode_peak_rss_mib']:.2f}x" + (
                  f", eval {last['eval_peak_rss_mib'] / first['eval_peak_rss_mib']:.2f}x"
                  if args.eval else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
