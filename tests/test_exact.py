"""The fixed-point hyper-synthesis (issue 11): integers, close to the float h_s, independent of the
order of summation, and what the range coder's indexes are made of."""
import pytest
import torch
from torch import nn

from nvc.models.entropy import SCALE_TABLE
from nvc.models.exact import ACT_LIMIT, FRAC_OUT, SCALE_THRESHOLDS, ExactHyperSynthesis, _run
from nvc.models.layers import deconv, hyper_synthesis


def _h_s_and_input(seed: int = 0):
    torch.manual_seed(seed)
    h_s = hyper_synthesis(8, 12)
    symbols = torch.randint(-4, 5, (2, 8, 5, 7)).float()
    medians = torch.randn(1, 8, 1, 1) * 0.3
    return h_s, symbols, medians


def test_fixed_point_matches_the_float_network():
    h_s, symbols, medians = _h_s_and_input()
    exact = ExactHyperSynthesis(h_s).fixed_point(symbols, medians)
    assert exact.dtype == torch.float64 and torch.equal(exact, exact.round())
    reference = h_s(symbols + medians).double()
    assert exact.shape == reference.shape == (2, 24, 20, 28)
    # a real network's outputs, not zeros, within the fixed-point rounding
    assert reference.abs().max() > 0.05
    assert (exact / 2.0 ** FRAC_OUT - reference).abs().max() < 2e-3


def test_transposed_convolution_is_run_as_a_stuffed_convolution():
    torch.manual_seed(1)
    layer = deconv(3, 4)  # 5x5, stride 2, output padding 1: the h_s / g_s upsampler
    x = torch.randint(-8, 9, (1, 3, 4, 6)).float()
    exact = ExactHyperSynthesis(nn.Sequential(layer)).fixed_point(x, torch.zeros(1, 3, 1, 1))
    assert torch.allclose(exact / 2.0 ** FRAC_OUT, layer(x).double(), atol=1e-3)


def test_native_and_unfolded_convolutions_give_the_same_integers():
    """The CPU runs torch's float64 convolutions, other devices unfold + matmul: both exact."""
    h_s, symbols, medians = _h_s_and_input(3)
    exact = ExactHyperSynthesis(h_s)
    native = exact.fixed_point(symbols, medians)
    assert torch.equal(native, exact.fixed_point(symbols, medians, unfolded=True))


def test_result_does_not_depend_on_threads_or_batch_order():
    h_s, symbols, medians = _h_s_and_input(2)
    exact = ExactHyperSynthesis(h_s)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = exact.fixed_point(symbols, medians)
        torch.set_num_threads(2)
        two = exact.fixed_point(symbols.flip(0), medians).flip(0)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, two)


def test_scale_thresholds_are_the_scale_table_in_fixed_point():
    table = torch.tensor(SCALE_TABLE, dtype=torch.float32).tolist()  # each entry a float32
    computed = torch.exp(torch.linspace(torch.log(torch.tensor(0.11)), torch.log(torch.tensor(256.0)),
                                        64))  # CompressAI's, as this machine computes it
    assert torch.equal(computed, torch.tensor(SCALE_TABLE, dtype=torch.float32))
    assert list(SCALE_THRESHOLDS) == [round(s * 2 ** FRAC_OUT) for s in table[:-1]]


def test_an_index_counts_the_thresholds_a_scale_exceeds():
    exact = ExactHyperSynthesis(nn.Sequential(nn.Conv2d(1, 2, 1)))
    layer = exact.layers[0]
    # means channel 0, scales channel 1: the output is the bias, set to chosen fixed-point values
    for scale, index in [(0, 0), (SCALE_THRESHOLDS[0], 0), (SCALE_THRESHOLDS[0] + 1, 1),
                         (SCALE_THRESHOLDS[5], 5), (SCALE_THRESHOLDS[-1] + 1, 63), (-1000, 0)]:
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([7.0, float(scale)]) * layer.divisor)
        means, indexes = exact.params(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 1, 1))
        assert indexes.dtype == torch.int32 and indexes.unique().tolist() == [index]
        assert torch.allclose(means, torch.full_like(means, 7 / 2 ** FRAC_OUT))


def test_hidden_activations_are_clamped():
    layer = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        layer.weight.fill_(1.0)
        layer.bias.zero_()
    exact = ExactHyperSynthesis(nn.Sequential(layer, nn.ReLU(), nn.Conv2d(1, 1, 1)))
    out = exact.layers[0]
    x = torch.tensor([[[[-5.0, 3.0, 2000.0]]]], dtype=torch.float64)
    y = _run(out, x * 2.0 ** 12)
    assert y.flatten().tolist() == [0.0, 3.0 * 2 ** 12, ACT_LIMIT]


@pytest.mark.parametrize("modules, message", [
    ([nn.Conv2d(2, 2, 1), nn.Sigmoid()], "Sigmoid"),
    ([nn.Conv2d(2, 2, 1), nn.ReLU()], "end with a convolution"),
    ([nn.Conv2d(2, 2, 3, groups=2)], "plain convolutions"),
])
def test_unsupported_networks_are_refused(modules, message):
    with pytest.raises(ValueError, match=message):
        ExactHyperSynthesis(nn.Sequential(*modules))


def test_weights_beyond_fixed_point_are_refused():
    layer = nn.Conv2d(1, 1, 1)
    with torch.no_grad():
        layer.weight.fill_(2.0 ** 40)
    with pytest.raises(ValueError, match="too large"):
        ExactHyperSynthesis(nn.Sequential(layer))
