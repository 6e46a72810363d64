"""The y coder (nvc.models.range_coder): CompressAI's bytes when nothing is skipped, symbols back
exactly, skipped elements decoded as 0, and the skip profile end to end."""
import numpy as np
import pytest
import torch

from nvc import bitstream
from nvc.bitstream import NumericProfile, SequenceHeader
from nvc.codec import encode
from nvc.decoding import decode_stream
from nvc.errors import NvcError
from nvc.models.entropy import SCALE_TABLE
from nvc.models.priors import GaussianConditional
from nvc.models.range_coder import PAD_BELOW, TableCoder, padded_count


@pytest.fixture(scope="module")
def gc() -> GaussianConditional:
    gc = GaussianConditional()  # the tables of streams before format 14, CompressAI's
    gc.update_scale_table(SCALE_TABLE, force=True, dtype=torch.float32)
    return gc


def _symbols_and_indexes(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    indexes = torch.randint(0, 64, (1, 6, 9, 11), generator=g, dtype=torch.int32)
    scales = torch.tensor(SCALE_TABLE)[indexes.long()]
    symbols = (torch.randn(indexes.shape, generator=g) * scales).round()
    symbols[0, 0, 0, :3] = torch.tensor([5000.0, -7000.0, 40.0])  # beyond the tables: escapes
    indexes[0, 0, 0, :3] = torch.tensor([0, 3, 0], dtype=torch.int32)
    return symbols, indexes


def test_without_skip_the_bytes_are_compressais(gc):
    """Streams of profile 1 (every element coded) are what CompressAI's coder wrote before."""
    symbols, indexes = _symbols_and_indexes()
    from compressai.entropy_models import GaussianConditional as Theirs

    model = Theirs(None)
    model.update_scale_table(list(SCALE_TABLE), force=True)
    ours = TableCoder(gc).encode(symbols, indexes)
    theirs = model.compress(symbols, indexes, means=torch.zeros_like(symbols))[0]
    assert ours == theirs
    back = TableCoder(gc).decode(ours, indexes)
    assert back.dtype == torch.float32 and torch.equal(back, symbols)


@pytest.mark.parametrize("skip_below", [1, 6, 64])
def test_skipped_elements_decode_as_zero(gc, skip_below):
    symbols, indexes = _symbols_and_indexes(1)
    coder = TableCoder(gc)
    data = coder.encode(symbols, indexes, skip_below)
    back = coder.decode(data, indexes, skip_below)
    keep = indexes >= skip_below
    assert torch.equal(back[keep], symbols[keep]) and not back[~keep].any()
    assert 0 < int((~keep).sum()) and (skip_below < 64) == bool(keep.any())
    assert len(data) < len(coder.encode(symbols, indexes))  # skipped escapes cost nothing


@pytest.mark.parametrize("coded", [0, 1, 2, 5, 63, 64])
def test_latents_with_almost_nothing_to_code(gc, coded):
    """A latent whose scales are nearly all small (a still P-frame): CompressAI's encoder aborts
    the process on 0 or 1 symbols and on a few unlikely ones; padding keeps it inside its buffer
    (every value here is beyond its table: the worst case)."""
    indexes = torch.zeros(1, 4, 4, 8, dtype=torch.int32)
    indexes.view(-1)[:coded] = 9
    symbols = torch.zeros(indexes.shape)
    symbols.view(-1)[:coded] = torch.tensor([3e5, -2e5] * 32)[:coded]
    coder = TableCoder(gc)
    if coded >= PAD_BELOW:
        with pytest.raises(NvcError, match=f"its {coded} values lie too far beyond"):
            coder.encode(symbols, indexes, 6)
        return
    data = coder.encode(symbols, indexes, 6)
    assert (data == b"") == (coded == 0)
    assert torch.equal(coder.decode(data, indexes, 6), symbols)
    if coded == 0:
        with pytest.raises(ValueError, match="no element is coded"):
            coder.decode(b"\x01", indexes, 6)
    else:
        with pytest.raises(ValueError, match="a y string of 4 bytes"):
            coder.decode(data[:4], indexes, 6)


def test_the_bound_on_the_code_length(gc):
    coder = TableCoder(gc)
    offset, top = coder.offsets[9], coder.lengths[9] - 2
    def bound(symbols, indexes):
        return coder.code_bits_bound(torch.tensor(symbols), torch.tensor(indexes))

    assert bound([0, 1, -1], [9, 9, 9]) == 48  # inside the table
    # just beyond either end: raw values 1 (one digit) and 0 (none), each with its length group
    assert bound([offset - 1, offset + top], [9, 9]) == (16 + 8) + (16 + 4)
    big = offset + top + 16 ** 7 // 2  # raw 16^7: 8 digits
    assert bound([big, big - 1], [9, 9]) == (16 + 4 * (8 + 1)) + (16 + 4 * (7 + 1))


def test_padding_is_derived_from_the_count():
    assert [padded_count(n) for n in (0, 1, 2, 63, 64, 5000)] == [0, 5, 7, 129, 64, 5000]


def test_the_skip_mask_is_the_index_threshold():
    idx = torch.tensor([0, 5, 6, 63], dtype=torch.int32)
    assert TableCoder.coded(idx, 6).tolist() == [False, False, True, True]
    assert TableCoder.coded(idx, 0).all()
    assert NumericProfile.EXACT_SKIP.skip_below == bitstream.SKIP_BELOW_INDEX == 6
    assert NumericProfile.EXACT_HYPER.skip_below == NumericProfile.FLOAT.skip_below == 0


def test_the_default_profile_skips_and_decodes_to_the_encoders_frames(tiny_model, small_video):
    model, entry = tiny_model
    coded = {p: encode(small_video, model, entry, 2, profile=p)
             for p in (NumericProfile.EXACT_HYPER, NumericProfile.EXACT_SKIP,
                       bitstream.DEFAULT_PROFILE)}
    assert bitstream.DEFAULT_PROFILE == NumericProfile.SUBSTREAMS
    assert NumericProfile.SUBSTREAMS.skip_below == NumericProfile.EXACT_SKIP.skip_below
    # the same symbols, coded by either coder: the same frames
    assert all(np.array_equal(a, b) for a, b in zip(coded[NumericProfile.EXACT_SKIP].reconstruction,
                                                    coded[NumericProfile.SUBSTREAMS].reconstruction))
    for profile, c in coded.items():
        stream = bitstream.unpack(c.data)
        assert stream.header.numeric_profile == profile
        out = decode_stream(stream, model, entry)
        assert all(torch.equal(torch.from_numpy(a), torch.from_numpy(b))
                   for a, b in zip(c.reconstruction, out.frames))


def test_the_skip_profile_survives_the_header(tiny_model):
    header = SequenceHeader(4, bytes(8), 64, 48, 25, 1, 3, 12, 2, 1, NumericProfile.EXACT_SKIP, 7)
    assert SequenceHeader.read(header.write()).numeric_profile == NumericProfile.EXACT_SKIP


CRAFTED = """
import sys, torch
from nvc.models.priors import GaussianConditional
import nvc.models.range_coder as rc
from nvc.models.entropy import SCALE_TABLE
if sys.argv[1] == "unpadded":
    rc.readable = lambda string, symbols: string
gc = GaussianConditional()
gc.update_scale_table(SCALE_TABLE, force=True)
coder = rc.TableCoder(gc)
gen = torch.Generator().manual_seed(0)
for string, index in [(b"\\xff" * 12, 63), (b"\\x00" * 8, 40), (b"\\xff" * 4 + b"\\x0f" * 60, 20),
                      (bytes(torch.randint(0, 256, (64,), generator=gen).tolist()), 30)]:
    coder.decode(string, torch.full((1, 50, 40, 50), index, dtype=torch.int32))
print("survived")
"""


@pytest.mark.parametrize("variant, survives", [("padded", True), ("unpadded", False)])
def test_crafted_strings_cannot_make_the_decoder_read_past_them(tmp_path, variant, survives):
    """Garbage y strings that pass a frame's CRC (a crafted stream): the decoder returns garbage
    symbols, never reads beyond its input. Without the zero padding the same strings crash the
    process (the second case shows the test can fail)."""
    import subprocess
    import sys

    script = tmp_path / "crafted.py"
    script.write_text(CRAFTED)
    run = subprocess.run([sys.executable, str(script), variant], capture_output=True, text=True,
                         timeout=300)
    assert (run.returncode == 0 and "survived" in run.stdout) == survives, run.stderr[-500:]
