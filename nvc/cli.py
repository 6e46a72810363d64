"""`nvc encode|decode|info|eval|demo`. Errors are one line on stderr and a non-zero exit."""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import math
import os
import sys
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

from . import options
from .errors import Stop, never
from .parser import build_parser

EXIT_ERROR, EXIT_INTERNAL, EXIT_INTERRUPTED = 1, 3, 130
EXIT_PIPE = 128 + 13  # a report's reader closed it: the status a shell gives a tool SIGPIPE ends


def _frames(count: int) -> str:
    return f"{count} frame{'' if count == 1 else 's'}"


def _progress(desc: str):
    from tqdm import tqdm

    def wrap(it):
        return tqdm(it, desc=desc, unit="frame", file=sys.stderr, leave=False, disable=None)
    return wrap


def _load(args):
    from .zoo import DEFAULT_MODEL, load_model

    model, entry = load_model(args.model or DEFAULT_MODEL, Path(args.weights) if args.weights else None)
    return model.to(options.device(args.device)), entry


def _read_input(args, lazy: bool = False, live: bool = False, stop=None):
    from .io import input_name, read_video, sample_aspect

    video = read_video(args.input, size=args.size, fps=args.fps, start=args.start, frames=args.frames,
                       lazy=lazy, progress=_progress(f"reading {input_name(args.input)}"),
                       live=live, stop=stop, samples=args.pix_fmt)
    if args.sample_aspect is None:
        return video
    ratio = args.sample_aspect
    return dataclasses.replace(video, aspect=sample_aspect(ratio.numerator, ratio.denominator))


LIVE_INTERRUPT = "the input ends here; coding the frames read so far"
FILE_INTERRUPT = "stopping after the frame being {}; the frames {} so far are kept"
ADAPT_INTERRUPT = "the adaptation ends here; coding the clip with what it has fitted so far"
EVAL_ADAPT_INTERRUPT = "the adaptation ends here; this quality is measured with what it has " \
    "fitted so far, the ones after it are not"


@contextmanager
def _interrupt_ends_input(what: str | None):
    """With `what` (LIVE_INTERRUPT, FILE_INTERRUPT), the first Ctrl-C ends the input, saying so:
    a pipe coded live ends there, as its end would (the frames read so far are coded and the
    stream closed, nothing lost), also while the reader waits for a source that has stalled; the
    frames of a file coded, or of a stream decoded, into a file (made to stop with nvc.io.Until)
    end after the frame in hand, as x264 and FFmpeg keep what they wrote; an adaptation
    (ADAPT_INTERRUPT, EVAL_ADAPT_INTERRUPT) ends where it is and codes with what it fitted. A
    second Ctrl-C stops at once. Yields the reader's InputStop (what ends the input, asked
    whether it has ended)."""
    import signal
    import threading

    from .y4m import InputStop

    stop = InputStop()
    if what is None or threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def first_ends_input(signum, frame) -> None:
        if stop.ended:
            raise KeyboardInterrupt
        print(f"nvc: interrupted: {what} (Ctrl-C again to stop at once)", file=sys.stderr)
        stop.end()  # raises into a read that waits for bytes, ending it
    previous = signal.signal(signal.SIGINT, first_ends_input)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _written_in_place(output: str) -> bool:
    """Whether `output` is standard output or a device or named pipe (nvc.writers.AtomicFile),
    where what is written stays written: no file to finish or rewrite."""
    from .io import STDIO
    from .writers import AtomicFile

    return output == STDIO or AtomicFile(output).in_place


def _check_output(args, stream: bool = False) -> None:
    """Refuse, before the input is opened, an output that would replace the input (the input is
    read while the output is written, and the finished output is renamed over its path), that is a
    folder, or whose folder does not exist; and for a `stream` (encode's output), a name that says
    video (clip.mp4 would hold nvc bytes no player reads)."""
    from .errors import InputError
    from .io import STDIO, VIDEO_SUFFIXES

    if args.output == STDIO:  # y4m or the stream to standard output; the summary to stderr
        if args.json:
            raise InputError("--json and -o - both write to standard output")
        return
    out = Path(args.output)
    if out.is_dir():
        raise InputError(f"{out}: is a folder; give a file name")
    if not out.parent.is_dir():
        raise InputError(f"{out.parent}: output folder does not exist")
    if out.exists() and Path(args.input).exists() and out.samefile(args.input):
        raise InputError(f"{out}: is the input; give another output name")
    suffix = out.suffix.lower()
    if stream and (suffix in VIDEO_SUFFIXES or suffix == ".png"):
        raise InputError(f"{out}: names a video ({suffix}) but nvc encode writes an nvc stream; "
                         "name it .nvc (nvc decode makes the video)")


