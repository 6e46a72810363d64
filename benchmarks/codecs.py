"""The codecs a benchmark can run, each as `run(source, point, conditions) -> PointResult`."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from nvc.evaluate import EvalResult, Quality, check_bit_exact, evaluate, evaluate_coded, measure
from nvc.io import Video

from .anchors import ANCHORS, CRF_SWEEP, run_anchor


@dataclass
class Conditions:
    intra_period: int = 12
    frames: int = 96
    qualities: tuple[float, ...] = (1, 2, 3, 4)  # fractions and qualities below 1: nvc's base only
    crfs: tuple[int, ...] = CRF_SWEEP
    device: str = "cpu"
    adapt_steps: int = 100  # budget of the adapted codecs (nvc-adapt, nvc-dora, nvc-full)
    adapt_window: int = 256  # fitting window in pixels
    weights: str | None = None  # a weights file for nvc instead of the shipped base
    gop_schedule: str | None = None  # nvc's GOP quality schedule, "LIFT,DROP,SLOPE" or "0" (None:
    # nvc's default)
    refine: int = 0  # nvc's encoder-side latent refinement steps (nvc.refine; 0: off)
    refine_bf16: bool = False  # the steps' synthesis in bfloat16 (nvc encode --refine-precision)

    def refinement(self):
        from nvc.refine import Refinement

        return Refinement(self.refine, bf16_steps=self.refine_bf16)


@dataclass
class PointResult(Quality):
    codec: str
    point: str  # "q2" or "crf27"
    encode_seconds: float
    decode_seconds: float
    version: str = ""


def points(codec: str, cond: Conditions) -> list[str]:
    """Rate points of a codec: CRFs for the anchors, qualities for nvc and its adapted forms."""
    if codec in ANCHORS:
        return [f"crf{c}" for c in cond.crfs]
    return [f"q{q:g}" for q in cond.qualities]


_MODEL = {}


def nvc_weights_sha256(cond: Conditions) -> str:
    from pathlib import Path

    from nvc.zoo import DEFAULT_MODEL, ZOO, sha256_file

    return sha256_file(Path(cond.weights)) if cond.weights else ZOO[DEFAULT_MODEL].sha256


def _nvc_model(cond: Conditions):
    key = (cond.device, cond.weights)
    if key not in _MODEL:
        from pathlib import Path

        import torch

        from nvc.zoo import DEFAULT_MODEL, load_model

        model, entry = load_model(DEFAULT_MODEL, Path(cond.weights) if cond.weights else None)
        _MODEL[key] = (model.to(torch.device(cond.device)), entry)
    return _MODEL[key]


def _point(e: EvalResult, codec: str, point: str, version: str) -> PointResult:
    check_bit_exact([e])  # a point whose decode differs from the encoder's is no figure
    quality = {k: getattr(e, k) for k in Quality.__dataclass_fields__}
    return PointResult(**quality, codec=codec, point=point, encode_seconds=e.encode_seconds,
                       decode_seconds=e.decode_seconds, version=version)


def codec_schedule(codec: str, cond: Conditions):
    """The GOP quality schedule an nvc codec codes with (nvc.schedule): flat for nvc-flat, else the
    conditions' or None (nvc's default for each quality)."""
    from nvc.schedule import FLAT, GopSchedule

    if codec == "nvc-flat":
        return FLAT
    return None if cond.gop_schedule is None else GopSchedule.parse(cond.gop_schedule)


def _run_base(name: str, profile: str, synthesis: str = "FLOAT32", adaptive_intra: bool = True
              ) -> Callable[[Video, str, Conditions], PointResult]:
    """The base codec; `nvc-float` codes with the float entropy parameters of format 2, to measure
    what the exact ones (bitstream.NumericProfile) cost; `nvc-bf16` runs the synthesis in bfloat16
    (bitstream.Synthesis); `nvc-flat` codes every frame at the quality (no GOP schedule,
    nvc.schedule); `nvc-fixed` codes I-frames only at the intra period (no adaptive I-frames,
    nvc.codec.code_frames)."""
    def run(source: Video, point: str, cond: Conditions) -> PointResult:
        from nvc.bitstream import NumericProfile, Synthesis
        from nvc.codec import padded_hw
        from nvc.roi import rate_point

        model, entry = _nvc_model(cond)
        gop, quality = codec_schedule(name, cond), float(point[1:])
        at = rate_point(quality, model.cfg.num_qualities,
                        padded_hw(source.height, source.width, model.cfg.multiple),
                        cond.intra_period, gop)
        r = evaluate(source, model, entry, intra_period=cond.intra_period,
                     profile=NumericProfile[profile], synthesis=Synthesis[synthesis],
                     adaptive_intra=adaptive_intra, refine=cond.refinement(), label=quality,
                     **at._asdict())
        gop_text = "default" if gop is None else str(gop)
        types = "auto" if adaptive_intra else "fixed"
        return _point(r, name, point, f"{entry.name} {entry.sha256[:12]} {profile.lower()} "
                                      f"{synthesis.lower()} gop {gop_text} frame types {types}"
                                      f"{f' refine {cond.refine}' if cond.refine else ''}"
                                      f"{' bf16 steps' if cond.refine and cond.refine_bf16 else ''}")
    return run


def _run_adapted(name: str, kind: str) -> Callable[[Video, str, Conditions], PointResult]:
    def run(source: Video, point: str, cond: Conditions) -> PointResult:
        from adapt import AdaptConfig, encode_adaptive
        from nvc.adapters import AdapterKind
        from nvc.codec import padded_hw
        from nvc.roi import rate_point

        model, entry = _nvc_model(cond)
        quality = float(point[1:])
        at = rate_point(quality, model.cfg.num_qualities,
                        padded_hw(source.height, source.width, model.cfg.multiple),
                        cond.intra_period, codec_schedule(name, cond))
        r = encode_adaptive(source, model, entry, at.quality, cond.intra_period,
                            AdaptConfig(kind=AdapterKind[kind], steps=cond.adapt_steps,
                                        window=cond.adapt_window),
                            qmap=at.qmap, schedule=codec_schedule(name, cond),  # None: slid
                            refine=cond.refinement())
        r.coded.seconds = r.total_seconds
        e = evaluate_coded(source, r.coded, model, entry, quality)
        return _point(e, name, point, f"{kind.lower()} {r.steps} steps, {r.mode} kept "
                                      f"({r.adapter_bytes} B of adapters) at ladder quality "
                                      f"{r.position + 1:g}")
    return run


def _run_anchor(name: str) -> Callable[[Video, str, Conditions], PointResult]:
    def run(source: Video, point: str, cond: Conditions) -> PointResult:
        r = run_anchor(source, ANCHORS[name], int(point[3:]), cond.intra_period)
        q = measure(source, r.data_bytes, decoded_yuv=r.decoded.frames)
        return PointResult(**asdict(q), codec=name, point=point, encode_seconds=r.encode_seconds,
                           decode_seconds=r.decode_seconds, version=r.version)
    return run


ADAPTED = {"nvc-adapt": "LORA", "nvc-dora": "DORA", "nvc-full": "FULL"}
CODECS: dict[str, Callable[[Video, str, Conditions], PointResult]] = {
    "nvc": _run_base("nvc", "SUBSTREAMS"), "nvc-compressai": _run_base("nvc-compressai", "EXACT_SKIP"),
    "nvc-noskip": _run_base("nvc-noskip", "EXACT_HYPER"), "nvc-float": _run_base("nvc-float", "FLOAT"),
    "nvc-bf16": _run_base("nvc-bf16", "SUBSTREAMS", "BFLOAT16"),
    "nvc-flat": _run_base("nvc-flat", "SUBSTREAMS"),
    "nvc-fixed": _run_base("nvc-fixed", "SUBSTREAMS", adaptive_intra=False),
    **{name: _run_adapted(name, kind) for name, kind in ADAPTED.items()},
    **{name: _run_anchor(name) for name in ANCHORS},
}
