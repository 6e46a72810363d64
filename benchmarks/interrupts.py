"""How `nvc encode` into standard output ends when Ctrl-C comes just as it starts coding: every run
should exit 130 with "nvc: interrupted", never hang, never abort.

Each run is a fresh process coding the demo's synthetic motion (40 frames, 64x48, the shipped
weights, `--refine 3`, so the intra trial's thread and the stripes' threads start as the first
frames are coded) into a pipe; SIGINT is sent a random 0 .. `--delay` seconds after its first byte. A run
that has not exited `--timeout` seconds later counts as a hang and is killed. The window is
narrow, so the figures mean most beside other work (`--busy N` runs N busy loops alongside).
Measured in benchmarks/RESULTS.md, "Interrupted runs": before nvc.workers, 2 hangs in 30 runs
and 2 aborts in 55 (two busy loops, 2 cores).

Example:
    python -m benchmarks.interrupts --runs 60 --busy 2
"""
from __future__ import annotations

import argparse
import collections
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _clip(folder: Path) -> Path:
    from nvc.synthetic import as_video, demo_clip
    from nvc.writers import write_video

    clip = folder / "clip.y4m"
    write_video(clip, as_video(demo_clip(40, (48, 64)), source="demo"))
    return clip


def _run_once(clip: Path, delay: float, timeout: float) -> str:
    """'exit N' for a run that exited with status N after its SIGINT, else 'hang'."""
    enc = subprocess.Popen([sys.executable, "-m", "nvc.cli", "encode", str(clip), "-o", "-",
                            "--refine", "3"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                           # SIGINT as at a terminal, whether or not this runs in the background
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert enc.stdout is not None
    enc.stdout.read(1)  # coding has begun
    time.sleep(delay)
    enc.send_signal(signal.SIGINT)
    try:
        return f"exit {enc.wait(timeout=timeout)}"
    except subprocess.TimeoutExpired:
        enc.kill()
        enc.wait()
        return "hang"
    finally:
        enc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                epilog="example:\n  python -m benchmarks.interrupts --runs 60 --busy 2",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=30, help="encodes to interrupt (default 30)")
    p.add_argument("--delay", type=float, default=0.05,
                   help="SIGINT up to this many seconds after the first byte (default 0.05)")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds after SIGINT before a run counts as a hang (default 30)")
    p.add_argument("--busy", type=int, default=0, help="busy loops run alongside (default 0)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    draw = random.Random(args.seed)
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            clip = _clip(Path(tmp))
            for i in range(args.runs):
                outcome = _run_once(clip, draw.uniform(0, args.delay), args.timeout)
                outcomes[outcome] += 1
                print(f"run {i + 1}/{args.runs}: {outcome}", file=sys.stderr, flush=True)
    finally:
        for b in busy:
            b.kill()
    print(", ".join(f"{what}: {n}" for what, n in sorted(outcomes.items())) +
          f" ({args.runs} runs, SIGINT 0-{args.delay:g} s after the first byte, "
          f"{args.busy} busy loops)")
    return 0 if set(outcomes) == {"exit 130"} else 1


if __name__ == "__main__":
    sys.exit(main())