def _emit(args, payload: dict, lines: list[str]) -> None:
    """The command's summary: on stdout, unless that carries the output itself (-o -)."""
    from .io import STDIO

    to_stdout = getattr(args, "output", None) != STDIO
    print(json.dumps(_json_safe(payload), indent=2, allow_nan=False) if args.json
          else "\n".join(lines), file=sys.stdout if to_stdout else sys.stderr)


def _json_safe(value):
    """The payload with every infinite or NaN number (the PSNR of a plane decoded exactly) as
    null: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


# -- commands -------------------------------------------------------------------------------------
def cmd_encode(args) -> None:
    from .io import Until, is_pipe

    _check_output(args, stream=True)
    options.check_roi(args)
    # coding streams the clip (a pipe as it arrives, a live stream); the fit reads it a window at
    # a time, a region or task map may need every frame first: from a pipe those are spooled
    options.check_bitrate(args)
    live = is_pipe(args.input) and not (args.adapt or args.roi or args.task_model or args.bitrate)
    # a file's coding ends early into a file only: the count in the head is rewritten there
    file = not (live or args.adapt or args.bitrate is not None or _written_in_place(args.output))
    with _interrupt_ends_input(ADAPT_INTERRUPT if args.adapt else LIVE_INTERRUPT if live else
                               FILE_INTERRUPT.format("coded", "coded") if file else None) as stop:
        video = _read_input(args, lazy=True, live=live, stop=None if args.adapt else stop)
        _encode(args, dataclasses.replace(video, frames=Until(video.frames, stop)) if file
                else video, stop)


def _encode(args, video, stop: Stop) -> None:
    """Code `video` as the encode command's options say, into its output, and print the summary;
    `stop`: True ends an adaptation where it is (adapt.encode_adaptive), or the refinement of
    the frame in hand (nvc.codec.code_frames)."""
    from .codec import encode_to
    from .io import random_access
    from .metrics import bitrate, bpp
    from .writers import open_output

    model, entry = _load(args)
    extra: dict = {}
    lines: list[str] = []
    rated = None
    if args.bitrate is not None:
        video = random_access(video)  # probed, then coded
        rated = _quality_for_bitrate(args, video, model, entry)
        extra, lines = rated.fields, [rated.line]
    with open_output(args.output) as sink:
        if rated is not None and rated.whole_clip is not None:  # the probe was the clip
            size, seconds, frames = sink.write(rated.whole_clip), 0.0, len(video.frames)
        elif args.adapt:  # the fit reads windows of any GOP in any order
            result = _encode_adaptive(args, random_access(video), model, entry, stop=stop)
            sink.write(result.coded.data)
            size, seconds = len(result.coded.data), result.coded.seconds
            extra = _adapt_summary(result)
            lines.append(_adapt_line(result))
        else:
            size, seconds, frames = encode_to(
                sink, video, model, entry, intra_period=args.intra_period,
                progress=_progress("encode"), objective=options.objective(args, video), stop=stop,
                **options.coding(args, video, model, args.quality))
    frames = len(video.frames) if args.adapt else frames
    seconds += rated.seconds if rated is not None else 0.0  # the probes are encoding time
    rate, bits = bpp(size, video.width, video.height, frames), bitrate(size, float(video.fps), frames)
    _emit(args, {"output": str(args.output), "bytes": size, "bpp": rate,
                 "bitrate": bits, "frames": frames, "seconds": seconds, **extra},
          [f"{args.output}: {_frames(frames)} {video.width}x{video.height}, "
           f"{size} bytes, {rate:.4f} bpp, {bits / 1000:.1f} kb/s, {seconds:.1f} s"] + lines)


@dataclasses.dataclass
class _Rated:
    fields: dict  # the summary's JSON fields
    line: str  # and its line
    seconds: float  # spent probing
    whole_clip: bytes | None  # the file at the quality found, where the probe was the clip


def _quality_for_bitrate(args, video, model, entry) -> _Rated:
    """Set args.quality to the quality whose probe (nvc.ratecontrol) meets --bitrate."""
    from io import BytesIO

    from .codec import encode_to
    from .io import frames_of
    from .metrics import bitrate
    from .models.config import LADDER_BELOW
    from .objective import PLAIN_STREAM
    from .ratecontrol import TOLERANCE, find_quality, probe_frames

    if args.roi:
        options.roi_mask(args, video)  # made from the whole clip, before any probe asks for it
    indexes = probe_frames(len(video.frames), args.intra_period)
    probe = frames_of(video, indexes)
    target = args.bitrate / float(video.fps) / 8 * len(indexes)  # the probe's bytes at the rate
    # the probe codes as the clip would where it is the clip and nothing weights its pixels
    kept: dict[float, bytes] | None = {} if len(indexes) == len(video.frames) and not (
        args.roi or args.task_model) else None
    t0 = time.perf_counter()

    def coded_bytes(q: float) -> int:
        sink = BytesIO()
        size, _, _ = encode_to(sink, probe, model, entry, intra_period=args.intra_period,
                               progress=_progress(f"probe q{q:g}"), objective=PLAIN_STREAM,
                               **options.coding(args, probe, model, q))
        if kept is not None:
            kept[q] = sink.getvalue()
        return size
    found = find_quality(coded_bytes, target, 1 - LADDER_BELOW, model.cfg.num_qualities)
    args.quality = found.quality
    fields = {"bitrate_target": args.bitrate, "quality": found.quality,
              "probe_frames": len(indexes), "probes": {f"{q:g}": n for q, n in found.probes.items()}}
    probe_rate = bitrate(found.bytes, float(video.fps), len(indexes))
    line = (f"quality {found.quality:g} for {args.bitrate / 1000:g} kb/s: its probe ({len(indexes)} "
            f"of {len(video.frames)} frames, {len(found.probes)} qualities tried) codes at "
            f"{probe_rate / 1000:.1f} kb/s")
    if found.quality in (1 - LADDER_BELOW, model.cfg.num_qualities) and \
            abs(probe_rate / args.bitrate - 1) > TOLERANCE:
        line += f" (the ladder's {'lowest' if probe_rate > args.bitrate else 'top'} quality: the " \
                "target lies beyond its reach)"
    return _Rated(fields, line, time.perf_counter() - t0,
                  None if kept is None else kept[found.quality])


def _encode_adaptive(args, video, model, entry, quality=None,
                     stop: Stop = never):
    from tqdm import tqdm

    from adapt import encode_adaptive

    cfg = options.adapt_config(args)
    q = args.quality if quality is None else quality
    fit_bar: list = []  # the fit's bar, from its first step until the next file is coded

    def on_step(stats, base_cost):
        if not fit_bar:
            fit_bar.append(tqdm(total=cfg.steps, desc=f"q{q:g} adapt", unit="step",
                                file=sys.stderr, leave=False, disable=None))
        gain = 100 * (base_cost - stats.objective) / base_cost
        fit_bar[0].set_postfix_str(f"bpp {stats.bpp:.3f} PSNR {stats.psnr_db:.2f} dB RD gain "
                                   f"{gain:+.1f}%")
        fit_bar[0].update()

    def coding(what: str):  # each candidate file the adaptive encoder codes: a bar over frames
        while fit_bar:
            fit_bar.pop().close()
        return _progress(f"q{q:g} {what}")
    weights = None
    if args.roi:
        from .roi import pixel_weights

        weights = pixel_weights(options.roi_mask(args, video), args.roi_weight)
    try:
        # without --gop-schedule, the default slides with the positions the search codes
        settings = {**options.coding(args, video, model, q),
                    **({"schedule": None} if args.gop_schedule is None else {})}
        result = encode_adaptive(video, model, entry, intra_period=args.intra_period, cfg=cfg,
                                 on_step=on_step, weights=weights, task=options.task_model(args),
                                 progress=coding, stop=stop, **settings)
    finally:
        while fit_bar:
            fit_bar.pop().close()
    # encode time includes fitting (a copy: the kept file may be the base's, which keeps its own)
    result.coded = dataclasses.replace(result.coded, seconds=result.total_seconds)
    return result


def _adapt_summary(r) -> dict:
    return {"adapted": r.adapted, "kept": r.mode, "base_bytes": r.base_bytes,
            "adapted_bytes": r.adapted_bytes,
            "adapter_bytes": r.adapter_bytes, "base_rd_cost": r.base_cost,
            "adapted_rd_cost": r.adapted_cost, "adapt_steps": r.steps,
            "adapt_seconds": r.fit_seconds, "ladder_quality": r.position + 1,
            "candidates": {name: {"bytes": n, "rd_cost": c} for name, (n, c) in r.candidates.items()}}


def _adapt_line(r) -> str:
    coded = r.adapted_cost is not None
    verdict = {"adapters": "kept",
               "encoder-only": "dropped; the free encoder-only fine-tuning kept",
               "base": "dropped: they did not lower the clip's RD cost" if coded else
               "not coded: the fit found none better than the base"}[r.mode]
    size, adapted = (f"{r.adapter_bytes} bytes, ", f"adapters {r.adapted_cost:.4f}, ") if coded \
        else ("", "")
    return (f"adapters {verdict} ({size}{r.steps} steps in {r.fit_seconds:.1f} s; "
            f"RD cost: base {r.base_cost:.4f}, {adapted}kept "
            f"{r.candidates[r.mode][1]:.4f}; coded at ladder quality {r.position + 1:g})")


SALVAGE_HINT = "(--salvage conceals the frames it damages and decodes the rest)"


def cmd_decode(args) -> None:
    from . import bitstream
    from .decoding import decoded_video, open_stream
    from .errors import BitstreamError, InputError, StreamCut
    from .io import Until, input_name
    from .writers import write_video

    _check_output(args)
    if args.start < 0:
        raise InputError(f"--start must be >= 0, got {args.start}")
    t0 = time.perf_counter()
    with _stream_input(args.input) as f:  # frames are decoded as their units arrive
        try:
            stream, model, entry, frames = open_stream(f, args.model, args.weights,
                                                       options.device(args.device), args.salvage)
        except bitstream.ChecksumError as e:  # in the head: frame 0's, or the adapters', it may be
            if args.salvage or e.kind_code in (bitstream.UnitType.SEQUENCE_HEADER,
                                               bitstream.UnitType.QUALITY_MAP):
                raise
            raise BitstreamError(f"{e} {SALVAGE_HINT}") from None
        h = stream.header
        if args.start and not stream.live and args.start >= h.frame_count:
            raise InputError(f"{args.input}: --start {args.start} is past its end ({h.frame_count} "
                             "frames)")
        frames.keep_cut = True  # a live recording whose writer was stopped: keep what came
        video = decoded_video(stream, model, entry, _progress("decode"), frames, args.start,
                              args.frames)
        file = not _written_in_place(args.output)
        try:
            with _interrupt_ends_input(FILE_INTERRUPT.format("decoded", "decoded") if file
                                       else None) as interrupt:
                handed = Until(video.frames, interrupt) if file else None
                write_video(args.output, video if handed is None else
                            dataclasses.replace(video, frames=handed.as_frames()))
        except BitstreamError as e:
            if e is not frames.cut:  # not a unit that could not be read
                raise
            end_of_live = stream.live and isinstance(e, bitstream.ChecksumError) and \
                e.kind_code == bitstream.UnitType.END  # (its frames all came)
            if isinstance(e, (bitstream.Misnumbered, bitstream.ChecksumError, bitstream.Unreadable)) \
                    and not end_of_live:
                raise BitstreamError(f"{e} {SALVAGE_HINT}") from None
            if frames.count <= args.start:
                raise
            raise BitstreamError(f"{e} (--salvage writes the {frames.count - args.start} frames "
                                 "before it)") from None
    damage, log, name = frames.damage, logging.getLogger("nvc"), input_name(args.input)
    if damage.adapters is not None:
        log.warning("%s: %s, the adapter unit: decoded with the base decoder (the frames differ "
                    "from the encoder's)", name, damage.adapters)
    if damage.first is not None and not damage.concealed:  # a unit repeated, or bytes inserted
        log.warning("%s: %s: passed over, no frame lost", name, damage.first)
    elif damage.first is not None:
        drift = f"; {_frames(len(damage.drift))} decoded from " \
                f"{'them' if len(damage.concealed) > 1 else 'it'} up to the next I-frame: " \
                f"{_ranges(damage.drift)}" if damage.drift else ""
        log.warning(
            "%s: %s%s; %s concealed (the last decoded frame, moved on by its motion%s): %s%s",
            name, damage.first, f"; {len(damage.lost)} frames lost in all" if len(damage.lost) > 1
            else "", _frames(len(damage.concealed)),
            "; before any was decoded, the first one" if damage.filled else "",
            _ranges(damage.concealed), drift)
    if frames.cut is not None:
        cut = isinstance(frames.cut, (bitstream.Truncated, StreamCut))
        log.warning("%s: %s; decoded the %d frames before the %s", name, frames.cut, frames.count,
                    "cut" if cut else "damage")
    stop = frames.count if args.frames is None else min(frames.count, args.start + args.frames)
    written, seconds = max(stop - args.start, 0), time.perf_counter() - t0
    if handed is not None and interrupt.ended:  # not the frames decoded ahead of the last written
        written = handed.handed
    _emit(args, {"output": str(args.output), "frames": written, "width": h.width,
                 "height": h.height, "seconds": seconds, "cut_short": frames.cut is not None,
                 "lost_frames": len(damage.lost), "concealed_frames": len(damage.concealed),
                 "drift_frames": len(damage.drift), "adapters_lost": damage.adapters is not None},
          [f"{args.output}: {_frames(written)} {h.width}x{h.height}, {seconds:.1f} s"])


def _ranges(indices: list[int]) -> str:
    """Sorted frame indices as `3-11, 40`."""
    runs: list[list[int]] = []
    for i in indices:
        if runs and i == runs[-1][1] + 1:
            runs[-1][1] = i
        else:
            runs.append([i, i])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)


def _read_stream(path: str) -> bytes:
    """An nvc stream's bytes: a file, or standard input for `-`."""
    with _stream_input(path) as reader:
        return reader.take_all()


