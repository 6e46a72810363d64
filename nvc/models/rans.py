"""nvc's own range coder (nvc/models/_rans.c), coding a latent's elements in substreams on threads.

CompressAI's coder holds the GIL, so nothing ran beside it. This one is plain C loaded with
ctypes, whose foreign calls release the GIL: a latent's coded elements (raster order, skipped ones
left out) are cut into `substream_bounds(n)` runs, each coded on its own, and the runs are coded
and decoded on up to NVC_RANGE_THREADS threads (default: every core the process may use). The
cut depends only on the number of coded elements, which both sides know from the exact scale
indexes, so the bytes do not depend on the thread count. bitstream.join_substreams lays the runs
out in a y string. z, far smaller, is coded by the same coder (one run: the string is the run).

The tables are CompressAI's quantised CDFs as update() builds them (GaussianConditional's for y,
EntropyBottleneck's for z), so the same probabilities as before; a value outside its table is
escaped and follows as raw 4-bit groups (see _rans.c).
"""
from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .. import workers
from ..bitstream import join_substreams, split_substreams
from ..errors import MAX_THREADS, BitstreamError, NvcError, env_int

# A run per SUBSTREAM_SYMBOLS coded elements, at most MAX_SUBSTREAMS: each run costs its 4-byte
# final state and a 2-3 byte length, about 0.1% of what 65,536 elements take at the lowest rates.
SUBSTREAM_SYMBOLS = 1 << 16
MAX_SUBSTREAMS = 64


def _cores() -> int:
    """The cores this process may run on (the affinity mask where the OS has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


THREADS = env_int("NVC_RANGE_THREADS", 0, maximum=MAX_THREADS) or _cores()

DAMAGED = -3  # the C coder's code for data that ran out or did not end where the encoder's did
_ERRORS = {-1: "a range-coder table is invalid", -2: "the coder's output buffer is too small",
           -4: "a value lies too far beyond the range coder's tables"}
_I32 = ctypes.POINTER(ctypes.c_int32)
_U8 = ctypes.POINTER(ctypes.c_uint8)


def substream_bounds(n: int) -> list[int]:
    """Where the runs of n coded elements start and end: k + 1 offsets for k runs."""
    k = min(MAX_SUBSTREAMS, max(1, -(-n // SUBSTREAM_SYMBOLS)))
    return [n * i // k for i in range(k + 1)]


_lib: ctypes.CDLL | None = None


def library() -> ctypes.CDLL:
    """The compiled coder, loaded once: pip install builds it next to this file; NVC_RANS_LIBRARY
    names another build (say, one with sanitizers)."""
    global _lib
    if _lib is None:
        own = os.environ.get("NVC_RANS_LIBRARY")
        found = [Path(own)] if own else sorted(Path(__file__).parent.glob("_rans*.so"))
        if not found or not found[0].is_file():
            raise NvcError("nvc's range coder is not built (nvc/models/_rans.c); reinstall nvc "
                           "where a C compiler is available: pip install -e .")
        lib = ctypes.CDLL(str(found[0]))
        tables: list[Any] = [_I32, _I32, _I32, ctypes.c_int32, ctypes.c_int32]
        lib.nvc_rans_encode.argtypes = [_I32, _I32, ctypes.c_int64, *tables, _U8, ctypes.c_int64]
        lib.nvc_rans_encode.restype = ctypes.c_int64
        lib.nvc_rans_decode.argtypes = [_U8, ctypes.c_int64, _I32, ctypes.c_int64, *tables, _I32]
        lib.nvc_rans_decode.restype = ctypes.c_int32
        lib.nvc_quantized_cdf.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_int32,
                                          ctypes.c_int32, _I32]
        lib.nvc_quantized_cdf.restype = ctypes.c_int32
        _lib = lib
    return _lib


def _map(fn: Callable[[int], bytes | None], count: int) -> list:
    """fn(0), ..., fn(count - 1), on the coder's threads when there is more than one run."""
    if count == 1 or THREADS == 1:
        return [fn(i) for i in range(count)]
    return list(workers.shared("nvc-rans", THREADS).map(fn, range(count)))


def _ptr(a: np.ndarray, kind):
    return a.ctypes.data_as(kind)


