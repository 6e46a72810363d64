"""BD-rate of one benchmark run's codec against another run's (say, a new base against the old):
reads two results.json files written by benchmarks.rd and prints per-sequence BD-rates.

Example:
    python -m benchmarks.compare out/rd-v2/results.json out/rd-v3/results.json --codec nvc
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from nvc.metrics import bd_rate

METRICS = ("psnr_rgb_db", "psnr_yuv_db")


def curves(results: dict, codec: str) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in results["points"]:
        if r["codec"] == codec:
            out.setdefault(r["sequence"], []).append(r)
    return {k: sorted(v, key=lambda r: r["bpp"]) for k, v in out.items()}


def compare(anchor: dict, test: dict, codec: str, test_codec: str | None = None) -> dict:
    """{metric: {sequence: BD-rate % or None, "mean": ...}} of `test` against `anchor`."""
    a, t = curves(anchor, codec), curves(test, test_codec or codec)
    table: dict[str, dict] = {}
    for metric in METRICS:
        row: dict[str, float | None] = {}
        for seq in sorted(set(a) & set(t)):
            try:
                row[seq] = bd_rate([r["bpp"] for r in a[seq]], [r[metric] for r in a[seq]],
                                   [r["bpp"] for r in t[seq]], [r[metric] for r in t[seq]])
            except ValueError:  # no overlap in quality
                row[seq] = None
        values = [v for v in row.values() if v is not None]
        row["mean"] = float(np.mean(values)) if values else None
        table[metric] = row
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("Example")[0],
                                epilog="example:\n  python -m benchmarks.compare "
                                       "out/rd-v2/results.json out/rd-v3/results.json --codec nvc",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("anchor", help="results.json of the anchor run")
    p.add_argument("test", help="results.json of the run under test")
    p.add_argument("--codec", default="nvc", help="the codec to compare (default nvc)")
    p.add_argument("--test-codec", default=None, help="its name in the test run, if it differs")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        runs = [json.loads(Path(f).read_text()) for f in (args.anchor, args.test)]
    except (OSError, ValueError) as e:
        print(f"benchmarks.compare: error: {e}", file=sys.stderr)
        return 1
    table = compare(*runs, args.codec, args.test_codec)
    if args.json:
        print(json.dumps(table, indent=1))
        return 0
    seqs = [k for k in table[METRICS[0]] if k != "mean"] + ["mean"]
    print(f"| sequence | {' | '.join(f'BD-rate {m}' for m in METRICS)} |")
    print("|---|" + "---|" * len(METRICS))
    for s in seqs:
        cells = [table[m][s] for m in METRICS]
        print(f"| {s} | " + " | ".join("n/a" if c is None else f"{c:+.1f}%" for c in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
