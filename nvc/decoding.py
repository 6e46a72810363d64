"""decode(bytes) -> frames: the mirror of codec.py, frame by frame, with only the reference kept.

A stream names the weights it needs (zoo id and hash); its adapters are merged once per clip; the
entropy decoding runs ahead of the synthesis on a second thread; a frame lost to damage is
concealed and the P-frames after it decode from that (`--salvage`).
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import bitstream
from .adapted import apply_unit
from .adapters import LAYER_TABLE
from .ahead import Ahead, Numbered, mapped_ahead
from .bitstream import CodedFrame, NumericProfile, Reader, SequenceHeader, Stream, Synthesis
from .codec import (
    CodedVideo,
    Progress,
    coding,
    no_progress,
    padded_hw,
    quality_argument,
    to_numpy,
    weights_hash,
)
from .errors import BitstreamError, InputError, env_int
from .io import ColourMatrix, LazyFrames, PipeFrames, Video, YUVFrame, rgb_to_yuv, sample_aspect
from .models.ssf import SSF, FrameType, model_device
from .schedule import of_header
from .zoo import DEFAULT_MODEL, ZooEntry, entry_by_id, load_model, missing_model_message

# Frames whose entropy decoding runs ahead of the synthesis, on a second thread (nvc.ahead); 0 runs
# both stages in turn on one (the default on a one-core machine). NVC_DECODE_AHEAD overrides it.
# The exact profiles only: their entropy stage is thread-independent.
MAX_AHEAD = 64  # frames entropy-decoded ahead at most (each holds its latents until synthesised)
DECODE_AHEAD = env_int("NVC_DECODE_AHEAD", 2 if (os.cpu_count() or 1) > 1 else 0, maximum=MAX_AHEAD)
# Decoded frames converted to YUV on a worker while the next frame is synthesised (nvc decode's
# output; 17 ms a 1080p frame on this project's CPU, which a GPU decoder would otherwise wait for).
CONVERT_AHEAD = 1 if (os.cpu_count() or 1) > 1 else 0


@dataclass
class DecodedVideo:
    header: SequenceHeader
    frames: list[np.ndarray]  # RGB float32 (H, W, 3) in [0, 1], 8-bit quantised
    seconds: float = 0.0

    def to_video(self) -> Video:
        m = ColourMatrix(self.header.colour_matrix)
        return Video([rgb_to_yuv(f, m) for f in self.frames],
                     Fraction(self.header.fps_num, self.header.fps_den), matrix=m,
                     aspect=sample_aspect(*self.header.sample_aspect))


def check_weights(header: SequenceHeader, entry: ZooEntry) -> None:
    """The stream must name these weights: by zoo id and hash, or, for a weights file given by the
    user (id 0), by hash alone (so `--weights` decodes a stream of a retired model id)."""
    same_id = header.model_id == entry.model_id or entry.model_id == 0
    if not same_id or header.weights_hash != weights_hash(entry):
        raise BitstreamError(
            f"stream was made for other weights (model id {header.model_id}, weights "
            f"{header.weights_hash.hex()}); loaded {entry.name} (id {entry.model_id}, "
            f"{weights_hash(entry).hex()})")


@torch.no_grad()
def decode_stream(stream: Stream, model: SSF, entry: ZooEntry,
                  progress: Progress = no_progress) -> DecodedVideo:
    header = stream.header
    t0 = time.perf_counter()
    frames = list(iter_decoded(stream, model, entry, progress))
    return DecodedVideo(header, frames, time.perf_counter() - t0)


def decoding_range(numbered: Iterable[tuple[int, CodedFrame | None]], start: int,
                   stop: int | None) -> Iterator[tuple[int, CodedFrame | None]]:
    """The (index, coded frame) a decoder needs for frames `start` .. `stop` - 1: from the last
    I-frame at or before `start` (the frames before it are read, never decoded) to `stop` - 1,
    the rest never read."""
    held: list[tuple[int, CodedFrame | None]] = []  # since the last I-frame before `start`
    i = -1
    for i, cf in numbered:
        if i <= start and cf is not None and cf.kind == FrameType.I:
            held = []
        if i < start:
            held.append((i, cf))
            continue
        yield from held
        held = []
        yield i, cf
        if stop is not None and i + 1 >= stop:
            return
    if i < start:  # a live stream, whose length was not known: it ended before `start`
        raise InputError(f"frame {start} is past the stream's end ({i + 1} frames)")


@torch.no_grad()
def iter_decoded(stream: Stream, model: SSF, entry: ZooEntry, progress: Progress = no_progress,
                 frames: Iterable[CodedFrame | None] | None = None, start: int = 0,
                 stop: int | None = None) -> Iterator[np.ndarray]:
    """Decode frame by frame: RGB float32 (H, W, 3), 8-bit quantised; only the reference is kept.
    `frames`: the coded frames as they are read (bitstream.open_units), else the stream's;
    `start`, `stop`: only frames start .. stop - 1 come out (decoding_range). A frame lost to
    damage (bitstream.LOST, from a reader that salvages) is concealed: the last decoded frame
    moved on by the last P-frame's motion (SSF.extrapolate; repeated where an I-frame came since),
    and is the reference of the P-frame after it: the P-frames up to the next I-frame decode from
    it (they drift; `damage.drift` lists them), as a video decoder goes on after concealing
    (BasketballPass, a P-frame lost: 27.71 dB over the GOP's rest, 21.62 repeating the frame up
    to the next I-frame, 28.14 whole). Frames lost before any was decoded (frame 0, and the
    P-frames after it) show the first frame decoded (`damage.filled`)."""
    header = stream.header
    check_weights(header, entry)
    if stream.adapters is not None:  # merged once per clip; decoding then runs at the base's speed
        model = apply_unit(model, bitstream.AdapterUnit.read(stream.adapters, LAYER_TABLE,
                                                             stream.version))
    if not 1 <= header.quality <= model.cfg.num_qualities:
        raise BitstreamError(f"damaged stream: quality {header.quality} out of range")
    profile = NumericProfile(header.numeric_profile)
    model.tables_for(stream.version)
    if stream.version >= 3 and header.tables_crc != model.tables_crc():
        raise BitstreamError(
            f"cannot decode here: this machine builds other range-coder tables from the weights "
            f"(crc {model.tables_crc():08x}) than the encoder did ({header.tables_crc:08x})")
    m = model.cfg.multiple
    padded = padded_hw(header.height, header.width, m)
    qmap = None if stream.quality_map is None else bitstream.QualityMap.read(
        stream.quality_map, (padded[0] // 16, padded[1] // 16), stream.version)
    device = model_device(model)
    q = quality_argument(header.quality, qmap, device)
    schedule = of_header(header)
    period = header.intra_period
    exact = profile != NumericProfile.FLOAT  # float scales would depend on the worker's threads

    @torch.no_grad()  # grad mode is per thread
    def entropy_stage(item: tuple[int, CodedFrame | None]) -> list[Tensor]:
        i, cf = item
        if cf is None:
            return []
        return model.decode_latents(cf, padded, schedule.frame_q(q, i % period, period, device),
                                    profile)

    # frames read as they arrive from a live stream: not counted until its end unit
    count = len(stream.frames) if frames is None else None if stream.live else header.frame_count
    numbered: Iterable[tuple[int, CodedFrame | None]] = Numbered(
        stream.frames if frames is None else frames, count)
    if start or stop is not None:  # how many frames are decoded depends on where I-frames stand
        numbered = decoding_range(numbered, start, stop)
    ahead = Ahead(numbered, entropy_stage, DECODE_AHEAD if exact else 0, _ready(frames))
    ref: Tensor | None = None  # the last frame decoded (or concealed)
    damage = frames.damage if isinstance(frames, bitstream.FrameUnits) else bitstream.Damage()
    drifting = False  # since a frame was concealed, up to the next I-frame
    waiting = 0  # frames (from `start` on) concealed before any was decoded: the first one shows
    motion: Tensor | None = None  # the last decoded P-frame's motion latent, since an I-frame
    for (i, cf), latents in progress(ahead):
        if cf is None or ref is None and cf.kind == FrameType.P:  # lost, or before any decoded
            damage.concealed.append(i)
            if ref is None:  # frame 0 lost: these show the first frame decoded, once it is
                damage.filled.append(i)
                waiting += i >= start
                continue
            drifting = True
            if motion is not None:  # the motion carried on (BasketballPass: +0.06 to +0.29 dB
                # over the GOP's rest against repeating the frame)
                with coding(model, Synthesis(header.synthesis)):
                    ref = model.extrapolate(ref, motion)
            if i >= start:
                yield to_numpy(ref, header.height, header.width)
            continue
        check_frame_type(i, cf.kind, header.intra_period, stream.version)
        drifting = drifting and cf.kind == FrameType.P
        if drifting:
            damage.drift.append(i)
        try:
            with coding(model, Synthesis(header.synthesis)):
                y_hats = latents()
                ref = model.synthesize(cf.kind, y_hats, ref)
                motion = y_hats[0] if cf.kind == FrameType.P else None
        # the range coders on bytes that passed the CRC: CompressAI's raise RuntimeError or
        # ValueError, nvc's BitstreamError
        except (RuntimeError, ValueError, BitstreamError) as e:
            raise BitstreamError(f"damaged stream: frame {i} cannot be decoded ({e})") from None
        for _ in range(waiting + (i >= start)):
            yield to_numpy(ref, header.height, header.width)
        waiting = 0
    if ref is None and damage.filled:
        raise BitstreamError(f"{damage.first}; no frame after it could be decoded")


def _ready(frames: Iterable[CodedFrame | None] | None) -> Callable[[], bool]:
    """Whether the next coded frame has begun to arrive (a stream read from a pipe: decoding
    does not wait for frames beyond the one it can decode)."""
    return frames.ready if isinstance(frames, bitstream.FrameUnits) else lambda: True


def reconstructions(coded: CodedVideo, model: SSF, entry: ZooEntry) -> Iterable[np.ndarray]:
    """A coded clip's reconstructions, in order: those kept, else decoded from its bytes one at a
    time (the same frames, bit for bit)."""
    return coded.reconstruction or iter_decoded(bitstream.unpack(coded.data), model, entry)


def check_frame_type(index: int, kind: FrameType, intra_period: int, version: int) -> None:
    """Each GOP starts with an I-frame; from format 8 an I-frame may stand anywhere (the encoder's
    choice, code_frames), before it only there."""
    starts_gop = index % intra_period == 0
    misplaced_p = starts_gop and kind != FrameType.I
    misplaced_i = not starts_gop and kind == FrameType.I and version < bitstream.ANY_INTRA_SINCE
    if misplaced_p or misplaced_i:
        raise BitstreamError(f"damaged stream: frame {index} has the wrong type for intra period "
                             f"{intra_period}")


def load_model_for(header: SequenceHeader, model_name: str | None = None,
                   weights: str | Path | None = None) -> tuple[SSF, ZooEntry]:
    """The model a stream needs: a weights file or zoo name if given, else the zoo's entry for the
    stream's model id (a one-line error naming retired or unknown ids)."""
    if weights is None and model_name is None:
        entry = entry_by_id(header.model_id)
        if entry is None:
            raise BitstreamError(missing_model_message(header.model_id))
        model_name = entry.name
    return load_model(model_name or DEFAULT_MODEL, Path(weights) if weights else None)


