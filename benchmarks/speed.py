"""Coding speed: frames per second to encode and decode at 416x240, 832x480 and 1920x1080, split
into network time and entropy-coding time, on CPU and (when present) CUDA.

Entropy-coding time is measured by timing the range coder's calls (z's and y's strings, each
latent's encode_z / decode_z and its coder's encode / decode), with the symbols they code; network
time is the rest. NVC_CODING_THREADS sets the network's thread count (1 by default);
`--range-threads` the range coder's (profile 3 codes a latent's substreams in parallel). With
`--decode-ahead N` (N > 0) the decoder's entropy stage runs N frames ahead on a second thread
(nvc.ahead): its time then overlaps the synthesis, and the network time is not derived
(decode_network_s is null).

Each row also gives the CPU work per decoded frame besides the network (`host_work`: the frame
leaving the model as 8-bit RGB, and its conversion to the 4:2:0 that nvc decode writes), which
bounds a GPU decoder's frame rate.

`--coder-only` times the range coders alone on the symbols of real frames (the demo clip's first
two, an I- and a P-frame, at each size and quality 2): CompressAI's and nvc's, on each thread count.

Example:
    python -m benchmarks.speed --frames 4 --sizes 416x240,832x480 --out out/speed.json
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from nvc import bitstream, codec, decoding
from nvc.codec import CODING_THREADS, encode
from nvc.decoding import decode_stream
from nvc.io import Video, rgb_to_yuv
from nvc.models import rans
from nvc.models.range_coder import TableCoder
from nvc.synthetic import as_video, demo_clip
from nvc.zoo import load_model

SIZES = ((416, 240), (832, 480), (1920, 1080))


class CoderTimer:
    """Wraps the range-coder entry points of every latent codec (or, with `params`, the computation
    of the entropy parameters: the hyper-synthesis and the scale indexes) and sums their wall time
    and the symbols they coded (elements the profile skips are not counted)."""

    def __init__(self, model, params: bool = False):
        self.seconds = 0.0
        self.symbols = 0
        self.targets = [(codec, "_coding_params") for codec in model.latent_codecs()] if params \
            else [(m, name) for codec in model.latent_codecs()
                  for m, names in ((codec, ("encode_z", "decode_z")),
                                   (codec.coder, ("encode", "decode")))
                  for name in names]

    @contextmanager
    def active(self):
        originals = [(m, name, getattr(m, name)) for m, name in self.targets]
        for m, name, fn in originals:
            setattr(m, name, self._timed(fn))
        try:
            yield self
        finally:
            for m, name, _ in originals:
                delattr(m, name)

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            out = None
            try:
                out = fn(*args, **kwargs)
                return out
            finally:
                self.seconds += time.perf_counter() - t0
                self.symbols += _coded_symbols(fn.__name__, args, out)
        return wrapper


def _coded_symbols(name: str, args: tuple, out) -> int:
    if name in ("encode", "decode"):  # TableCoder: (symbols or string, indexes, skip_below)
        indexes, skip_below = args[1], args[2] if len(args) > 2 else 0
        return int(TableCoder.coded(indexes, skip_below).sum())
    coded = args[0] if name == "encode_z" else out  # z: every element is coded
    return coded.numel() if isinstance(coded, torch.Tensor) else 0


LAYOUTS = {"cl": torch.channels_last, "nchw": torch.contiguous_format}
PRECISIONS = bitstream.SYNTHESIS_NAMES
PROFILES = {"rans": bitstream.NumericProfile.SUBSTREAMS, "skip": bitstream.NumericProfile.EXACT_SKIP,
            "exact": bitstream.NumericProfile.EXACT_HYPER, "float": bitstream.NumericProfile.FLOAT}


def _range_threads(n: int) -> None:
    rans.THREADS, rans._pool = n, None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(model, entry, size: tuple[int, int], frames: int, device: torch.device,
            quality: int = 2, profile: str = "rans", ahead: int = 0,
            precision: str = "fp32") -> dict:
    """Network and entropy-coding seconds; `params_s` (part of the network time) is what computing
    the entropy parameters took: the fixed-point hyper-synthesis for the exact profiles."""
    w, h = size
    numeric = PROFILES[profile]
    video = as_video(demo_clip(frames=frames, out_hw=(h, w)))
    synthesis = PRECISIONS[precision]
    encode(Video(video.frames[:2], video.fps), model, entry, quality, profile=numeric,
           synthesis=synthesis)  # warm-up
    timer, params = CoderTimer(model), CoderTimer(model, params=True)
    with timer.active(), params.active():
        _sync(device)
        coded = encode(video, model, entry, quality, intra_period=12, profile=numeric,
                       synthesis=synthesis)
        _sync(device)
        enc_coder, enc_symbols = timer.seconds, timer.symbols
        timer.seconds = params.seconds = 0.0
        timer.symbols = 0
        before, decoding.DECODE_AHEAD = decoding.DECODE_AHEAD, ahead
        try:
            decoded = decode_stream(bitstream.unpack(coded.data), model, entry)
            _sync(device)
        finally:
            decoding.DECODE_AHEAD = before
        dec_coder, dec_symbols = timer.seconds, timer.symbols
    return {"size": f"{w}x{h}", "device": str(device), "frames": frames, "profile": profile,
            "precision": precision,
            "encode_fps": frames / coded.seconds, "decode_fps": frames / decoded.seconds,
            "encode_network_s": coded.seconds - enc_coder, "encode_entropy_s": enc_coder,
            "decode_ahead": ahead,
            "decode_network_s": None if ahead else decoded.seconds - dec_coder,
            "decode_entropy_s": dec_coder,
            "decode_params_s": params.seconds,
            "encode_msymbols_per_s": enc_symbols / max(enc_coder, 1e-9) / 1e6,
            "decode_msymbols_per_s": dec_symbols / max(dec_coder, 1e-9) / 1e6,
            "coding_threads": CODING_THREADS, "range_threads": rans.THREADS}


def host_work(size: tuple[int, int], device: torch.device, repeat: int = 3) -> dict:
    """Milliseconds of CPU work per decoded frame besides the network, best of `repeat`: the frame
    leaving the model as 8-bit RGB (codec.to_numpy: rounded on the device, copied to the host)
    and its conversion to 4:2:0 (what nvc decode writes; on a worker beside the next frame's
    synthesis, decoding.CONVERT_AHEAD). On a GPU they bound the decoder's frame rate."""
    w, h = size
    x = torch.rand(1, 3, h + (-h) % 64, w + (-w) % 64, device=device)
    x = x.contiguous(memory_format=torch.channels_last)

    def best(fn) -> float:
        _sync(device)
        return min(_seconds(fn) for _ in range(repeat)) * 1e3

    rgb = codec.to_numpy(x, h, w)
    return {"host_rgb_ms": best(lambda: codec.to_numpy(x, h, w)),
            "host_yuv_ms": best(lambda: rgb_to_yuv(rgb))}


