"""Errors a user can cause. The CLI turns each into one line on stderr and a non-zero exit.
And how long work hears of a Ctrl-C: a `Stop`, asked between steps whether to end early."""
from __future__ import annotations

import os
from collections.abc import Callable

Stop = Callable[[], bool]  # asked between steps of long work: end it early (a Ctrl-C came)?


def never() -> bool:
    """The Stop of work that no Ctrl-C ends early (the library's default)."""
    return False


class NvcError(Exception):
    """Base class: the message is complete and meant for a person."""


class InputError(NvcError):
    """A file is missing, unreadable, empty or of an unknown kind."""


class ConfigError(NvcError):
    """A setting (an option, a training config's value) is out of its range."""


class BitstreamError(NvcError):
    """An .nvc stream is truncated, damaged, too new, or made for other weights."""


class StreamCut(BitstreamError):
    """A live stream that ends before its end unit (its writer was stopped): every frame before
    the cut is whole (bitstream.FrameUnits.keep_cut decodes them and stops there)."""


MAX_THREADS = 256  # a thread count nvc takes from the environment (torch's OpenMP crashed the
# process at NVC_CODING_THREADS=100000, signal 11)


def env_int(name: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
    """An integer setting from the environment (NVC_CODING_THREADS and the like), or `default`
    when unset; anything else, or a value outside minimum..maximum, is a one-line NvcError, not
    a traceback."""
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum or maximum is not None and value > maximum:
        bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
        raise NvcError(f"{name} must be an integer {bounds} (got {text!r})")
    return value
