"""nvc's own range coder (nvc/models/_rans.c through nvc.models.rans): symbols back exactly,
escapes of any size, bytes independent of the thread count, a rate within a hair of CompressAI's,
and damaged strings refused or decoded to garbage, never a crash."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nvc.errors import BitstreamError, NvcError
from nvc.models import rans
from nvc.models.entropy import SCALE_TABLE
from nvc.models.priors import GaussianConditional
from nvc.models.range_coder import TableCoder


@pytest.fixture(scope="module")
def coder() -> TableCoder:
    gc = GaussianConditional()
    gc.update_scale_table(SCALE_TABLE, force=True)
    return TableCoder(gc)


def _gaussian(n: int, seed: int = 0, low: int = 0) -> tuple[np.ndarray, np.ndarray]:
    g = torch.Generator().manual_seed(seed)
    indexes = torch.randint(low, 64, (n,), generator=g, dtype=torch.int32)
    scales = torch.tensor(SCALE_TABLE)[indexes.long()]
    return (torch.randn(n, generator=g) * scales).round().int().numpy(), indexes.numpy()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(-(2 ** 30) + 1, 2 ** 30 - 1), st.integers(0, 63)),
                min_size=1, max_size=300))
def test_any_values_come_back(coder, pairs):
    values = np.array([v for v, _ in pairs], np.int32)
    indexes = np.array([i for _, i in pairs], np.int32)
    data = rans.encode(coder.tables, values, indexes)
    assert np.array_equal(rans.decode(coder.tables, data, indexes), values)


def test_values_beyond_what_an_escape_carries_are_refused(coder):
    with pytest.raises(NvcError, match="too far beyond the range coder's tables"):
        rans.encode(coder.tables, np.array([0, 2 ** 30 + 5], np.int32), np.array([3, 3], np.int32))


def test_substreams_follow_the_count_alone():
    s = rans.SUBSTREAM_SYMBOLS
    assert rans.substream_bounds(0) == [0, 0] and rans.substream_bounds(5) == [0, 5]
    assert rans.substream_bounds(s) == [0, s] and rans.substream_bounds(s + 1) == [0, s // 2, s + 1]
    many = rans.substream_bounds(10 ** 8)
    assert len(many) == rans.MAX_SUBSTREAMS + 1 and many[-1] == 10 ** 8


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_the_bytes_do_not_depend_on_the_thread_count(coder, monkeypatch, threads):
    values, indexes = _gaussian(3 * rans.SUBSTREAM_SYMBOLS + 17, seed=1)
    monkeypatch.setattr(rans, "THREADS", 1)
    reference = rans.encode(coder.tables, values, indexes)
    monkeypatch.setattr(rans, "THREADS", threads)
    assert rans.encode(coder.tables, values, indexes) == reference
    assert np.array_equal(rans.decode(coder.tables, reference, indexes), values)


def test_the_rate_is_compressais_within_a_fraction_of_a_percent(coder):
    """The same tables, so the same probabilities: the code differs only by the coders' state
    sizes, CompressAI's 8-byte flush against 4 bytes and a length per substream."""
    values, indexes = _gaussian(300_000, seed=2, low=6)
    ours = len(rans.encode(coder.tables, values, indexes))
    theirs = len(coder.encode(torch.from_numpy(values).float()[None, :, None, None],
                              torch.from_numpy(indexes)[None, :, None, None]))
    assert abs(ours / theirs - 1) < 0.002, (ours, theirs)


