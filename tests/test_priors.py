"""nvc's entropy models and GDN (nvc.models.priors, nvc.models.layers) against CompressAI's, whose
parameter names, numbers and tables they keep; and the codec's import of neither CompressAI nor its
chain."""
import subprocess
import sys

import numpy as np
import pytest
import torch
from compressai.entropy_models import EntropyBottleneck
from compressai.entropy_models import GaussianConditional as TheirGaussian
from compressai.entropy_models.entropy_models import pmf_to_quantized_cdf
from compressai.layers import GDN as TheirGDN

from nvc.errors import NvcError
from nvc.models import rans
from nvc.models.entropy import SCALE_TABLE
from nvc.models.layers import GDN
from nvc.models.priors import FactorizedPrior, GaussianConditional


def _pair(channels: int = 6, seed: int = 0) -> tuple[FactorizedPrior, EntropyBottleneck]:
    """Ours and CompressAI's with the same (trained-looking) parameters: moved from the init, the
    quantiles spread unevenly, so the tables' lengths and tails differ by channel."""
    gen = torch.Generator().manual_seed(seed)
    ours = FactorizedPrior(channels)
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.3)
        ours.quantiles.copy_(torch.sort(torch.randn(channels, 1, 3, generator=gen) * 20, -1)[0])
    theirs = EntropyBottleneck(channels)
    assert set(theirs.state_dict()) == set(ours.state_dict())
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _tables(model) -> list[torch.Tensor]:
    return [model._quantized_cdf, model._offset, model._cdf_length]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_factorized_tables_are_compressais(seed):
    ours, theirs = _pair(seed=seed)
    ours.update(force=True, dtype=torch.float32)  # the tables of streams before format 14
    theirs.update(force=True)
    assert all(torch.equal(a, b) for a, b in zip(_tables(ours), _tables(theirs)))


def test_gaussian_tables_are_compressais():
    ours, theirs = GaussianConditional(), TheirGaussian(None)
    ours.update_scale_table(SCALE_TABLE, force=True, dtype=torch.float32)
    theirs.update_scale_table(list(SCALE_TABLE), force=True)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(_tables(ours) + [ours.scale_table],
                                                 _tables(theirs) + [theirs.scale_table]))
    other = GaussianConditional()  # the second model's tables come from the cache, as copies
    other.update_scale_table(SCALE_TABLE, force=True, dtype=torch.float32)
    other._quantized_cdf.zero_()
    assert torch.equal(GaussianConditional._build(ours, SCALE_TABLE, torch.float32)[1],
                       ours._quantized_cdf)
    assert ours._quantized_cdf.any()


@pytest.mark.parametrize("training", [True, False])
def test_the_factorized_prior_trains_as_compressais(training):
    """Values, likelihoods, the auxiliary loss and every gradient, noise draws included."""
    ours, theirs = _pair(seed=3)
    x = torch.randn(2, 6, 5, 7) * 4
    results = []
    for model in (ours, theirs):
        model.train(training)
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(11)
        values, likelihood = model(xi)
        loss = -torch.log2(likelihood).sum() + values.square().mean() + model.loss()
        loss.backward()
        results.append([values, likelihood, model.loss(), xi.grad,
                        *(p.grad for p in model.parameters())])
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("training", [True, False])
def test_the_gaussian_conditional_trains_as_compressais(training):
    gen = torch.Generator().manual_seed(4)
    y, means = torch.randn(1, 8, 6, 6, generator=gen) * 5, torch.randn(1, 8, 6, 6, generator=gen)
    scales = torch.rand(1, 8, 6, 6, generator=gen) * 3  # some below the bound (0.11)
    results = []
    for model in (GaussianConditional(), TheirGaussian(None)):
        model.train(training)
        inputs = [t.clone().requires_grad_(True) for t in (y, scales, means)]
        torch.manual_seed(5)
        values, likelihood = model(inputs[0], inputs[1], means=inputs[2])
        (-torch.log2(likelihood).sum() + values.sum()).backward()
        results.append([values, likelihood, *(t.grad for t in inputs)])
    assert all(torch.equal(a, b) for a, b in zip(*results))


@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_is_compressais(inverse):
    ours, theirs = GDN(5, inverse=inverse), TheirGDN(5, inverse=inverse)
    assert set(ours.state_dict()) == set(theirs.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(),
                                                 theirs.state_dict().values()))
    gen = torch.Generator().manual_seed(6)
    with torch.no_grad():
        ours.gamma.add_(torch.randn(5, 5, generator=gen) * 0.1)
        ours.beta.add_(torch.randn(5, generator=gen) * 0.5)  # some below their bound
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 5, 4, 4, generator=gen)
    results = []
    for model in (ours, theirs):
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        out.square().sum().backward()
        results.append([out, xi.grad, model.beta.grad, model.gamma.grad])
    assert all(torch.equal(a, b) for a, b in zip(*results))


