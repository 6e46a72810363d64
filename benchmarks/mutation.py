"""Kill rate per module from a mutmut run (issue 12: test strength).

    OMP_NUM_THREADS=1 mutmut run --max-children 1      # [tool.mutmut] in pyproject.toml
    python -m benchmarks.mutation                       # reads mutants/**/*.meta

A mutant is killed when a test fails (or times out, or crashes) with it in place. The kill rate is
killed / (killed + survived); mutants no selected test reaches count as survivors, so a module
cannot score by being left untested.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

KILLED = {1, 3, 36, 24, -24, 152, 255, -11, -9}  # test failure, pytest error, timeout, crash
SURVIVED = {0, 5, 33}  # tests passed, or no test covers the mutant
NOT_RUN = {None}


def tally(meta: Path) -> Counter:
    codes = json.loads(meta.read_text())["exit_code_by_key"].values()
    c: Counter = Counter()
    for code in codes:
        c["killed" if code in KILLED else "survived" if code in SURVIVED else
          "not run" if code in NOT_RUN else "other"] += 1
    return c


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mutation", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="example:\n  python -m benchmarks.mutation --root mutants")
    p.add_argument("--root", type=Path, default=Path("mutants"), help="mutmut's work folder")
    args = p.parse_args(argv)
    metas = sorted(args.root.rglob("*.py.meta"))
    if not metas:
        print(f"error: no mutmut results under {args.root} (run `mutmut run` first)",
              file=sys.stderr)
        return 1
    print(f"{'module':28} {'mutants':>8} {'killed':>7} {'survived':>9} {'not run':>8} {'kill rate':>10}")
    for meta in metas:
        c = tally(meta)
        scored = c["killed"] + c["survived"]
        rate = f"{100 * c['killed'] / scored:.1f}%" if scored else "-"
        name = str(meta.relative_to(args.root))[: -len(".meta")]
        print(f"{name:28} {sum(c.values()):>8} {c['killed']:>7} {c['survived']:>9} "
              f"{c['not run']:>8} {rate:>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