@contextmanager
def _stream_input(path: str):
    """A reader of an nvc stream (bitstream.FileReader): a file, or standard input for `-`
    (refused when it is empty), read as it arrives. What is wrong with the stream's bytes is
    raised under the input's name."""
    from .bitstream import FileReader
    from .errors import InputError
    from .io import input_name, is_pipe, open_pipe

    with ExitStack() as files:
        if is_pipe(path):  # unbuffered, so that FileReader.ready sees every byte that has arrived
            reader = FileReader(open_pipe(path, "an nvc stream",
                                          "nvc encode IN -o - | nvc decode - -o OUT.y4m", raw=True))
            if reader.done:
                raise InputError(f"{input_name(path)}: no nvc stream (nothing was read)")
        else:
            if not Path(path).is_file():
                raise InputError(f"{path}: is a directory, not an nvc stream" if Path(path).is_dir()
                                 else f"{path}: no such file")
            reader = FileReader(files.enter_context(open(path, "rb")))
        with _named(input_name(path)):
            yield reader


@contextmanager
def _named(name: str):
    """What is wrong with a stream's bytes, raised under its file's name."""
    from .errors import BitstreamError

    try:
        yield
    except BitstreamError as e:
        raise BitstreamError(f"{name}: {e}") from None


def cmd_info(args) -> None:
    from .info import describe
    from .io import input_name

    data = _read_stream(args.input)
    with _named(input_name(args.input)):
        info, lines = describe(data, str(args.input))
    _emit(args, info, lines)
    if info["damage"]:
        logging.getLogger("nvc").warning("%s: damaged (%s); nvc decode --salvage decodes what it "
                                         "holds", args.input, "; ".join(info["damage"]))