def coder_speed(model, entry, size: tuple[int, int], threads: list[int], repeat: int = 3) -> list[dict]:
    """M symbols/s of each range coder on the coded elements of an I- and a P-frame of the demo
    clip (profile 3's skip applied): CompressAI's single stream against nvc's substreams on each
    thread count; the best of `repeat` runs."""
    w, h = size
    video = as_video(demo_clip(frames=2, out_hw=(h, w)))
    latents: list[tuple[torch.Tensor, torch.Tensor]] = []
    encode_y = TableCoder.encode

    def spy(coder, symbols, indexes, skip_below=0, substreams=False):
        keep = TableCoder.coded(indexes, skip_below)
        latents.append((symbols[keep].int(), indexes[keep].int()))
        return encode_y(coder, symbols, indexes, skip_below, substreams)
    TableCoder.encode = spy  # type: ignore[method-assign]
    try:
        encode(video, model, entry, 2)
    finally:
        TableCoder.encode = encode_y  # type: ignore[method-assign]
    coder = next(iter(model.latent_codecs())).coder
    n = sum(len(v) for v, _ in latents)

    def best(fn) -> float:
        return min(_seconds(fn) for _ in range(repeat))

    flat = [(v[None, :, None, None].float(), i[None, :, None, None]) for v, i in latents]
    strings = [coder.encode(v, i) for v, i in flat]
    rows = [{"coder": "compressai", "threads": 1, "bytes": sum(map(len, strings)),
             "encode_s": best(lambda: [coder.encode(v, i) for v, i in flat]),
             "decode_s": best(lambda: [coder.decode(s, i) for s, (_, i) in zip(strings, flat)])}]
    arrays = [(v.numpy(), i.numpy()) for v, i in latents]
    ours = [rans.encode(coder.tables, v, i) for v, i in arrays]  # the same bytes on any thread count
    for t in threads:
        _range_threads(t)
        rows.append({"coder": "nvc", "threads": t, "bytes": sum(map(len, ours)),
                     "encode_s": best(lambda: [rans.encode(coder.tables, v, i) for v, i in arrays]),
                     "decode_s": best(lambda: [rans.decode(coder.tables, s, i)
                                               for s, (_, i) in zip(ours, arrays)])})
    runs = sum(len(rans.substream_bounds(len(v))) - 1 for v, _ in latents)
    for r in rows:  # CompressAI's: one stream per latent
        r.update(size=f"{w}x{h}", symbols=n, substreams=runs if r["coder"] == "nvc" else len(latents),
                 encode_msymbols_per_s=n / r["encode_s"] / 1e6,
                 decode_msymbols_per_s=n / r["decode_s"] / 1e6)
    return rows


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def adaptation_speed(model, entry, size: tuple[int, int], frames: int, steps: int,
                     window: int) -> dict:
    """Seconds per adaptation step (LoRA, the whole clip unrolled on a window)."""
    from adapt import AdaptConfig, fit
    from adapt.loop import VideoWindows
    from nvc.io import ColourMatrix
    from nvc.models.ssf import model_device

    w, h = size
    video = as_video(demo_clip(frames=frames, out_hw=(h, w)))
    x = VideoWindows(video, ColourMatrix.BT709, model.cfg.multiple, model_device(model))
    fit(model, x, 2, 12, AdaptConfig(steps=1, window=window))  # warm-up
    t0 = time.perf_counter()
    history = fit(model, x, 2, 12, AdaptConfig(steps=steps, window=window, patience=steps + 1)).history
    seconds = time.perf_counter() - t0
    return {"size": f"{w}x{h}", "frames": frames, "window": window, "steps": len(history),
            "seconds_per_step": seconds / max(len(history), 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__.split("Example")[0],
                                epilog="example:\n  python -m benchmarks.speed --frames 4 --sizes 416x240 "
                                       "--devices cpu",
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=12)
    p.add_argument("--sizes", default=",".join(f"{w}x{h}" for w, h in SIZES))
    p.add_argument("--devices", default="cpu,cuda", help="devices to try; absent ones are skipped")
    p.add_argument("--adapt-steps", type=int, default=5, help="adaptation steps to time (0: skip)")
    p.add_argument("--profiles", default="rans",
                   help="profiles to time, comma-separated: rans (the default: exact entropy "
                        "parameters, small scales not coded, nvc's coder in substreams), skip (the "
                        "same with CompressAI's coder), exact (all coded), float (format 2)")
    p.add_argument("--range-threads", default=str(rans.THREADS),
                   help="range-coder thread counts to time, comma-separated (default: "
                        "NVC_RANGE_THREADS, else every core)")
    p.add_argument("--coder-only", action="store_true",
                   help="time the range coders alone on real frames' symbols (see above)")
    p.add_argument("--layouts", default="cl",
                   help="memory layouts of the network to time, comma-separated: cl "
                        "(channels_last, what nvc loads; the default), nchw")
    p.add_argument("--precisions", default="fp32",
                   help="synthesis precisions to time, comma-separated: fp32 (the default), bf16")
    p.add_argument("--decode-ahead", default="2",
                   help="frames the entropy stage runs ahead of the synthesis when decoding, "
                        "comma-separated to compare (0: both stages in turn on one thread; "
                        "default 2, as nvc decode)")
    p.add_argument("--out", default=None, help="also write the rows as JSON here")
    args = p.parse_args(argv)
    for given, known, what in ((args.profiles, PROFILES, "profile"),
                               (args.precisions, PRECISIONS, "precision"),
                               (args.layouts, LAYOUTS, "layout")):
        unknown = sorted(set(given.split(",")) - set(known))
        if unknown:
            p.error(f"unknown {what}(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    try:
        threads = [int(t) for t in args.range_threads.split(",")]
    except ValueError:
        threads = []
    if not threads or min(threads) < 1:
        p.error(f"--range-threads: positive integers, comma-separated (got {args.range_threads!r})")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    if args.coder_only:
        model, entry = load_model()
        coder_rows = []
        for w, h in sizes:
            with torch.no_grad():
                coder_rows += coder_speed(model, entry, (w, h), threads)
            for r in coder_rows[-len(threads) - 1:]:
                print(f"{r['size']:>9} {r['coder']:>10} {r['threads']} thread(s): "
                      f"{r['symbols']} symbols in {r['substreams']} substreams, {r['bytes']} B; "
                      f"encode {r['encode_msymbols_per_s']:.1f}, decode "
                      f"{r['decode_msymbols_per_s']:.1f} M symbols/s", flush=True)
            if args.out:  # after every size, as the rows below
                Path(args.out).write_text(json.dumps({"coders": coder_rows}, indent=1))
        return 0
    rows, adapt_rows = [], []

    def save() -> None:  # after every row: a run stopped midway (device.sh's deadline) keeps them
        if args.out:
            Path(args.out).write_text(json.dumps({"torch_threads": torch.get_num_threads(),
                                                  "rows": rows, "adaptation": adapt_rows},
                                                 indent=1))
    for dev in args.devices.split(","):
        if dev == "cuda" and not torch.cuda.is_available():
            print("cuda: not available, skipped", file=sys.stderr)
            continue
        device = torch.device(dev)
        model, entry = load_model()
        model.to(device)
        for w, h in sizes:
            for layout, profile, precision, ahead, t in itertools.product(
                    args.layouts.split(","), args.profiles.split(","), args.precisions.split(","),
                    [int(a) for a in args.decode_ahead.split(",")], threads):
                _range_threads(t)
                model.to(memory_format=LAYOUTS[layout])
                with torch.no_grad():
                    rows.append(measure(model, entry, (w, h), args.frames, device, profile=profile,
                                        ahead=ahead, precision=precision))
                r = rows[-1]
                r.update(layout=layout, **host_work((w, h), device))
                network = ("overlapped" if ahead else f"{r['decode_network_s']:.2f} s")
                print(f"{r['device']:>5} {r['size']:>9} {profile:>5} {precision} {layout:>4}: encode "
                      f"{r['encode_fps']:6.2f} fps (network {r['encode_network_s']:.2f} s, entropy "
                      f"{r['encode_entropy_s']:.2f} s), decode {r['decode_fps']:6.2f} fps ahead "
                      f"{ahead} (network {network}, entropy parameters "
                      f"{r['decode_params_s']:.2f} s, entropy {r['decode_entropy_s']:.2f} s), "
                      f"{r['frames']} frames; host per frame {r['host_rgb_ms']:.1f} ms to RGB, "
                      f"{r['host_yuv_ms']:.1f} ms to YUV; range coder {r['encode_msymbols_per_s']:.1f} / "
                      f"{r['decode_msymbols_per_s']:.1f} M symbols/s on {t} range-coder "
                      f"thread(s), {CODING_THREADS} network thread(s)", flush=True)
                save()
        if args.adapt_steps:
            a = adaptation_speed(model, entry, (416, 240), args.frames, args.adapt_steps, 256)
            a["device"] = str(device)
            adapt_rows.append(a)
            print(f"{a['device']:>5} adaptation at {a['size']}, {a['frames']} frames, window "
                  f"{a['window']}: {a['seconds_per_step']:.2f} s/step", flush=True)
            save()
    save()
    return 0


if __name__ == "__main__":
    sys.exit(main())