def quantized_cdf(pmf, precision: int = 16) -> np.ndarray:
    """The coder's table for a probability mass function (the escape's mass last): n + 1
    cumulative frequencies over 2^precision, int32, every symbol at least 1 (see _rans.c)."""
    masses = np.ascontiguousarray(pmf, np.float32)
    cdf = np.empty(len(masses) + 1, np.int32)
    rc = library().nvc_quantized_cdf(masses.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
                                     len(masses), precision, _ptr(cdf, _I32))
    if rc:
        raise NvcError(f"no range-coder table for this distribution ({len(masses)} masses, "
                       "one negative, not finite or too large, or all too small)")
    return cdf


def table_lists(model) -> tuple[list[list[int]], list[int], list[int]]:
    """The CDF rows, lengths and offsets of a CompressAI entropy model (GaussianConditional or
    EntropyBottleneck, after its update()) as Python lists."""
    return (model._quantized_cdf.tolist(), model._cdf_length.reshape(-1).int().tolist(),
            model._offset.reshape(-1).int().tolist())


class Tables:
    """The CDF tables as the C coder reads them: rows of `stride` int32, lengths, offsets."""

    @classmethod
    def of(cls, model) -> Tables:
        return cls(*table_lists(model))

    def __init__(self, cdf: list[list[int]], lengths: list[int], offsets: list[int]):
        self.lengths = np.ascontiguousarray(lengths, dtype=np.int32)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int32)
        self.stride = max(len(row) for row in cdf)
        self.cdf = np.zeros((len(cdf), self.stride), dtype=np.int32)
        for i, row in enumerate(cdf):
            self.cdf[i, :len(row)] = row

    @property
    def _args(self) -> tuple:
        """The tables as the C functions take them (made per call: ctypes pointers would keep a
        model from being copied)."""
        return (_ptr(self.cdf, _I32), _ptr(self.lengths, _I32), _ptr(self.offsets, _I32),
                len(self.lengths), self.stride)

    def escapes(self, values: np.ndarray, indexes: np.ndarray) -> int:
        """How many values lie outside their table (an index outside the tables is the C coder's
        to refuse)."""
        i = np.clip(indexes, 0, len(self.lengths) - 1)
        v = values.astype(np.int64) - self.offsets[i]
        return int(((v < 0) | (v >= self.lengths[i] - 2)).sum())

    def encode(self, values: np.ndarray, indexes: np.ndarray) -> bytes:
        """One substream: int32 symbols and their table indexes."""
        # every symbol writes at most one 16-bit word, an escape 1 + 8 more, then the 4-byte state
        out = np.empty(4 + 2 * (len(values) + 9 * self.escapes(values, indexes)), np.uint8)
        n = library().nvc_rans_encode(_ptr(values, _I32), _ptr(indexes, _I32), len(values),
                                      *self._args, _ptr(out, _U8), len(out))
        if n < 0:
            raise NvcError(f"cannot code this latent: {_ERRORS.get(n, n)}")
        return out[:n].tobytes()

    def decode(self, data: bytes, indexes: np.ndarray, out: np.ndarray, what: str = "y string"
               ) -> None:
        """One substream into `out` (int32, len(indexes) elements)."""
        buf = np.frombuffer(data, np.uint8)
        rc = library().nvc_rans_decode(_ptr(buf, _U8), len(buf), _ptr(indexes, _I32),
                                       len(indexes), *self._args, _ptr(out, _I32))
        if rc:
            message = f"damaged {what}" if rc == DAMAGED else _ERRORS.get(rc, str(rc))
            raise BitstreamError(f"{message} ({len(indexes)} elements)")


def encode(tables: Tables, values: np.ndarray, indexes: np.ndarray) -> bytes:
    """The string of the coded elements (int32 arrays, raster order)."""
    values, indexes = np.ascontiguousarray(values, np.int32), np.ascontiguousarray(indexes, np.int32)
    b = substream_bounds(len(values))
    runs = _map(lambda i: tables.encode(values[b[i]:b[i + 1]], indexes[b[i]:b[i + 1]]), len(b) - 1)
    return join_substreams(runs)


def decode(tables: Tables, data: bytes, indexes: np.ndarray, what: str = "y string") -> np.ndarray:
    """The coded elements' symbols (int32) from a string (`what`, for messages); BitstreamError if
    it is damaged."""
    indexes = np.ascontiguousarray(indexes, np.int32)
    b = substream_bounds(len(indexes))
    runs = split_substreams(data, len(b) - 1, what)
    out = np.empty(len(indexes), np.int32)
    _map(lambda i: tables.decode(runs[i], indexes[b[i]:b[i + 1]], out[b[i]:b[i + 1]], what),
         len(runs))
    return out