def _or_dash(value: float | None, width: int, digits: int) -> str:
    return f"{'-':>{width}}" if value is None else f"{value:>{width}.{digits}f}"


def _eval_lines(rows) -> list[str]:
    q = max([2] + [len(f"{r.quality:g}") for r in rows])  # fractional qualities: 2.5, 2.53125
    head = f"{'q':>{q}} {'bytes':>9} {'bpp':>7} {'PSNR-RGB':>8} {'PSNR-YUV':>8} {'MS-SSIM':>7} " \
           f"{'enc s':>6} {'dec s':>6}"
    return [head] + [f"{r.quality:>{q}g} {r.bytes:>9} {r.bpp:>7.4f} {r.psnr_rgb_db:>8.2f} "
                     f"{r.psnr_yuv_db:>8.2f} {_or_dash(r.ms_ssim, 7, 4)} {r.encode_seconds:>6.1f} "
                     f"{r.decode_seconds:>6.1f}" for r in rows]


def cmd_eval(args) -> None:
    from .evaluate import check_bit_exact
    from .io import random_access

    # coding, decoding and scoring stream the clip; adaptation reads it a window at a time
    video = _read_input(args, lazy=True)
    if args.adapt:
        video = random_access(video)
    options.check_roi(args)
    model, entry = _load(args)
    rows, adapted, notes = [], [], []
    regions: dict[tuple[str, float], dict] = {}
    # each quality whole, or not at all; with --adapt the first Ctrl-C ends the quality's fit and
    # it is measured with what was fitted, the ones after it not
    with _interrupt_ends_input(EVAL_ADAPT_INTERRUPT if args.adapt else None) as stop:
        try:
            for q in args.quality:
                row, region, more = _eval_quality(args, video, model, entry, q, stop)
                rows.append(row)
                regions[("base", q)] = region
                if more is not None:
                    adapted.append(more[:2])
                    regions[("adapted", q)] = more[2]
                    notes.append(f"q{q}: " + _adapt_line(more[1]))
                if stop():
                    break
        except KeyboardInterrupt:  # the qualities measured are reported; none: nothing to keep
            if not rows:
                raise
    left = args.quality[len(rows):]  # the qualities a Ctrl-C left unmeasured
    if left:
        print(f"nvc: interrupted: reporting {_qualities(args.quality[:len(rows)])}; "
              f"{_qualities(left)} not measured", file=sys.stderr)
    check_bit_exact(rows + [row for row, _ in adapted])
    payload = {"input": str(args.input), "model": entry.name,
               "results": [{**r.as_dict(), **regions[("base", r.quality)]} for r in rows],
               **({"not_measured": left} if left else {})}
    lines = [f"{args.input}: {_frames(len(video.frames))} {video.width}x{video.height}, "
             f"model {entry.name}, intra period {args.intra_period}", "base:"] + _eval_lines(rows)
    if args.adapt:
        payload["adapted"] = [{**row.as_dict(), **_adapt_summary(r),
                               **regions[("adapted", row.quality)]} for row, r in adapted]
        lines += [f"adapted ({args.adapter}, encode seconds include fitting):"]
        lines += _eval_lines([row for row, _ in adapted]) + notes
    for (kind, q), v in regions.items():
        parts = [f"ROI PSNR-RGB {_or_dash(v['roi_psnr_db'], 0, 2)} dB, background "
                 f"{_or_dash(v['background_psnr_db'], 0, 2)} dB" if args.roi else "",
                 f"FMSE {v['fmse']:.4f}" if "fmse" in v else "",
                 f"top-1 agreement {v['top1_agreement']:.2f}" if "top1_agreement" in v else ""]
        if any(parts):
            lines.append(f"{kind} q{q:g}: " + "; ".join(x for x in parts if x))
    _emit(args, payload, lines)