def test_quantized_cdfs_are_compressais():
    """Tails that round to zero take frequency from the lowest above 1, as CompressAI's do."""
    rng = np.random.default_rng(0)
    pmfs = [np.array([1.0, 0.0]), np.array([0.5, 0.5, 0.0, 1e-9]), np.full(300, 1 / 300),
            np.array([0.999999] + [1e-9] * 40)]
    for n in (3, 17, 200, 3000):
        p = rng.random(n) ** 8
        pmfs.append(p / p.sum())
        pmfs.append(np.exp(-0.5 * (np.arange(n) - n / 2) ** 2 / max(n / 40, 1) ** 2))  # unnormalised
    for pmf in pmfs:
        pmf = pmf.astype(np.float32)
        ours = rans.quantized_cdf(pmf)
        assert ours.tolist() == pmf_to_quantized_cdf(torch.from_numpy(pmf)).tolist()
        assert ours[0] == 0 and ours[-1] == 1 << 16 and (np.diff(ours) >= 1).all()


@pytest.mark.parametrize("pmf", [[0.5, -0.1, 0.6], [0.5, float("nan")], [0.0, 0.0],
                                 [1e-9, 1e-9], [0.5, float("inf")], [1e-5] * 70000,
                                 [30000.0] * 100])
def test_quantized_cdf_refuses_what_has_no_table(pmf):
    with pytest.raises(NvcError, match="no range-coder table"):
        rans.quantized_cdf(np.array(pmf, dtype=np.float32))


NO_COMPRESSAI = """
import sys
import numpy as np
from nvc.cli import main
from nvc.adapter_coding import SpikeSlabPrior, decode_symbols, encode_symbols
from nvc.writers import write_video
from nvc.synthetic import as_video
clip = np.random.default_rng(0).random((2, 3, 48, 64), dtype=np.float32)
write_video(sys.argv[1] + "/in.y4m", as_video(clip))
for args in (["encode", "in.y4m", "-o", "s.nvc", "--quality", "2"], ["info", "s.nvc"],
             ["decode", "s.nvc", "-o", "out.y4m"]):
    assert main([sys.argv[1] + "/" + a if a.endswith((".y4m", ".nvc")) else a for a in args]) == 0
symbols = [0, 3, -2, 40, 0]
assert decode_symbols(encode_symbols(symbols, SpikeSlabPrior()), 5, SpikeSlabPrior()) == symbols
print(sorted(m for m in sys.modules if m.split(".")[0] in ("compressai", "torch_geometric", "scipy")))
"""


def test_the_codec_does_not_import_compressai(tmp_path):
    """Encoding, reading and decoding a stream (adapter parameters included) import neither
    CompressAI nor its chain (torch_geometric, scipy): 2.6 s of every start."""
    run = subprocess.run([sys.executable, "-c", NO_COMPRESSAI, str(tmp_path)], capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"


def _rebuilt_with_noise(model, dtype: torch.dtype, eps: float, monkeypatch) -> int:
    """The tables' crc after rebuilding them in `dtype` with every transcendental function the
    build evaluates off by a relative `eps` (another machine's rounding, much exaggerated)."""
    import nvc.models.priors as priors

    gen = torch.Generator().manual_seed(0)

    def noisy(f):
        return lambda x, *a, **k: f(x, *a, **k) * (1 + eps * torch.randn(x.shape, generator=gen,
                                                                          dtype=x.dtype))
    with monkeypatch.context() as m:
        for owner, name in ((torch, "sigmoid"), (torch, "tanh"), (torch, "erfc"),
                            (priors.F, "softplus")):
            m.setattr(owner, name, noisy(getattr(owner, name)))
        priors._GAUSSIAN_TABLES.clear()  # built afresh, under the noise
        model.update(dtype)
    priors._GAUSSIAN_TABLES.clear()
    return model.tables_crc()


def test_float64_tables_are_the_same_on_any_machine(monkeypatch):
    """The shipped model's tables, built in float64 (format 14), do not change when every function
    the build evaluates errs by 1e-12 (float64's own error on a machine: ~1e-16), and lie farther
    than that from changing (`margin`, in counts); built in float32 (earlier formats), one float32
    unit of error changes them."""
    from nvc.zoo import DEFAULT_MODEL, load_model

    model = load_model(DEFAULT_MODEL)[0]
    assert model.table_dtype == torch.float64
    exact, margin = model.tables_crc(), model.table_margin()
    assert margin > 1e-6  # counts of 2^-16; an error of 1e-12 moves a count by < 7e-8
    assert _rebuilt_with_noise(model, torch.float64, 1e-12, monkeypatch) == exact
    model.update(torch.float32)
    legacy = model.tables_crc()
    assert legacy != exact
    assert _rebuilt_with_noise(model, torch.float32, 2 ** -23, monkeypatch) != legacy