def test_damaged_strings_are_refused_or_garbage_never_a_crash(coder):
    values, indexes = _gaussian(2 * rans.SUBSTREAM_SYMBOLS + 5, seed=3)
    data = rans.encode(coder.tables, values, indexes)
    with pytest.raises(BitstreamError, match="damaged y string"):
        rans.decode(coder.tables, data[:-2], indexes)
    with pytest.raises(BitstreamError, match="damaged y string"):
        rans.decode(coder.tables, data + b"\0\0", indexes)
    with pytest.raises(BitstreamError, match="substream length"):
        rans.decode(coder.tables, b"\xff", indexes)
    rng = np.random.default_rng(0)
    refused = 0
    for _ in range(200):
        junk = bytearray(data)
        junk[rng.integers(len(junk))] ^= 1 << int(rng.integers(8))
        try:
            rans.decode(coder.tables, bytes(junk), indexes)
        except BitstreamError:
            refused += 1
    for size in (0, 3, 4, 64):
        try:
            rans.decode(coder.tables, rng.integers(0, 256, size, dtype=np.uint8).tobytes(), indexes)
        except BitstreamError:
            refused += 1
    assert refused > 150  # the final-state check catches nearly every flipped bit


def test_an_index_outside_the_tables_is_an_error(coder):
    with pytest.raises(NvcError, match="table is invalid"):
        rans.encode(coder.tables, np.zeros(3, np.int32), np.array([0, 64, 1], np.int32))
    with pytest.raises(BitstreamError, match="table is invalid"):
        rans.decode(coder.tables, bytes(8), np.array([-1], np.int32))


def test_without_the_compiled_coder_the_message_says_how_to_build_it(monkeypatch, tmp_path):
    monkeypatch.setattr(rans, "_lib", None)
    monkeypatch.setattr(rans, "__file__", str(tmp_path / "rans.py"))
    with pytest.raises(NvcError, match=r"range coder is not built .*pip install -e \."):
        rans.library()


FUZZ = """
import numpy as np, torch
from nvc.models.priors import GaussianConditional
from nvc.models import rans
from nvc.models.entropy import SCALE_TABLE
from nvc.models.range_coder import TableCoder
gc = GaussianConditional()
gc.update_scale_table(SCALE_TABLE, force=True)
tables, scales = TableCoder(gc).tables, np.array(SCALE_TABLE)
rng = np.random.default_rng(0)
for it in range(400):
    n = int(rng.integers(1, 2000))
    idx = rng.integers(0, 64, n).astype(np.int32)
    vals = (rng.standard_normal(n) * scales[idx] * rng.choice([1, 1, 50])).round().astype(np.int32)
    if it % 7 == 0:
        vals[rng.integers(n)] = int(rng.integers(-(2 ** 30) + 1, 2 ** 30))
    data = rans.encode(tables, vals, idx)
    assert (rans.decode(tables, data, idx) == vals).all()
    junk = bytearray(data)
    for _ in range(int(rng.integers(1, 4))):
        junk[rng.integers(len(junk))] = int(rng.integers(256))
    try:
        rans.decode(tables, bytes(junk[: int(rng.integers(0, len(junk) + 1))] if it % 3 == 0
                                  else junk), idx)
    except Exception:
        pass
print("clean")
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="needs gcc with AddressSanitizer")
def test_the_coder_stays_in_bounds_under_sanitizers(tmp_path):
    """Round trips with escapes of every size, and damaged strings, through a build of _rans.c
    with AddressSanitizer and UBSan: any read or write out of bounds, or undefined arithmetic,
    aborts the process."""
    lib = tmp_path / "_rans_asan.so"
    source = Path(rans.__file__).with_name("_rans.c")
    subprocess.run(["gcc", "-O1", "-g", "-fsanitize=address,undefined",
                    "-fno-sanitize-recover=undefined", "-shared", "-fPIC", "-o", str(lib),
                    str(source)], check=True)
    runtimes = [subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                               text=True).stdout.strip() for name in ("libasan.so", "libubsan.so")]
    if not all(os.path.isabs(r) for r in runtimes):
        pytest.skip("gcc has no sanitizer runtimes")
    env = {**os.environ, "NVC_RANS_LIBRARY": str(lib), "LD_PRELOAD": ":".join(runtimes),
           "ASAN_OPTIONS": "detect_leaks=0"}
    run = subprocess.run([sys.executable, "-c", FUZZ], env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0 and "clean" in run.stdout, run.stderr[-2000:]
