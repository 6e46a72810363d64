import pytest
import torch

from nvc.models.config import TINY, ModelConfig
from nvc.models.ssf import SSF
from nvc.models.warp import scale_space_volume, scale_space_warp


def test_config_round_trip():
    assert ModelConfig.from_json(ModelConfig().to_json()) == ModelConfig()
    with pytest.raises(ValueError, match="unknown"):
        ModelConfig.from_json('{"bogus": 1}')


def test_forward_shapes_and_likelihoods():
    torch.manual_seed(0)
    m = SSF(TINY)
    x = torch.rand(2, 3, 64, 128)
    out = m.forward_intra(x, torch.tensor([0, 1]))
    assert out.x_hat.shape == x.shape and len(out.likelihoods) == 2
    assert all(((lik > 0) & (lik <= 1)).all() for lik in out.likelihoods)
    inter = m.forward_inter(x, out.x_hat, 1)
    assert inter.x_hat.shape == x.shape and len(inter.likelihoods) == 4


def test_gradients_reach_every_codec():
    torch.manual_seed(0)
    m = SSF(TINY)
    x = torch.rand(1, 3, 64, 64)
    i = m.forward_intra(x, 0)
    p = m.forward_inter(x, i.x_hat, 0)
    loss = ((p.x_hat - x) ** 2).mean() + sum(-l.log2().sum() for l in i.likelihoods + p.likelihoods)
    loss.backward()
    for name in ("intra", "motion", "residual"):
        grads = [q.grad for q in getattr(m, name).g_s.parameters()]
        assert any(g is not None and g.abs().sum() > 0 for g in grads), name


def _ramp(h, w):
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    return torch.stack((xs, ys, xs + ys))[None] / (h + w)


def test_zero_flow_is_identity():
    x = _ramp(32, 48)
    assert torch.allclose(scale_space_warp(x, torch.zeros(1, 3, 32, 48), 4, 1.5), x, atol=1e-5)


@pytest.mark.parametrize("hw", [(32, 48), (128, 256), (270, 480)])
def test_flow_is_in_pixels_at_every_resolution(hw):
    """A flow of (+3, -2) px samples 3 px right, 2 px up, whatever the frame size (CompressAI #307)."""
    h, w = hw
    x = _ramp(h, w)
    flow = torch.zeros(1, 3, h, w)
    flow[:, 0], flow[:, 1] = 3.0, -2.0
    out = scale_space_warp(x, flow, 4, 1.5)
    assert torch.allclose(out[..., 4:-4, 4:-4], x[..., 2:-6, 7:-1], atol=1e-5)


def test_scale_level_blurs():
    x = torch.zeros(1, 1, 33, 33)
    x[..., 16, 16] = 1
    vol = scale_space_volume(x, 3, 1.5)
    assert vol[0, 0, 0, 16, 16] == 1 and vol[0, 0, 2, 16, 16] < vol[0, 0, 1, 16, 16] < 1
    flow = torch.zeros(1, 3, 33, 33)
    flow[:, 2] = 2.0
    assert torch.allclose(scale_space_warp(x, flow, 3, 1.5), vol[:, :, 2], atol=1e-6)


def test_quality_map_positions_interpolate_and_extrapolate_below_the_ladder():
    import torch

    from nvc.models.config import LADDER_BELOW
    from nvc.models.entropy import LatentCodec

    codec = LatentCodec(2, 2, (0.001, 0.004, 0.016))
    with torch.no_grad():
        codec.log_gain.copy_(torch.tensor([[0.0, 1.0], [1.0, 1.5], [3.0, 2.0]]))
    y = torch.zeros(1, 2, 1, 6)
    pos = torch.tensor([-3.0, -LADDER_BELOW, -0.5, 0.5, 2.0, 9.0]).reshape(1, 1, 1, 6)
    g, _ = codec._gains(pos, y)
    logs = g.log()[0, :, 0]
    expected = torch.tensor([[-2.0, -2.0, -0.5, 0.5, 3.0, 3.0],  # the first segment's slope below
                             [0.0, 0.0, 0.75, 1.25, 2.0, 2.0]])  # rung 0; clamped at both ends
    assert torch.allclose(logs, expected, atol=1e-6)
    assert torch.allclose(codec._gains(torch.tensor([1]), y)[0][0, :, 0, 0].log(),
                          torch.tensor([1.0, 1.5]))


