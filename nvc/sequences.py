"""Numbered image files read as one video: `frame_%04d.png`, as `nvc decode` writes them and as
FFmpeg's image2 demuxer reads them (PyAV opens the pattern; this module finds where it starts)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import InputError

_FIELD = re.compile(r"%(0\d+)?d")  # printf's decimal field, as FFmpeg's image2 reads it


def first_number(pattern: Path) -> int | None:
    """The number of the first file of the image sequence `pattern` names (one printf field in
    its file name: `frame_%04d.png`), None where the name holds no such field. Refused (an
    InputError) where its folder is missing, no file matches, or a number is missing between the
    first and the last (FFmpeg would fail there, midway)."""
    fields = list(_FIELD.finditer(pattern.name))
    if len(fields) != 1:
        return None
    field = fields[0]
    width = int(field.group(1)) if field.group(1) else 0  # sprintf pads to at least the width
    digits = rf"(\d{{{width},}})" if width else r"(0|[1-9]\d*)"
    name = re.compile(re.escape(pattern.name[:field.start()]) + digits
                      + re.escape(pattern.name[field.end():]))
    folder = pattern.parent
    if not folder.is_dir():
        raise InputError(f"{pattern}: no such folder {folder}")
    numbers = sorted(int(m.group(1)) for entry in os.scandir(folder)
                     if (m := name.fullmatch(entry.name)) and entry.is_file())
    if not numbers:
        raise InputError(f"{pattern}: no file matches it (a numbered image sequence, e.g. "
                         "frame_%04d.png for frame_0000.png, frame_0001.png, ...)")
    gap = next((a for a, b in zip(numbers, numbers[1:]) if b != a + 1), None)
    if gap is not None:  # FFmpeg's image2 would fail at the first file missing, midway
        raise InputError(f"{pattern}: number {gap + 1} is missing, between {gap} and the next "
                         f"file; a sequence is read from its first number ({numbers[0]}) to its "
                         f"last ({numbers[-1]}) without a gap")
    return numbers[0]
