"""The entropy models of the latents: a factorized prior for the hyper-latent z and a Gaussian
conditional for y (Balle et al., "Variational image compression with a scale hyperprior", 2018).

nvc's own, so that the codec does not import CompressAI: its package imports torch_geometric and
torch._dynamo, 2.6 s of every command's start. The parameters and buffers carry the names of
CompressAI's EntropyBottleneck and GaussianConditional (and GDN's in nvc.models.layers), so
weights and checkpoints trained with either load in the other.

The CDF tables are what streams depend on (SSF.tables_crc). update() builds them in float64 (format
14 on): an entry changes only where a mass lies within the evaluation's error of a rounding
boundary, and float64's error on any machine (a few units in the 16th digit) is far inside the
`margin` every build measures (the shipped model's: tests), so every machine builds the same
tables. With `dtype=torch.float32` it builds the tables of earlier formats, which are CompressAI's
bit for bit (the same float32 operations, then the same quantisation; tests compare both), but
which an error of one float32 unit changes (measured: in 14 of 20 draws of such noise, SSF's three
factorized priors' tables changed in 6 entries).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import rans

CODER_PRECISION = 16  # the tables' probabilities are counts out of 2^16


class _LowerBoundFn(torch.autograd.Function):
    """max(x, bound); the gradient passes where x is above the bound or would be pushed up."""

    @staticmethod
    def forward(ctx, x: Tensor, bound: Tensor) -> Tensor:
        ctx.save_for_backward(x, bound)
        return torch.max(x, bound)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x, bound = ctx.saved_tensors
        return ((x >= bound) | (grad < 0)) * grad, None


class LowerBound(nn.Module):
    """x bounded below by a constant, with a gradient that lets values at the bound move up."""

    bound: Tensor

    def __init__(self, bound: float):
        super().__init__()
        self.register_buffer("bound", torch.tensor([float(bound)]))

    def forward(self, x: Tensor) -> Tensor:
        return _LowerBoundFn.apply(x, self.bound)


class _Tabled(nn.Module):
    """An entropy model with CDF tables for the range coder, built by update(); `margin`: how far
    the build's values lay from the nearest value that would have changed the tables (in counts
    of 2^-CODER_PRECISION, or of a table length), the error a machine may make and build the same
    tables."""

    _offset: Tensor
    _quantized_cdf: Tensor
    _cdf_length: Tensor
    margin: float = math.inf

    def __init__(self, likelihood_bound: float = 1e-9):
        super().__init__()
        self.use_likelihood_bound = likelihood_bound > 0
        if self.use_likelihood_bound:
            self.likelihood_lower_bound = LowerBound(likelihood_bound)
        self.register_buffer("_offset", torch.IntTensor())
        self.register_buffer("_quantized_cdf", torch.IntTensor())
        self.register_buffer("_cdf_length", torch.IntTensor())

    def bounded(self, likelihood: Tensor) -> Tensor:
        """The likelihood floored (rates stay finite)."""
        return self.likelihood_lower_bound(likelihood) if self.use_likelihood_bound else likelihood

    @staticmethod
    def _tables(pmf: Tensor, tail: Tensor, lengths: Tensor, max_length: int) -> tuple[Tensor, float]:
        """One quantised CDF a row: row i's first lengths[i] masses and its tail's, zero-padded;
        and the masses' margin. Each mass is rounded to a count of 2^-CODER_PRECISION here, from
        its own precision (a float32 mass exactly as the coder's roundf(mass * 2^16) rounds it),
        so that the coder's table (rans.quantized_cdf) depends on the counts alone."""
        cdf = torch.zeros((len(lengths), max_length + 2), dtype=torch.int32)
        margin = math.inf
        for i, n in enumerate(lengths.tolist()):
            scaled = torch.cat((pmf[i, :n], tail[i])).detach().cpu().double() * 2 ** CODER_PRECISION
            counts = torch.floor(scaled + 0.5)
            margin = min(margin, float((scaled - counts).abs().sub(0.5).abs().min()))
            row = rans.quantized_cdf((counts / 2 ** CODER_PRECISION).float().numpy(), CODER_PRECISION)
            cdf[i, :len(row)] = torch.from_numpy(row)
        return cdf.to(pmf.device), margin


def _noisy_or_rounded(x: Tensor, training: bool, means: Tensor) -> Tensor:
    """Training: x plus uniform noise in [-0.5, 0.5); else x rounded around `means`."""
    if training:
        return x + torch.empty_like(x).uniform_(-0.5, 0.5)
    return torch.round(x - means) + means


class FactorizedPrior(_Tabled):
    """A learned density per channel, the same for every position (Balle et al.'s "entropy
    bottleneck"): the CDF is a small monotonic network of the value, one per channel, and the
    likelihood of a unit bin the difference of its sigmoid at the bin's two ends. Its three
    `quantiles` (the tails' and the median) are learnt by `loss` and bound the coded range."""

    target: Tensor

    def __init__(self, channels: int, filters: tuple[int, ...] = (3, 3, 3, 3),
                 init_scale: float = 10.0, tail_mass: float = 1e-9):
        super().__init__()
        self.channels, self.filters, self.tail_mass = int(channels), tuple(filters), tail_mass
        widths = (1, *self.filters, 1)
        scale = init_scale ** (1 / (len(self.filters) + 1))
        self.matrices, self.biases, self.factors = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        for i in range(len(self.filters) + 1):
            fill = math.log(math.expm1(1 / scale / widths[i + 1]))
            self.matrices.append(nn.Parameter(torch.full((channels, widths[i + 1], widths[i]), fill)))
            self.biases.append(nn.Parameter(torch.empty(channels, widths[i + 1], 1).uniform_(-0.5, 0.5)))
            if i < len(self.filters):
                self.factors.append(nn.Parameter(torch.zeros(channels, widths[i + 1], 1)))
        self.quantiles = nn.Parameter(
            torch.tensor([-init_scale, 0.0, init_scale]).repeat(channels, 1, 1))
        target = math.log(2 / tail_mass - 1)
        self.register_buffer("target", torch.tensor([-target, 0.0, target]))

    def medians(self) -> Tensor:
        """(C, 1, 1): each channel's median, the centre its symbols are counted from."""
        return self.quantiles[:, :, 1:2]

    def _logits_cumulative(self, x: Tensor, stop_gradient: bool) -> Tensor:
        """The CDF's logits at x, (C, 1, N) -> (C, 1, N), in x's precision."""
        def param(p: Tensor) -> Tensor:
            return (p.detach() if stop_gradient else p).to(x.dtype)

        logits = x
        for i, matrix in enumerate(self.matrices):
            logits = torch.matmul(F.softplus(param(matrix)), logits) + param(self.biases[i])
            if i < len(self.factors):
                logits = logits + torch.tanh(param(self.factors[i])) * torch.tanh(logits)
        return logits

    def likelihood(self, x: Tensor, stop_gradient: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """The mass of the unit bin around each x (C, 1, N), and the logits at its two ends."""
        lower = self._logits_cumulative(x - 0.5, stop_gradient)
        upper = self._logits_cumulative(x + 0.5, stop_gradient)
        return torch.sigmoid(upper) - torch.sigmoid(lower), lower, upper

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x (B, C, ...) with noise added (training) or rounded around the medians, and the
        likelihood of each value."""
        values = x.transpose(0, 1).contiguous()
        shape = values.shape
        values = values.reshape(shape[0], 1, -1)
        values = _noisy_or_rounded(values, self.training, self.medians())
        likelihood = self.bounded(self.likelihood(values)[0])
        return (values.reshape(shape).transpose(0, 1).contiguous(),
                likelihood.reshape(shape).transpose(0, 1).contiguous())

    def loss(self) -> Tensor:
        """How far the quantiles are from the tails and the median (the auxiliary loss)."""
        return torch.abs(self._logits_cumulative(self.quantiles, stop_gradient=True)
                         - self.target).sum()

    def update(self, force: bool = False, dtype: torch.dtype = torch.float64) -> bool:
        """Build the tables: per channel, the integers from the lower quantile to the upper one
        around the median (rounded outwards), then the tails' mass as the escape symbol; the
        masses computed in `dtype` (the range's ends in float32: correctly rounded operations
        alone, the same on every machine)."""
        if self._offset.numel() > 0 and not force:
            return False
        medians = self.quantiles[:, 0, 1]
        minima = torch.clamp(torch.ceil(medians - self.quantiles[:, 0, 0]).int(), min=0)
        maxima = torch.clamp(torch.ceil(self.quantiles[:, 0, 2] - medians).int(), min=0)
        lengths = maxima + minima + 1
        max_length = int(lengths.max())
        samples = torch.arange(max_length, device=medians.device)[None, :] \
            + (medians - minima)[:, None, None]
        pmf, lower, upper = self.likelihood(samples.to(dtype), stop_gradient=True)
        tail = torch.sigmoid(lower[:, 0, :1]) + torch.sigmoid(-upper[:, 0, -1:])
        self._offset = -minima
        self._quantized_cdf, self.margin = self._tables(pmf[:, 0, :], tail, lengths, max_length)
        self._cdf_length = lengths + 2
        return True


def _standard_cdf(x: Tensor) -> Tensor:
    """The standard normal's CDF (through erfc: precise in the lower tail)."""
    return 0.5 * torch.erfc(-(2 ** -0.5) * x)


class GaussianConditional(_Tabled):
    """A Gaussian of a given mean and scale for every element (scales floored at `scale_bound`);
    the coder uses one table per entry of `scale_table`."""

    scale_table: Tensor

    def __init__(self, scale_bound: float = 0.11, tail_mass: float = 1e-9):
        super().__init__()
        self.tail_mass = float(tail_mass)
        self.lower_bound_scale = LowerBound(scale_bound)
        self.register_buffer("scale_table", torch.Tensor())
        self.register_buffer("scale_bound", torch.tensor([float(scale_bound)]))

    def likelihood(self, x: Tensor, scales: Tensor, means: Tensor) -> Tensor:
        """The mass of the unit bin around each x."""
        values = torch.abs(x - means)
        scales = self.lower_bound_scale(scales)
        return _standard_cdf((0.5 - values) / scales) - _standard_cdf((-0.5 - values) / scales)

    def forward(self, x: Tensor, scales: Tensor, means: Tensor) -> tuple[Tensor, Tensor]:
        """x with noise added (training) or rounded around the means, and its likelihood."""
        outputs = _noisy_or_rounded(x, self.training, means)
        return outputs, self.bounded(self.likelihood(outputs, scales, means))

    def update_scale_table(self, table: tuple[float, ...], force: bool = False,
                           dtype: torch.dtype = torch.float64) -> bool:
        """Build the tables for these scales (ascending), computed in `dtype`: each covers the
        values within the tail mass's quantile of its scale, plus the escape."""
        if self._offset.numel() > 0 and not force:
            return False
        device = self.scale_table.device
        key = (tuple(table), self.tail_mass, dtype)
        if key not in _GAUSSIAN_TABLES:  # the same for every codec of a model: built once
            _GAUSSIAN_TABLES[key] = self._build(table, dtype)
        *tables, self.margin = _GAUSSIAN_TABLES[key]
        for name, value in zip(("scale_table", "_quantized_cdf", "_offset", "_cdf_length"), tables):
            setattr(self, name, value.clone().to(device))
        return True

    def _build(self, table: tuple[float, ...], dtype: torch.dtype
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, float]:
        scale_table = torch.tensor(table, dtype=torch.float32)
        # the quantile of tail_mass / 2, in float64 (what scipy.stats.norm.ppf gives)
        multiplier = -float(torch.special.ndtri(torch.tensor(self.tail_mass / 2,
                                                             dtype=torch.float64)))
        reach = scale_table.to(dtype) * multiplier
        centre = torch.ceil(reach).int()
        lengths = 2 * centre + 1
        max_length = int(lengths.max())
        samples = torch.abs(torch.arange(max_length).int() - centre[:, None]).to(dtype)
        scales = scale_table.to(dtype).unsqueeze(1)
        upper = _standard_cdf((0.5 - samples) / scales)
        lower = _standard_cdf((-0.5 - samples) / scales)
        cdf, margin = self._tables(upper - lower, 2 * lower[:, :1], lengths, max_length)
        ends = float((reach.double() - torch.round(reach.double())).abs().min())  # ceil's steps
        return scale_table, cdf, -centre, lengths + 2, min(margin, ends)


_GAUSSIAN_TABLES: dict[tuple, tuple[Tensor, Tensor, Tensor, Tensor, float]] = {}
