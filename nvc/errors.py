"""Errors a user can cause. The CLI turns each into one line on stderr and a non-zero exit."""


class NvcError(Exception):
    """Base class: the message is complete and meant for a person."""


class InputError(NvcError):
    """A file is missing, unreadable, empty or of an unknown kind."""


class BitstreamError(NvcError):
    """An .nvc stream is truncated, damaged, too new, or made for other weights."""
