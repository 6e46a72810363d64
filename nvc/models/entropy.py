"""Mean-scale hyperprior latent coding with per-quality gain vectors (one variable-rate model).

y is scaled by gain[q] before quantisation and by inverse_gain[q] after, as in Cui et al.'s
gained VAE and DCVC's q-scales; the hyperprior models the scaled latent. Gains live in log space and
start at sqrt(lambda_q / geometric mean of lambdas): for a uniform quantiser at high rate the
RD-optimal step scales as lambda^(-1/2), so each rate point starts near its own operating point.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..bitstream import DEFAULT_PROFILE, LatentStrings, NumericProfile
from . import rans
from .config import LADDER_BELOW
from .exact import ExactHyperSynthesis
from .layers import hyper_analysis, hyper_synthesis
from .priors import FactorizedPrior, GaussianConditional
from .range_coder import TableCoder, legacy_decode, legacy_encode

# CompressAI's default scale table, exp(linspace(log(0.11), log(256), 64)) in float32, written out
# (each float32 exactly): exp and log need not round alike on every machine, and the tables the
# coder reads are built from these (tests check that torch computes the same values here)
SCALE_TABLE = (
    0.11, 0.124404095, 0.14069438, 0.1591178, 0.1799537, 0.20351797, 0.23016793, 0.2603076,
    0.29439393, 0.33294374, 0.37654155, 0.4258483, 0.4816116, 0.5446769, 0.6160004, 0.69666344,
    0.787889, 0.89106023, 1.0077413, 1.1397015, 1.2889413, 1.4577235, 1.6486071, 1.8644862,
    2.108634, 2.384752, 2.6970267, 3.0501928, 3.4496043, 3.9013174, 4.4121814, 4.9899406, 5.643354,
    6.382331, 7.218075, 8.163255, 9.2322035, 10.441129, 11.808356, 13.354617, 15.103355, 17.081085,
    19.317795, 21.84739, 24.708223, 27.943682, 31.602804, 35.741077, 40.421238, 45.714252, 51.70038,
    58.470337, 66.12683, 74.78591, 84.578835, 95.654144, 108.17973, 122.34544, 138.36617, 156.48474,
    176.9758, 200.15018, 226.35905, 256.0)


def initial_log_gains(lambdas: tuple[float, ...], latent: int) -> Tensor:
    logs = torch.tensor([math.log(lam) for lam in lambdas])
    return (0.5 * (logs - logs.mean()))[:, None].expand(-1, latent).clone()


def remap_log_gains(log_gain: Tensor, old: tuple[float, ...], new: tuple[float, ...]) -> Tensor:
    """Gain vectors trained for the ladder `old`, moved to the ladder `new`: per channel,
    piecewise linear in log(lambda), extended beyond the ends with the nearest segment's slope."""
    if len(old) == 1:
        return log_gain[:1].expand(len(new), -1).clone()
    xo = torch.tensor([math.log(v) for v in old])
    out = []
    for lam in new:
        x = math.log(lam)
        i = int(torch.searchsorted(xo, torch.tensor(x)).clamp(1, len(old) - 1))
        t = (x - xo[i - 1]) / (xo[i] - xo[i - 1])
        out.append(log_gain[i - 1] + t * (log_gain[i] - log_gain[i - 1]))
    return torch.stack(out)


def ladder_interpolate(table: Tensor, positions: Tensor) -> Tensor:
    """Rows of `table` (one per rung) at ladder `positions` (any shape, 0 = the first rung): linear
    between neighbouring rungs, extended along the first segment down to LADDER_BELOW rungs below
    the first, the top rung's above the top. Returns positions.shape + table.shape[1:]."""
    rungs = table.shape[0]
    pos = positions.clamp(-LADDER_BELOW, rungs - 1)
    lo = pos.floor().long().clamp(0, max(rungs - 2, 0))
    hi = (lo + 1).clamp(max=rungs - 1)
    t = (pos - lo).reshape(tuple(pos.shape) + (1,) * (table.dim() - 1))
    return (1 - t) * table[lo] + t * table[hi]


@dataclass
class LatentOut:
    """Result of a differentiable pass: dequantised latent and likelihoods of y and z."""

    y_hat: Tensor  # (B, M, h, w), gain removed
    likelihoods: tuple[Tensor, Tensor]


