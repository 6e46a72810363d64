"""Shipped weights: stable model ids, sha256, loading (safetensors or weights_only checkpoints).

A model id written into a stream never changes meaning (STYLE 3): new weights get a new id.
The registry is read without torch (`nvc info` names a stream's model in a tenth of the time);
the functions that load or save weights import it.
"""
from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, InputError, NvcError
from .models.config import TINY, ModelConfig, width_variant

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .models.ssf import SSF

log = logging.getLogger(__name__)

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
# What training can build (`--model.arch`): the shipped base, a tiny test model, the widths
# searched by quality per training minute (benchmarks/RESULTS.md, issue 10 item 4), and the base
# grown by a residual block in every transform ("ssf-small-r1": from the base's weights it starts
# as the base, its blocks' last convolutions zero).
ARCHITECTURES: dict[str, ModelConfig] = {
    "ssf-small": ModelConfig(), "ssf-tiny": TINY,
    "ssf-small-r1": ModelConfig(name="ssf-small-r1", res_blocks=1),
    **{v.name: v for v in (width_variant(64, 48), width_variant(128, 96),
                           width_variant(96, 64, kernel=3))}}
# Buffers rebuilt by `update()`; never stored in shipped weights.
CDF_BUFFERS = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")
GAIN_KEYS = (".log_gain", ".log_inverse_gain")


@dataclass(frozen=True)
class ZooEntry:
    model_id: int  # written into every stream; never reused
    name: str
    file: str
    sha256: str


ZOO: dict[str, ZooEntry] = {
    e.name: e for e in [
        ZooEntry(9, "ssf-small-v9", "ssf-small-v9.safetensors",
                 "5ee5e2403a6eef7614925b68079c2ee3dde018beb6c30fa554eceee45bf53495"),
    ]
}
DEFAULT_MODEL = "ssf-small-v9"
# Ids once shipped and since withdrawn: never reused, named in errors.
RETIRED: dict[int, str] = {1: "ssf-small-v1 (qualities 1-4 at lambda 0.0018-0.013)",
                           2: "ssf-small-v2 (qualities 1-4 at lambda 0.013-0.0932)",
                           3: "ssf-small-v3 (sha256 c51fb754...; ssf-small-v4 continues it)",
                           4: "ssf-small-v4 (sha256 55d1db16...; ssf-small-v5 continues it)",
                           5: "ssf-small-v5 (sha256 52a614f5...; ssf-small-v6 continues it)",
                           6: "ssf-small-v6 (sha256 6a029ec5...; ssf-small-v7 continues it)",
                           7: "ssf-small-v7 (sha256 bb9a4e2c...; ssf-small-v8 continues it)",
                           8: "ssf-small-v8 (sha256 02597e81...; ssf-small-v9 continues it)"}


def entry_by_id(model_id: int) -> ZooEntry | None:
    return next((e for e in ZOO.values() if e.model_id == model_id), None)


def missing_model_message(model_id: int) -> str:
    """Why a stream's model id cannot be decoded by this nvc."""
    if model_id in RETIRED:
        return (f"stream was made with {RETIRED[model_id]}, which this nvc no longer ships; "
                "pass --weights FILE")
    return f"stream needs model id {model_id}, which this nvc does not ship; pass --weights FILE"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_cdf_key(key: str) -> bool:
    return key.rsplit(".", 1)[-1] in CDF_BUFFERS


def shippable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()
            if not _is_cdf_key(k)}


def save_weights(model: SSF, path: Path, dtype: torch.dtype | None = None,
                 extra: dict[str, str] | None = None) -> str:
    """Write config + weights as safetensors; parameters are cast to `dtype` (default float16),
    buffers (bounds such as the 1e-9 likelihood floor, which fp16 would flush to zero) stay
    float32. Returns the sha256."""
    import torch
    from safetensors.torch import save_file

    dtype = dtype or torch.float16
    params = {name for name, _ in model.named_parameters()}
    state = {k: (v.to(dtype) if k in params and v.is_floating_point() else v) for k, v in
             shippable_state(model).items()}
    meta = {"config": model.cfg.to_json(), **(extra or {})}
    tmp = path.with_name(path.name + ".partial")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)
    return sha256_file(path)


