"""The range coder's side of y: nvc's own rANS in substreams (nvc.models.rans; numeric profile 3,
the default) or, for streams of profiles 0-2, CompressAI's rANS (imported only for them) with the
Gaussian CDF tables held as Python lists; and z's strings of profiles 0-2 (`legacy_encode`).

CompressAI's GaussianConditional converts its 64 x ~3,000 CDF table to a Python list at every call
(about 200k integers) and every index and symbol tensor through Python lists; at 416x240 that glue,
not the coder, was most of the entropy-coding time. Here the tables are converted once, when
update() builds them, and only the coded elements travel.

Elements whose scale index is below `skip_below` are not coded at all: both sides derive the
indexes from the exact hyper-synthesis (nvc.models.exact), so they agree on which elements those
are, and such an element decodes as its mean (symbol 0); DCVC skips scales at or below 0.15 the
same way. The encoder's reconstruction zeroes the same symbols, so the two sides stay equal.
bitstream.SKIP_BELOW_INDEX says where the shipped profile draws the line, and why.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..errors import NvcError
from . import rans
from .priors import GaussianConditional

# CompressAI 1.2.8's RansEncoder writes into a buffer of one 32-bit word per symbol with no bounds
# check, and aborts the process when the code is longer: always on 0 or 1 symbols, and on a few
# unlikely ones. A symbol adds at most 16 bits to the code (more when its value lies beyond its table:
# see TableCoder.code_bits_bound) and the flush 64; so short lists are padded with zero symbols at
# index 0 (the most peaked CDF: ~1e-4 bits each) to a length the decoder derives from the count
# alone, and the encoder refuses the pathological rest instead of overrunning the buffer.
PAD_BELOW = 64


def readable(string: bytes, symbols: int) -> bytes:
    """`string` followed by zeros enough that CompressAI's decoder, which never checks where its
    input ends, cannot read past it whatever the bytes say (a crafted stream passes the CRCs).
    It reads its 2-word state, at most one 32-bit word per symbol, and per escape at most one
    word per 4-bit group; the groups of a length are counted while they read 15, which the real
    words can say at most 8 times each and zeros never, so a stream of W words makes fewer than
    17 W + 32 extra reads. Trailing zeros change nothing the encoder wrote."""
    words = len(string) // 4 + 1
    return string + bytes(4 * (symbols + 32 * words + 64))


def padded_count(n: int) -> int:
    """Symbols actually handed to the coder for n coded elements."""
    return n if n >= PAD_BELOW or n == 0 else 2 * n + 3


class TableCoder:
    """Codes integer symbols (value - mean, rounded) with the CDF each element's index picks."""

    def __init__(self, gc: GaussianConditional):
        self.cdf, self.lengths, self.offsets = rans.table_lists(gc)
        self._offset = torch.tensor(self.offsets, dtype=torch.int64)
        self._top = torch.tensor(self.lengths, dtype=torch.int64) - 2  # the escape symbol
        self.tables = rans.Tables(self.cdf, self.lengths, self.offsets)

    @staticmethod
    def coded(indexes: Tensor, skip_below: int) -> Tensor:
        """Mask of the elements the stream carries."""
        return indexes >= skip_below

    def code_bits_bound(self, symbols: Tensor, indexes: Tensor) -> int:
        """An upper bound on the code's length in bits: at most 16 per symbol (every frequency is at
        least 1 in 2^16), and for a value beyond its table CompressAI's raw 4-bit groups (its
        digits, plus one length group per 15 digits, plus one)."""
        i = indexes.to(torch.int64)
        value, top = symbols.to(torch.int64) - self._offset[i], self._top[i]
        beyond = (value < 0) | (value >= top)
        v, t = value[beyond], top[beyond]
        raw = torch.where(v < 0, -2 * v - 1, 2 * (v - t))
        digits = torch.zeros_like(raw)
        for d in range(16):  # hex digits of raw
            digits += (raw >> (4 * d)) > 0
        return 16 * symbols.numel() + int((4 * (digits + digits // 15 + 1)).sum())

    def encode(self, symbols: Tensor, indexes: Tensor, skip_below: int = 0,
               substreams: bool = False) -> bytes:
        """The y string; `substreams`: nvc's coder (profile 3), else CompressAI's."""
        keep = self.coded(indexes, skip_below)
        values, idx = _kept(symbols, keep), _kept(indexes, keep)
        if not idx.numel():  # everything skipped: nothing to write
            return b""
        if substreams:
            return rans.encode(self.tables, values.numpy(), idx.numpy())
        total = padded_count(idx.numel())
        if self.code_bits_bound(values, idx) + 96 > 32 * total:  # 96: the flush and the last word
            raise NvcError(f"cannot code this latent: its {idx.numel()} values lie too far beyond "
                           "the range coder's tables")
        pad = [0] * (total - idx.numel())
        return _compressai_coder().RansEncoder().encode_with_indexes(
            _as_list(values) + pad, _as_list(idx) + pad, self.cdf, self.lengths, self.offsets)

    def decode(self, string: bytes, indexes: Tensor, skip_below: int = 0,
               substreams: bool = False) -> Tensor:
        """Symbols (float32) shaped like `indexes`, 0 where nothing was coded."""
        keep = self.coded(indexes, skip_below).cpu()
        kept = _kept(indexes, keep)
        out = torch.zeros(indexes.shape)
        if not kept.numel():
            if string:
                raise ValueError("a y string where no element is coded")
            return out.to(indexes.device)
        if substreams:
            values = torch.from_numpy(rans.decode(self.tables, string, kept.numpy()))
            out.masked_scatter_(keep, values.to(torch.float32))
            return out.to(indexes.device)
        idx = _as_list(kept)
        if len(string) < 8:  # shorter than the encoder's flush
            raise ValueError(f"a y string of {len(string)} bytes for {len(idx)} elements")
        total = padded_count(len(idx))
        values = _compressai_coder().RansDecoder().decode_with_indexes(
            readable(string, total), idx + [0] * (total - len(idx)), self.cdf, self.lengths,
            self.offsets)[:len(idx)]
        out.masked_scatter_(keep, torch.from_numpy(np.array(values, dtype=np.float32)))
        return out.to(indexes.device)


def legacy_encode(tables: rans.Tables, values: np.ndarray, indexes: np.ndarray) -> bytes:
    """A z string of numeric profiles 0-2: CompressAI's rANS, one stream (z has at least 64
    elements, so its buffer cannot overrun: see PAD_BELOW)."""
    return _compressai_coder().RansEncoder().encode_with_indexes(
        values.tolist(), indexes.tolist(), tables.cdf.tolist(), tables.lengths.tolist(),
        tables.offsets.tolist())


def legacy_decode(tables: rans.Tables, string: bytes, indexes: np.ndarray) -> np.ndarray:
    """The symbols (int32) of a z string of numeric profiles 0-2."""
    values = _compressai_coder().RansDecoder().decode_with_indexes(
        readable(string, len(indexes)), indexes.tolist(), tables.cdf.tolist(),
        tables.lengths.tolist(), tables.offsets.tolist())
    return np.asarray(values, dtype=np.int32)


def _compressai_coder():
    """CompressAI's rANS, imported only for streams that use it (numeric profiles 0-2, adapters
    of formats up to 8): its package takes 2.6 s to import."""
    from compressai import ans

    return ans


def _kept(t: Tensor, keep: Tensor) -> Tensor:
    """The elements of t where `keep` is set, in raster order, as int32 on the CPU."""
    return torch.masked_select(t.detach().cpu(), keep.cpu()).to(torch.int32)


def _as_list(t: Tensor) -> list[int]:
    """Python ints, what the coder takes (numpy's tolist is about twice as fast as torch's)."""
    return t.numpy().tolist()