class LatentCodec(nn.Module):
    def __init__(self, latent: int, hyper: int, lambdas: tuple[float, ...]):
        super().__init__()
        self.h_a = hyper_analysis(latent, hyper)
        self.h_s = hyper_synthesis(hyper, latent)
        self.entropy_bottleneck = FactorizedPrior(hyper)
        self.gaussian_conditional = GaussianConditional()
        self.log_gain = nn.Parameter(initial_log_gains(lambdas, latent))
        self.log_inverse_gain = nn.Parameter(-initial_log_gains(lambdas, latent))
        # Adaptation fits against the hyperprior as it is coded: z rounded around the medians
        # (straight-through), its likelihood that of the rounded value, instead of uniform noise.
        self.round_z = False
        # Elements whose scale index lies below this decode as their mean and cost no bits, as the
        # coder treats them from numeric profile 2 on (bitstream.SKIP_BELOW_INDEX); 0: every
        # element rounded and priced. Training and validation set it to see the coder's rate and
        # reconstruction (the index comes from the float h_s here, the exact one there).
        self.skip_below = 0
        self.exact_h_s: ExactHyperSynthesis | None = None  # built by update() from h_s
        self.coder: TableCoder | None = None  # built by update() from the CDF tables
        self.z_tables: rans.Tables | None = None  # z's, for nvc's coder (profile 3)

    def _gains(self, q: Tensor | int, y: Tensor) -> tuple[Tensor, Tensor]:
        """Gain and inverse gain of y. q is an int or a (B,) tensor of quality indexes (gains
        (B, M, 1, 1)), or a quality map (B, 1, h, w) of positions on the ladder, 0 .. Q - 1, one per
        latent position: the log gains are interpolated between neighbouring rungs (B, M, h, w), and
        extrapolated along the first segment down to LADDER_BELOW rungs below the first."""
        if isinstance(q, Tensor) and q.dim() == 4:
            pos = q.to(y.device, torch.float32)[:, 0]  # (B, h, w)

            def interp(table: Tensor) -> Tensor:
                return ladder_interpolate(table, pos).exp().permute(0, 3, 1, 2)
            return interp(self.log_gain), interp(self.log_inverse_gain)
        q = torch.as_tensor(q, device=y.device).reshape(-1).expand(y.shape[0])
        g = self.log_gain.exp()[q][:, :, None, None]
        ig = self.log_inverse_gain.exp()[q][:, :, None, None]
        return g, ig

    def _params(self, z_hat: Tensor) -> tuple[Tensor, Tensor]:
        means, scales = self.h_s(z_hat).chunk(2, dim=1)
        return means, scales

    def forward(self, y: Tensor, q: Tensor | int) -> LatentOut:
        # The entropy models stay float32 under bf16 autocast: their tails are not bf16-safe.
        with torch.autocast(y.device.type, enabled=False):
            return self._forward(y.float(), q)

    def _forward(self, y: Tensor, q: Tensor | int) -> LatentOut:
        g, ig = self._gains(q, y)
        y_s = y * g
        z = self.h_a(y_s)
        z_hat, z_lik = self._code_z(z)
        means, scales = self._params(z_hat)
        _, y_lik = self.gaussian_conditional(y_s, scales, means=means)
        y_hat, y_lik = _skipped(_rounded_around(y_s, means), y_lik, means, scales,
                                self.skip_below)
        return LatentOut(y_hat * ig, (y_lik, z_lik))

    def relaxed(self, y_s: Tensor, q: Tensor | int, noise: Tensor) -> tuple[Tensor, list[Tensor]]:
        """A differentiable stand-in for `compress_scaled`, to optimise a scaled latent against
        (nvc.refine): the y_hat the decoder would rebuild from it (rounded around the mean,
        straight-through) and the likelihoods of y, its rate smoothed by `noise` (uniform in
        [-0.5, 0.5), as in training), and of z, rounded as coded. It prices and rounds the elements
        the profile skips (measured, 20 steps on the training clips: seeing them as the coder
        leaves them gave I-frames -11.5% instead of -11.3%, P-frames -4.7% instead of -6.0%)."""
        with torch.autocast(y_s.device.type, enabled=False):
            _, ig = self._gains(q, y_s)
            z_hat, z_lik = self._round_z(self.h_a(y_s))
            means, scales = self._params(z_hat)
            gc = self.gaussian_conditional
            y_lik = gc.bounded(gc.likelihood(y_s + noise, scales, means))
            return _rounded_around(y_s, means) * ig, [y_lik, z_lik]

    def _code_z(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return self._round_z(z) if self.round_z else self.entropy_bottleneck(z)

    def _round_z(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z rounded around the medians as coded (straight-through) and its likelihood."""
        eb = self.entropy_bottleneck
        medians = eb.medians().reshape(1, -1, 1, 1)
        z_hat = z + (torch.round(z - medians) + medians - z).detach()
        lik = eb.bounded(eb.likelihood(z_hat.transpose(0, 1).reshape(z.shape[1], 1, -1))[0])
        return z_hat, lik.reshape(z.shape[1], z.shape[0], *z.shape[2:]).transpose(0, 1)

    def _indexes(self, scales: Tensor) -> Tensor:
        """The CDF index of every element: how many scale-table entries (all but the last) lie
        below its scale. The same comparisons as CompressAI's build_indexes, in one bucketize
        instead of 63 passes over the tensor."""
        gc = self.gaussian_conditional
        table = gc.scale_table[:-1].to(scales)
        return torch.bucketize(gc.lower_bound_scale(scales), table).int()

    def _coding_params(self, z_hat: Tensor, profile: NumericProfile) -> tuple[Tensor, Tensor]:
        """(means, scale indexes) of y as the range coder uses them: from the fixed-point h_s
        (exact on every device) or, for streams of format 1 and 2, from the float h_s."""
        if profile == NumericProfile.FLOAT:
            means, scales = self._params(z_hat)
            return means, self._indexes(scales)
        if self.exact_h_s is None:
            raise RuntimeError("call update() before coding")
        medians = self.entropy_bottleneck.medians().reshape(1, -1, 1, 1)
        return self.exact_h_s.params(torch.round(z_hat - medians), medians)

    def compress(self, y: Tensor, q: int | Tensor,
                 profile: NumericProfile = DEFAULT_PROFILE) -> tuple[LatentStrings, Tensor]:
        """Code a batch of one; returns the strings and the exact y_hat the decoder will rebuild."""
        return self.compress_scaled(self.scaled(y, q), q, profile)

    def scaled(self, y: Tensor, q: int | Tensor) -> Tensor:
        """y times its gain at `q`: the latent the quantiser rounds (a bin is 1 wide)."""
        return y * self._gains(q, y)[0]

    def compress_scaled(self, y_s: Tensor, q: int | Tensor,
                        profile: NumericProfile = DEFAULT_PROFILE) -> tuple[LatentStrings, Tensor]:
        """`compress` of a latent already scaled (`scaled`)."""
        z_string, z_hat = self.encode_z(self.h_a(y_s), profile)
        means, indexes = self._coding_params(z_hat, profile)
        coder = self._require_coder()
        symbols = torch.round(y_s - means) * coder.coded(indexes, profile.skip_below)
        y_string = coder.encode(symbols, indexes, profile.skip_below, profile.substreams)
        # Rebuild y_hat from the symbols exactly as decompress does.
        return LatentStrings(y_string, z_string), self._dequantize(symbols, means, q)

    def decompress(self, strings: LatentStrings, latent_hw: tuple[int, int], q: int | Tensor,
                   profile: NumericProfile = DEFAULT_PROFILE) -> Tensor:
        z_hat = self.decode_z(strings.z, (latent_hw[0] // 4, latent_hw[1] // 4), profile)
        means, indexes = self._coding_params(z_hat, profile)
        symbols = self._require_coder().decode(strings.y, indexes, profile.skip_below,
                                                profile.substreams)
        return self._dequantize(symbols, means, q)

    def encode_z(self, z: Tensor, profile: NumericProfile) -> tuple[bytes, Tensor]:
        """z's string and the z_hat the decoder will rebuild: symbols round(z - median) per channel,
        coded by nvc's coder (profile 3) or CompressAI's."""
        medians = self.entropy_bottleneck.medians().reshape(1, -1, 1, 1)
        symbols = torch.round(z - medians)
        values = symbols.int().cpu().numpy().ravel()
        indexes = _channel_indexes(z.shape[1], (z.shape[-2], z.shape[-1]))
        tables = self._require_z_tables()
        string = (rans.encode(tables, values, indexes) if profile.substreams
                  else legacy_encode(tables, values, indexes))
        return string, symbols + medians

    def decode_z(self, string: bytes, z_hw: tuple[int, int], profile: NumericProfile) -> Tensor:
        eb = self.entropy_bottleneck
        indexes = _channel_indexes(eb.channels, z_hw)
        tables = self._require_z_tables()
        symbols = (rans.decode(tables, string, indexes, "z string") if profile.substreams
                   else legacy_decode(tables, string, indexes))
        medians = eb.medians().reshape(1, -1, 1, 1)
        return torch.from_numpy(symbols).float().reshape(1, eb.channels, *z_hw).to(medians) + medians

    def _require_z_tables(self) -> rans.Tables:
        if self.z_tables is None:
            raise RuntimeError("call update() before coding")
        return self.z_tables

    def _require_coder(self) -> TableCoder:
        if self.coder is None:
            raise RuntimeError("call update() before coding")
        return self.coder

    def _dequantize(self, symbols: Tensor, means: Tensor, q: int | Tensor) -> Tensor:
        _, ig = self._gains(q, symbols)
        return (symbols + means) * ig

    def update(self, force: bool = True, dtype: torch.dtype = torch.float64) -> None:
        """Build the CDF tables the range coder needs (call after loading weights), their masses
        computed in `dtype` (float32: the tables of streams before format 14; nvc.models.priors)."""
        self.gaussian_conditional.update_scale_table(SCALE_TABLE, force=force, dtype=dtype)
        self.entropy_bottleneck.update(force=force, dtype=dtype)
        self.exact_h_s = ExactHyperSynthesis(self.h_s)
        self.coder = TableCoder(self.gaussian_conditional)
        self.z_tables = rans.Tables.of(self.entropy_bottleneck)

    def tables(self) -> list[Tensor]:
        """The integer tables the range coder reads (built by update() in float arithmetic, so
        streams record their checksum: see SSF.tables_crc)."""
        return [getattr(m, name) for m in (self.entropy_bottleneck, self.gaussian_conditional)
                for name in ("_quantized_cdf", "_offset", "_cdf_length")]

    def aux_loss(self) -> Tensor:
        return self.entropy_bottleneck.loss()

    def load_cdf_buffers(self, state_dict: dict, prefix: str) -> None:
        """Resize the registered CDF buffers to the shapes found in a state dict before loading."""
        for name, module in (("entropy_bottleneck", self.entropy_bottleneck),
                             ("gaussian_conditional", self.gaussian_conditional)):
            for buffer in ("_quantized_cdf", "_offset", "_cdf_length", "scale_table"):
                stored = state_dict.get(f"{prefix}{name}.{buffer}")
                if stored is not None and hasattr(module, buffer):
                    getattr(module, buffer).resize_(stored.shape)


def _skipped(y_hat: Tensor, y_lik: Tensor, means: Tensor, scales: Tensor, skip_below: int
             ) -> tuple[Tensor, Tensor]:
    """y_hat and its likelihoods with the elements whose scale index lies below `skip_below` as
    the coder leaves them: their means, at likelihood 1 (no bits). Unchanged for 0."""
    if not skip_below:
        return y_hat, y_lik
    # index < k <=> the (lower-bounded) scale is at most the table's entry k - 1
    skip = scales.detach() <= SCALE_TABLE[skip_below - 1]
    return torch.where(skip, means, y_hat), y_lik.masked_fill(skip, 1.0)


def _rounded_around(y_s: Tensor, means: Tensor) -> Tensor:
    """y_s rounded around its means, straight-through: what the decoder's synthesis will see, with
    the gradient of the identity."""
    y_q = y_s - means
    return y_q + (torch.round(y_q) - y_q).detach() + means


def _channel_indexes(channels: int, hw: tuple[int, int]):
    """The table of every element of a (1, channels, h, w) z in raster order: its channel's."""
    return np.repeat(np.arange(channels, dtype=np.int32), hw[0] * hw[1])
