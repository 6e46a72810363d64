import pytest
import torch

from nvc.errors import NvcError
from nvc.models.config import TINY
from nvc.models.ssf import SSF
from nvc.zoo import (
    DEFAULT_MODEL,
    RETIRED,
    WEIGHTS_DIR,
    ZOO,
    load_model,
    read_weights,
    save_weights,
    sha256_file,
)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    m = SSF(TINY)
    digest = save_weights(m, tmp_path / "w.safetensors", dtype=torch.float32)
    assert digest == sha256_file(tmp_path / "w.safetensors")
    cfg, state = read_weights(tmp_path / "w.safetensors")
    assert cfg == TINY
    loaded, entry = load_model(path=tmp_path / "w.safetensors")
    assert entry.sha256 == digest
    for k in SSF(TINY).state_dict():
        if k in state:
            assert torch.equal(loaded.state_dict()[k], m.state_dict()[k]), k


def test_model_ids_are_unique_and_stable():
    ids = [e.model_id for e in ZOO.values()]
    assert len(ids) == len(set(ids)) and 0 not in ids  # 0 marks a user's own weights file
    assert not set(ids) & set(RETIRED)  # a withdrawn id is never given to new weights
    assert ZOO["ssf-small-v9"].model_id == 9 and {1, 2, 3, 4, 5, 6, 7, 8} <= set(RETIRED)


def test_shipped_weights_match_the_registry():
    entry = ZOO[DEFAULT_MODEL]
    path = WEIGHTS_DIR / entry.file
    assert path.exists(), f"{path} missing"
    assert sha256_file(path) == entry.sha256
    assert sum(p.stat().st_size for p in WEIGHTS_DIR.iterdir()) < 30 * 2**20


def test_damaged_weights_are_refused(tmp_path, monkeypatch):
    entry = ZOO[DEFAULT_MODEL]
    (tmp_path / entry.file).write_bytes(b"garbage")
    monkeypatch.setattr("nvc.zoo.WEIGHTS_DIR", tmp_path)
    with pytest.raises(NvcError, match="sha256"):
        load_model(DEFAULT_MODEL)


