"""nvc: an instance-adaptive neural video codec (see README.md and ../shared/DESIGN.md)."""
import warnings

# compressai 1.2.8 calls torch.jit.script at import time and torch >= 2.10 warns about it (nvc
# imports it only to decode streams its coder wrote, and the tests compare with it); silence
# exactly that notice, nothing else.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)


def decode(data: bytes, **kwargs):
    """Decode an .nvc stream's bytes to frames (see nvc.decoding.decode for the options)."""
    from .decoding import decode as _decode

    return _decode(data, **kwargs)