def test_gains_move_to_a_new_rate_ladder():
    from nvc.models.entropy import remap_log_gains

    old = (0.01, 0.04)
    g = torch.tensor([[0.0, 1.0], [1.0, 3.0]])  # per quality, per channel
    moved = remap_log_gains(g, old, (0.01, 0.02, 0.04, 0.16))
    assert torch.allclose(moved[0], g[0]) and torch.allclose(moved[2], g[1])  # trained points kept
    assert torch.allclose(moved[1], (g[0] + g[1]) / 2)  # halfway in log(lambda)
    assert torch.allclose(moved[3], g[1] + (g[1] - g[0]))  # extrapolated with the last slope


def test_weights_of_another_architecture_initialise_nothing_and_say_so():
    from nvc.errors import ConfigError
    from nvc.zoo import DEFAULT_MODEL, WEIGHTS_DIR, ZOO, load_state_into

    with pytest.raises(ConfigError, match=r"0.01% of the model's parameters fit \(ssf-small weights, "
                                          r"a ssf-tiny model\)"):
        load_state_into(SSF(TINY), WEIGHTS_DIR / ZOO[DEFAULT_MODEL].file)


def test_loading_weights_of_another_ladder_moves_the_gains(tmp_path):
    import dataclasses

    from nvc.zoo import load_state_into, save_weights

    torch.manual_seed(0)
    src = SSF(TINY)
    save_weights(src, tmp_path / "w.safetensors", dtype=torch.float32)
    dst = SSF(dataclasses.replace(TINY, lambdas=(TINY.lambdas[1], TINY.lambdas[1] * 4)))
    load_state_into(dst, tmp_path / "w.safetensors")
    assert torch.equal(dst.intra.latent.log_gain[0], src.intra.latent.log_gain[1])
    assert torch.equal(dst.intra.g_a[0].weight, src.intra.g_a[0].weight)


def test_scale_indexes_equal_compressais():
    """The one-pass index computation makes exactly CompressAI's choices, ties included."""
    from nvc.models.entropy import LatentCodec

    codec = LatentCodec(8, 8, (0.01, 0.02))
    codec.update()
    table = codec.gaussian_conditional.scale_table
    scales = torch.cat([torch.rand(5000) * 300, table, table + 1e-6, table - 1e-6,
                        torch.tensor([0.0, -1.0, 1e9])])
    from compressai.entropy_models import GaussianConditional

    theirs = GaussianConditional(None)
    theirs.update_scale_table(table.tolist(), force=True)
    expected = theirs.build_indexes(scales)
    assert torch.equal(codec._indexes(scales), expected)


def test_the_coders_skips_seen_in_a_forward_pass(tiny_model, small_video):
    """With skip_below, the differentiable pass rebuilds the elements the coder skips as their means
    at no cost, as decoding does; without, it rounds and prices them."""
    from nvc.bitstream import DEFAULT_PROFILE, SKIP_BELOW_INDEX
    from nvc.codec import pad_to, rgb_tensor, source_rgb

    model, _ = tiny_model
    x = pad_to(rgb_tensor(source_rgb(small_video.frames[0]), torch.device("cpu")), 64)
    latent = model.intra.latent
    with torch.no_grad():
        y = model.intra.g_a(x)
        _, coded = latent.compress(y, 0, DEFAULT_PROFILE)
        plain = latent(y, 0)
        latent.skip_below = SKIP_BELOW_INDEX
        try:
            seen = latent(y, 0)
        finally:
            latent.skip_below = 0
    free = seen.likelihoods[0] == 1
    assert 0.02 < free.float().mean() < 1  # some elements skipped, not all
    assert ((seen.y_hat - coded).abs() > 1e-4).float().mean() < 0.01  # a mean may round otherwise
    assert ((plain.y_hat - coded).abs() > 1e-4).float().mean() > 0.01
    assert (plain.likelihoods[0][free] < 1).all()