def read_weights(path: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """Config and float32 state from a .safetensors file or a Lightning/torch checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: " + ("not a weights file (a folder, or not a regular file)"
                                        if path.exists() else "no such weights file"))
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "pt") as f:
                text = f.metadata()["config"]
                state = {k: f.get_tensor(k) for k in f.keys()}
        else:
            import torch

            ckpt = torch.load(path, map_location="cpu", weights_only=True)
            text = ckpt["nvc_config"]
            state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
    except Exception as e:  # any parser's error on a file the user named: one line (-v: the cause)
        raise InputError(f"{path}: not an nvc weights file (a .safetensors file from train.export "
                         "or a checkpoint of nvc's trainer)") from e
    try:
        cfg = ModelConfig.from_json(text)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()
             if not _is_cdf_key(k)}
    return cfg, state


MIN_INIT_SHARE = 0.01  # weights that fit less of a model than this initialise nothing of it (the
# shipped base fits 0.01% of ssf-tiny, 8.8% of the widest variant, 90.6% of itself grown, r1)


def load_state_into(model: SSF, path: str | Path) -> None:
    """Copy every matching tensor of a weights file into `model` (used to chain training stages).
    Gain vectors trained for another rate ladder are moved to the model's ladder."""
    from torch import nn

    from .models.entropy import remap_log_gains

    cfg, state = read_weights(Path(path))
    if cfg.lambdas != model.cfg.lambdas:
        state = {k: (remap_log_gains(v, cfg.lambdas, model.cfg.lambdas)
                     if k.endswith(GAIN_KEYS) else v) for k, v in state.items()}
        log.info("gains moved from lambdas %s to %s", cfg.lambdas, model.cfg.lambdas)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    params = dict(model.named_parameters())
    share = sum(params[k].numel() for k in matched if k in params) / \
        sum(p.numel() for p in params.values())
    if share < MIN_INIT_SHARE:  # a few biases and GDN's constants fit any model: the run would
        # start from scratch while its config says otherwise
        raise ConfigError(f"{path}: {share:.2%} of the model's parameters fit ({cfg.name} weights, "
                          f"a {model.cfg.name} model); give weights of the model's architecture")
    nn.Module.load_state_dict(model, matched, strict=False)
    log.info("initialised %d of %d tensors from %s", len(matched), len(own), path)


def _shape(t: torch.Tensor) -> str:
    return "x".join(map(str, t.shape)) or "a scalar"


def build_model(cfg: ModelConfig, state: dict[str, torch.Tensor]) -> SSF:
    import torch
    from torch import nn

    from .models.ssf import SSF

    model = SSF(cfg)
    own = model.state_dict()
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if wrong:  # load_state_dict would raise on it, a RuntimeError of many lines
        k = wrong[0]
        raise NvcError(f"weights do not fit the model: {k} is {_shape(state[k])} where the file's "
                       f"config makes it {_shape(own[k])}"
                       + (f" ({len(wrong)} tensors differ)" if len(wrong) > 1 else ""))
    missing, unexpected = nn.Module.load_state_dict(model, state, strict=False)
    missing = [k for k in missing if not _is_cdf_key(k)]
    if missing or unexpected:
        raise NvcError(f"weights do not fit the model: missing {missing[:3]}, "
                       f"unexpected {unexpected[:3]}")
    model.eval()
    model.update()
    # channels_last: +9-31% decode fps on the CPU with identical results (measured: the same
    # bytes and frames as the default layout; the golden streams guard it)
    return model.to(memory_format=torch.channels_last)


def load_model(name: str = DEFAULT_MODEL, path: Path | None = None) -> tuple[SSF, ZooEntry]:
    """Load a zoo model by name (checked against its sha256), or any weights file by path."""
    if path is not None:
        cfg, state = read_weights(Path(path))  # refuses a missing or foreign file in one line
        entry = ZooEntry(0, Path(path).stem, str(path), sha256_file(Path(path)))
        return build_model(cfg, state), entry
    if name not in ZOO:
        raise NvcError(f"unknown model {name!r}; known: {', '.join(ZOO)}")
    entry = ZOO[name]
    path = WEIGHTS_DIR / entry.file
    if not path.exists():
        raise NvcError(f"{path}: weights file missing (reinstall nvc)")
    digest = sha256_file(path)
    if digest != entry.sha256:
        raise NvcError(f"{path}: sha256 {digest[:12]}... does not match the zoo "
                       f"({entry.sha256[:12]}...); the file is damaged or replaced")
    cfg, state = read_weights(path)
    return build_model(cfg, state), entry


def weights_summary(path: Path) -> dict:
    cfg, state = read_weights(path)
    return {"config": json.loads(cfg.to_json()),
            "parameters": sum(v.numel() for v in state.values())}