def test_weights_that_do_not_fit_their_config_are_refused_in_one_line(tmp_path):
    """A file whose tensors are not what its config builds (a hand-edited or foreign export):
    one line naming the first that differs, not load_state_dict's RuntimeError of many lines."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_weights(SSF(TINY), tmp_path / "w.safetensors", dtype=torch.float32)
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    grown = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) if v.ndim == 4 else v
             for k, v in state.items()}
    save_file(grown, tmp_path / "grown.safetensors", metadata=meta)
    first = next(k for k, v in state.items() if v.ndim == 4)
    shape = "x".join(map(str, state[first].shape))
    more = sum(v.ndim == 4 for v in state.values())
    with pytest.raises(NvcError) as e:
        load_model(path=tmp_path / "grown.safetensors")
    assert str(e.value) == (f"weights do not fit the model: {first} is {int(shape.split('x')[0]) + 1}"
                            f"x{shape.split('x', 1)[1]} where the file's config makes it {shape} "
                            f"({more} tensors differ)")
    save_file({**state, "extra.weight": torch.zeros(3)}, tmp_path / "extra.safetensors", metadata=meta)
    with pytest.raises(NvcError, match=r"weights do not fit the model: missing \[\], unexpected "
                                       r"\['extra.weight'\]"):
        load_model(path=tmp_path / "extra.safetensors")


@pytest.mark.parametrize("fields, message", [
    ({"intra_mid": 10**7}, "intra_mid 10000000 outside 1..1024"),
    ({"inter_latent": 0}, "inter_latent 0 outside 1..1024"),
    ({"hyper_channels": 64.0}, "hyper_channels must be an integer, got 64.0"),
    ({"kernel": 4}, "kernel 4 is not odd and 1..15"),
    ({"res_blocks": -1}, "res_blocks -1 outside 0..16"),
    ({"scale_levels": 1}, "scale_levels 1 outside 2..8"),
    ({"sigma0": 40.0}, "sigma0 40.0 puts the coarsest blur outside (0, 64] pixels"),  # 80 px
    ({"sigma0": "wide"}, "sigma0 'wide' puts the coarsest blur"),
    ({"lambdas": []}, "lambdas must be 1 to 16 numbers above 0, got ()"),
    ({"lambdas": [0.01, -1]}, "lambdas must be 1 to 16 numbers above 0"),
    ({"lambdas": [True]}, "lambdas must be 1 to 16 numbers above 0"),
    ({"name": 7}, "name must be text, got 7"),
    ({"colour": 1}, "unknown model config fields: ['colour']"),
])
def test_a_weights_file_whose_config_nvc_would_not_build_is_refused_before_building(
        fields, message, tmp_path):
    """The config comes from the file: one line naming what is out of range, before any layer is
    allocated (a width of ten million would ask for terabytes)."""
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from nvc.errors import InputError

    save_weights(SSF(TINY), tmp_path / "w.safetensors", dtype=torch.float32)
    with safe_open(str(tmp_path / "w.safetensors"), "pt") as f:
        meta, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    meta["config"] = json.dumps({**json.loads(meta["config"]), **fields})
    save_file(state, tmp_path / "bad.safetensors", metadata=meta)
    with pytest.raises(InputError) as e:
        load_model(path=tmp_path / "bad.safetensors")
    assert str(e.value).startswith(f"{tmp_path / 'bad.safetensors'}: ") and message in str(e.value)
    assert "\n" not in str(e.value)


def test_model_config_text_that_is_no_config():
    from nvc.models.config import ModelConfig

    for text, message in (("[1, 2]", "model config: not a JSON object"),
                          ("{", "model config: not JSON"), ("", "model config: not JSON")):
        with pytest.raises(ValueError, match=message):
            ModelConfig.from_json(text)


def test_unknown_model_name():
    with pytest.raises(NvcError, match="unknown model"):
        load_model("nope")


def test_fp16_export_keeps_buffers_exact(tmp_path):
    m = SSF(TINY)
    save_weights(m, tmp_path / "w.safetensors")  # fp16 parameters
    loaded, _ = load_model(path=tmp_path / "w.safetensors")
    bound = loaded.intra.latent.entropy_bottleneck.likelihood_lower_bound.bound
    assert float(bound) == pytest.approx(1e-9)  # fp16 would flush this floor to 0


@pytest.mark.parametrize("name", sorted(ZOO))
def test_shipped_rate_ladder_is_monotone(name):
    """Each higher quality of a shipped model spends more bytes and gives a higher PSNR."""
    from nvc.evaluate import evaluate
    from nvc.synthetic import as_video, demo_clip

    model, entry = load_model(name)
    lambdas = model.cfg.lambdas
    assert all(a < b for a, b in zip(lambdas, lambdas[1:]))
    video = as_video(demo_clip(frames=2, out_hw=(64, 96)))
    rows = [evaluate(video, model, entry, q + 1, intra_period=12) for q in range(len(lambdas))]
    assert all(a.bytes < b.bytes for a, b in zip(rows, rows[1:]))
    assert all(a.psnr_rgb_db < b.psnr_rgb_db for a, b in zip(rows, rows[1:]))


def test_loaded_models_run_channels_last(tiny_model):
    """The faster CPU layout; the golden streams check that it decodes to the same frames."""
    model, _ = tiny_model
    convs = [m for m in model.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last) for c in convs)


def test_every_architecture_is_registered_under_its_own_name():
    from nvc.models.config import width_variant
    from nvc.zoo import ARCHITECTURES

    assert all(cfg.name == name for name, cfg in ARCHITECTURES.items())
    wide = ARCHITECTURES["ssf-128-96"]
    assert wide == width_variant(128, 96) and (wide.intra_latent, wide.inter_latent) == (170, 144)


def test_the_kernel_variant_codes_with_its_own_kernels(tmp_path, small_video):
    """ssf-96-64-k3: every analysis and synthesis convolution 3x3, the hyperprior's as before; its
    weights file records the kernel, loads back, and codes a clip that decodes bit-exactly."""
    import numpy as np

    from nvc import bitstream
    from nvc.codec import encode
    from nvc.decoding import decode_stream
    from nvc.models.ssf import SSF
    from nvc.zoo import ARCHITECTURES, load_model, save_weights

    from .conftest import make_codable

    cfg = ARCHITECTURES["ssf-96-64-k3"]
    model = SSF(cfg)
    for codec in (model.intra, model.motion, model.residual):
        convs = [m for m in (*codec.g_a, *codec.g_s) if isinstance(m, torch.nn.modules.conv._ConvNd)]
        assert len(convs) == 8 and all(c.kernel_size == (3, 3) for c in convs)
        assert codec.latent.h_s[0].kernel_size == (5, 5)
    torch.manual_seed(7)
    save_weights(make_codable(model), tmp_path / "k3.safetensors")
    loaded, entry = load_model(path=tmp_path / "k3.safetensors")
    assert loaded.cfg.kernel == 3
    coded = encode(small_video, loaded, entry, 1)
    out = decode_stream(bitstream.unpack(coded.data), *load_model(path=tmp_path / "k3.safetensors"))
    assert all(np.array_equal(a, b) for a, b in zip(coded.reconstruction, out.frames))