def open_stream(source: bytes | Reader, model_name: str | None = None,
                weights: str | Path | None = None, device: str | torch.device = "cpu",
                salvage: bool = False) -> tuple[Stream, SSF, ZooEntry, bitstream.FrameUnits]:
    """Read a stream's head (its bytes, or a reader of a file or pipe: bitstream.FileReader)
    and load the model it needs (see load_model_for); its frames come from the returned
    iterator, each read as it is drawn (bitstream.open_units, `salvage` as there)."""
    stream, frames = bitstream.open_units(Reader(source) if isinstance(source, bytes) else source,
                                          salvage)
    model, entry = load_model_for(stream.header, model_name, weights)
    return stream, model.to(device), entry, frames


def decode(data: bytes, model_name: str | None = None, weights: str | Path | None = None,
           device: str | torch.device = "cpu", progress: Progress = no_progress) -> Video:
    """nvc.decode: unpack, find the model in the zoo, merge the stream's adapters, decode. The
    frames come out of the returned Video one at a time as it is iterated (a single pass)."""
    stream, model, entry, frames = open_stream(data, model_name, weights, device)
    return decoded_video(stream, model, entry, progress, frames)


def decoded_video(stream: Stream, model: SSF, entry: ZooEntry,
                  progress: Progress = no_progress,
                  frames: Iterable[CodedFrame | None] | None = None, start: int = 0,
                  count: int | None = None) -> Video:
    """The stream as a Video whose frames are decoded while iterated (one pass, bounded memory);
    `frames`: the coded frames as they are read (open_stream), else the stream's; `start`,
    `count`: frames start .. start + count - 1 only (decoding from the I-frame at or before
    `start`). A live stream read as it arrives has no frame count until it ends (PipeFrames)."""
    h = stream.header
    matrix = ColourMatrix(h.colour_matrix)
    to_yuv = partial(rgb_to_yuv, matrix=matrix)
    stop = None if count is None else start + count

    def decoded() -> Iterator[YUVFrame]:
        return mapped_ahead(iter_decoded(stream, model, entry, progress, frames, start, stop),
                            to_yuv, CONVERT_AHEAD, _ready(frames))
    end = h.frame_count if stop is None else min(stop, h.frame_count)
    out = PipeFrames(decoded()) if stream.live and frames is not None else \
        LazyFrames(max(0, end - start), decoded)
    return Video(out, Fraction(h.fps_num, h.fps_den), size=(h.width, h.height), matrix=matrix,
                 aspect=sample_aspect(*h.sample_aspect))
