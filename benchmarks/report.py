"""Turn cached points into BD-rates, a markdown table and RD plots."""
from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from nvc.metrics import bd_rate, mean_or_none

METRICS = ("psnr_rgb_db", "psnr_yuv_db")


def _curves(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    curves = defaultdict(list)
    for r in records:
        curves[(r["sequence"], r["codec"])].append(r)
    return {k: sorted(v, key=lambda r: r["bpp"]) for k, v in curves.items()}


def _bd(anchor: list[dict], test: list[dict], metric: str) -> float | None:
    try:
        return bd_rate([r["bpp"] for r in anchor], [r[metric] for r in anchor],
                       [r["bpp"] for r in test], [r[metric] for r in test])
    except ValueError:  # curves that do not overlap in quality have no BD-rate
        return None


def summarize(records: list[dict], codecs: list[str], anchor: str) -> dict:
    curves = _curves(records)
    sequences = sorted({r["sequence"] for r in records})
    bd = {m: {c: {} for c in codecs} for m in METRICS}
    for metric in METRICS:
        for codec in codecs:
            for seq in sequences:
                bd[metric][codec][seq] = _bd(curves[(seq, anchor)], curves[(seq, codec)], metric)
            vals = [v for v in bd[metric][codec].values() if v is not None]
            bd[metric][codec]["mean"] = float(np.mean(vals)) if vals else None
    averages = {}
    for codec in codecs:
        by_point = defaultdict(list)
        for r in records:
            if r["codec"] == codec:
                by_point[r["point"]].append(r)
        averages[codec] = sorted(({"point": pt, **{k: mean_or_none([r[k] for r in rs]) for k in
                                   ("bpp", "psnr_rgb_db", "psnr_yuv_db", "ms_ssim",
                                    "encode_seconds", "decode_seconds")}}
                                  for pt, rs in by_point.items()), key=lambda d: d["bpp"])
    return {"anchor": anchor, "sequences": sequences, "bd_rate_percent": bd, "average_points": averages}


def _plot(curves: dict[str, list[dict]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 4))
    for codec, pts in curves.items():
        ax.plot([r["bpp"] for r in pts], [r["psnr_rgb_db"] for r in pts], "o-", label=codec)
    ax.set(xlabel="bpp (all bytes)", ylabel="PSNR-RGB (dB)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_plots(records: list[dict], codecs: list[str], summary: dict, out: Path) -> list[str]:
    """One RD plot per sequence and one of the points averaged over sequences (`summarize`'s)."""
    curves = _curves(records)
    names = []
    for seq in sorted({r["sequence"] for r in records}):
        _plot({c: curves.get((seq, c), []) for c in codecs}, seq, out / f"rd_{seq}.png")
        names.append(f"rd_{seq}.png")
    _plot(summary["average_points"], "mean over sequences", out / "rd_average.png")
    return ["rd_average.png"] + names


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f}%"


def _fmt_metric(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def write_markdown(results: dict, plots: list[str], path: Path) -> None:
    s, prov = results["summary"], results["provenance"]
    codecs = prov["codecs"]
    lines = [f"# RD results ({Path(results['manifest']).stem})", "",
             f"BD-rate against **{s['anchor']}** (PCHIP Bjøntegaard, negative = fewer bits).", ""]
    for metric in METRICS:
        lines += [f"## BD-rate, {metric.replace('_db', '').replace('_', '-').upper()}", "",
                  "| sequence | " + " | ".join(codecs) + " |",
                  "|---|" + "---|" * len(codecs)]
        for seq in s["sequences"] + ["mean"]:
            lines.append(f"| {seq} | " + " | ".join(_fmt(s["bd_rate_percent"][metric][c][seq])
                                                 for c in codecs) + " |")
        lines.append("")
    lines += ["## Average RD points", "", "| codec | point | bpp | PSNR-RGB | PSNR-YUV | MS-SSIM | "
              "enc s | dec s |", "|---|---|---|---|---|---|---|---|"]
    for codec in codecs:
        for p in s["average_points"][codec]:
            lines.append(f"| {codec} | {p['point']} | {p['bpp']:.4f} | {p['psnr_rgb_db']:.2f} | "
                         f"{p['psnr_yuv_db']:.2f} | {_fmt_metric(p['ms_ssim'])} | "
                         f"{p['encode_seconds']:.2f} | {p['decode_seconds']:.2f} |")
    lines += ["", "## Provenance", "", "```json", json.dumps(prov, indent=1), "```", ""]
    lines += [f"![{p}]({p})" for p in plots]
    path.write_text("\n".join(lines) + "\n")