def _qualities(qs: list[float]) -> str:
    return ", ".join(f"q{q:g}" for q in qs)


def _eval_quality(args, video, model, entry, q: float, stop: Stop):
    """eval's figures at quality `q`: the base row, its region and task figures, and with --adapt
    (the adapted row, the adaptive encode, its figures), else None. `stop`: True ends the
    adaptation where it is (adapt.encode_adaptive)."""
    from .codec import encode
    from .evaluate import evaluate, evaluate_coded

    if not (args.adapt or args.roi or args.task_model):
        return evaluate(video, model, entry, intra_period=args.intra_period,
                        progress=_progress(f"q{q:g}"), label=q,
                        **options.coding(args, video, model, q)), {}, None
    r = _encode_adaptive(args, video, model, entry, quality=q, stop=stop) if args.adapt \
        else None
    base = r.base if r is not None else encode(  # the adaptive encoder's base is this file
        video, model, entry, intra_period=args.intra_period, progress=_progress(f"q{q:g}"),
        objective=options.objective(args, video), keep=False,
        **options.coding(args, video, model, q))
    on_frame, figures = options.region_scores(args, video)
    matrix = options.colour_matrix(args, video)
    row = evaluate_coded(video, base, model, entry, q, matrix, progress=_progress(f"q{q:g}"),
                         on_frame=on_frame)
    region = figures()
    if r is None:
        return row, region, None
    on_frame, figures = options.region_scores(args, video)
    return row, region, (evaluate_coded(video, r.coded, model, entry, q, matrix,
                                        on_frame=on_frame), r, figures())