def test_a_transform_grown_by_residual_blocks_starts_as_the_base(tmp_path):
    """res_blocks adds a block at 1/8 scale to every analysis and synthesis transform, its last
    convolution zero: loaded from the base's weights it computes the base's frames exactly, the
    base's parameter names and adapter layers unchanged."""
    import dataclasses

    from nvc.adapters import default_layers
    from nvc.models.layers import ResBlock
    from nvc.zoo import load_state_into, save_weights

    torch.manual_seed(0)
    base = SSF(TINY).eval()
    save_weights(base, tmp_path / "base.safetensors", dtype=torch.float32)
    grown = SSF(dataclasses.replace(TINY, res_blocks=1)).eval()
    load_state_into(grown, tmp_path / "base.safetensors")
    assert set(base.state_dict()) < set(grown.state_dict())
    assert default_layers(grown) == default_layers(base)
    assert sum(isinstance(m, ResBlock) for m in grown.modules()) == 6
    x, ref = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(grown.forward_intra(x, 1).x_hat, base.forward_intra(x, 1).x_hat)
        assert torch.equal(grown.forward_inter(x, ref, 0).x_hat, base.forward_inter(x, ref, 0).x_hat)
        for block in (m for m in grown.modules() if isinstance(m, ResBlock)):
            block.conv2.weight.add_(0.1)
        assert not torch.equal(grown.forward_intra(x, 1).x_hat, base.forward_intra(x, 1).x_hat)


@pytest.mark.parametrize("kernel", [5, 3])
def test_transforms_in_stripes_compute_what_one_pass_does(kernel, monkeypatch):
    """Without autograd the largest-scale layers of g_a and g_s run in row stripes with a halo
    (nvc.models.stripes); with stripes far smaller than the frame every stripe edge is inside it,
    and the result matches one pass (on this project's CPU bit for bit; the contract is the float
    tolerance, encoder and decoder both stripe). The partition is fixed, so the stripes give the
    same bits on one thread and on several, in float32 and under bf16 autocast."""
    import dataclasses

    from nvc.models import stripes
    from nvc.models.stripes import analyze, synthesize

    torch.manual_seed(0)
    model = SSF(dataclasses.replace(TINY, kernel=kernel)).eval()
    x = torch.rand(1, 3, 192, 64)
    y = torch.randn(1, TINY.intra_latent, 12, 4)
    with torch.no_grad():
        whole_a, whole_s = model.intra.g_a(x), model.intra.g_s(y)
        for rows in (16, 32, 48, 200):
            torch.testing.assert_close(analyze(model.intra.g_a, x, kernel, rows), whole_a,
                                       rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(synthesize(model.intra.g_s, y, kernel, rows), whole_s,
                                       rtol=1e-5, atol=1e-6)
        for dtype in (torch.float32, torch.bfloat16):
            with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
                outs = []
                for threads in (1, 3):
                    monkeypatch.setattr(stripes, "STRIPE_THREADS", threads)
                    outs.append((analyze(model.intra.g_a, x, kernel, 16),
                                 synthesize(model.intra.g_s, y, kernel, 16)))
            assert all(torch.equal(a, b) for a, b in zip(*outs))
            assert outs[0][1].dtype == dtype
    with torch.enable_grad():  # autograd (training, refinement): one pass
        assert synthesize(model.intra.g_s, y, kernel, 16).requires_grad


def test_the_warp_is_float32_under_bf16_autocast():
    """Training under bf16 autocast warps as the codec does (outside autocast), bit for bit, with
    and without autograd (the stripes)."""
    torch.manual_seed(0)
    x_ref, flow = torch.rand(1, 3, 40, 24), torch.randn(1, 3, 40, 24) * 4
    plain = scale_space_warp(x_ref, flow, 5, 1.5)
    for grad in (True, False):
        with torch.set_grad_enabled(grad), torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(scale_space_warp(x_ref, flow, 5, 1.5), plain), grad


def test_the_warp_in_stripes_on_threads_gives_the_same_bits(monkeypatch):
    """Without autograd the scale-space levels are blurred on the stripe threads and the rows
    sampled in stripes: each output pixel is computed from its own flow alone, so the warp is bit
    for bit what one pass under autograd computes, on one thread or several."""
    from nvc.models import stripes

    torch.manual_seed(0)
    x_ref, flow = torch.rand(1, 3, 72, 40), torch.randn(1, 3, 72, 40) * 4
    with torch.enable_grad():
        whole = scale_space_warp(x_ref, flow, 4, 1.5).detach()
    monkeypatch.setattr(stripes, "STRIPE_ROWS", 16)
    for threads in (1, 3):
        monkeypatch.setattr(stripes, "STRIPE_THREADS", threads)
        with torch.no_grad():
            assert torch.equal(scale_space_warp(x_ref, flow, 4, 1.5), whole), threads
