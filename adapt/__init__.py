"""Instance adaptation at encode time: fit adapters to one clip, code them, keep them only if the
clip's total RD cost (every byte of the file) falls."""
from .encode import AdaptiveResult, encode_adaptive
from .loop import AdaptConfig, fit

__all__ = ["AdaptConfig", "AdaptiveResult", "encode_adaptive", "fit"]