def cmd_demo(args) -> None:
    from . import bitstream
    from .codec import encode
    from .decoding import decode_stream
    from .evaluate import check_bit_exact, score
    from .synthetic import as_video, demo_clip
    from .writers import AtomicFile, write_video

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    video = as_video(demo_clip(frames=args.frames), source="demo")
    write_video(out / "demo_source.y4m", video)
    model, entry = _load(args)
    coded = encode(video, model, entry, args.quality, args.intra_period, progress=_progress("encode"))
    with AtomicFile(out / "demo.nvc") as tmp:
        tmp.write_bytes(coded.data)
    decoded = decode_stream(bitstream.unpack(coded.data), model, entry, progress=_progress("decode"))
    row = score(video, coded, decoded, args.quality)
    check_bit_exact([row])
    write_video(out / "demo_decoded.mp4", decoded.to_video())
    _emit(args, {"out_dir": str(out), **row.as_dict()}, [
        f"nvc demo: {args.frames} frames {video.width}x{video.height} of scikit-image photographs "
        f"under synthetic camera and object motion, model {entry.name}, quality {args.quality}",
        *_eval_lines([row]),
        f"bit-exact decode: {row.bit_exact}",
        f"wrote {out / 'demo_source.y4m'}, {out / 'demo.nvc'}, {out / 'demo_decoded.mp4'}",
    ])


COMMANDS = {"encode": cmd_encode, "decode": cmd_decode, "info": cmd_info, "eval": cmd_eval,
            "demo": cmd_demo}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _log_like_errors(args.verbose)
    from .errors import NvcError

    try:
        COMMANDS[args.command](args)
    except NvcError as e:
        print(f"nvc: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("nvc: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # standard output's reader went away
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush
        from .io import STDIO

        if getattr(args, "output", None) != STDIO:  # a report (info, a summary) read in part,
            return EXIT_PIPE  # as `nvc info IN | head` reads it: quiet, as a shell's tools are
        print("nvc: error: the output pipe was closed by its reader", file=sys.stderr)  # a player
        return EXIT_ERROR
    except OSError as e:
        if e.errno not in _REFUSED_BY_THE_SYSTEM:
            return _internal_error(e, args.verbose)
        print(f"nvc: error: {_system_refusal(e)}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        return _internal_error(e, args.verbose)
    return 0


class _Lines(logging.Formatter):
    """Warnings in the errors' form, `nvc: warning: ...`; -v adds the module that logged."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        where = f" ({record.name})" if self.verbose else ""
        return f"nvc: {record.levelname.lower()}{where}: {record.getMessage()}"


def _log_like_errors(verbose: bool) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(_Lines(verbose))
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, handlers=[handler])


# What the system refuses that a user can mend (space, permissions, limits): one line, exit 1.
_REFUSED_BY_THE_SYSTEM = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS,
                          errno.EMFILE, errno.ENFILE, errno.EFBIG, errno.EIO,
                          errno.ENXIO, errno.ENODEV}  # a socket or a device named for a file


def _system_refusal(e: OSError) -> str:
    what = (e.strerror or str(e))[:1].lower() + (e.strerror or str(e))[1:]
    if e.filename:
        return f"{e.filename}: {what}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{what} (writing the output, or spooling to TMPDIR)"
    return what


def _internal_error(e: Exception, verbose: bool) -> int:
    """A bug, not bad input: still one line unless --verbose."""
    if verbose:
        raise e
    print(f"nvc: internal error: {type(e).__name__}: {e} (rerun with -v for details)",
          file=sys.stderr)
    return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
