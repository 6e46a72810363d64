"""Numbered image files as one video: `frame_%04d.png`, as `nvc decode` writes them and as
FFmpeg's image2 demuxer reads them (PyAV opens the pattern; this module finds where it starts).

A pattern's file name holds one number field, `%d` or `%0Nd` (padded to N digits), and `%%` for
a literal `%`, as FFmpeg reads it; any other `%` is refused."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import InputError

_TOKEN = re.compile(r"%%|%(0\d+)?d|%")


@dataclass(frozen=True)
class Pattern:
    before: str  # the file name up to the number, `%%` read as `%`
    width: int  # digits the number is padded to (0: none)
    after: str
    folder: Path

    def name(self, number: int) -> Path:
        return self.folder / f"{self.before}{number:0{self.width}d}{self.after}"

    def number_of(self, name: str) -> int | None:
        """The number a file name of this pattern gives its frame, None where it is not one."""
        digits = rf"(\d{{{self.width},}})" if self.width else r"(0|[1-9]\d*)"
        m = re.fullmatch(re.escape(self.before) + digits + re.escape(self.after), name)
        return None if m is None else int(m.group(1))


def pattern(path: str | os.PathLike) -> Pattern | None:
    """The numbered sequence `path` names, None where its file name holds no `%`; a `%` that is
    neither a number field nor `%%`, or more than one field, is an InputError."""
    path = Path(path)
    if "%" not in path.name:
        return None
    parts: list[str] = []  # the name's text, `%%` read as `%`, split where the field is
    fields: list[tuple[int, int]] = []  # (where in parts, width)
    at = 0
    for m in _TOKEN.finditer(path.name):
        parts.append(path.name[at:m.start()])
        at = m.end()
        if m.group(0) == "%%":
            parts.append("%")
        elif m.group(0) == "%":
            raise InputError(f"{path}: a frame-number pattern takes %d or %04d (and %% for a "
                             f"'%'), not {path.name[m.start():m.start() + 2]!r}")
        else:
            fields.append((len(parts), int(m.group(1)) if m.group(1) else 0))
    parts.append(path.name[at:])
    if len(fields) != 1:
        raise InputError(f"{path}: a frame-number pattern holds one number field (%d, %04d), "
                         f"not {len(fields)}")
    split, width = fields[0]
    return Pattern("".join(parts[:split]), width, "".join(parts[split:]), path.parent)


def first_number(path: Path) -> int | None:
    """The number of the first file of the numbered sequence `path` names, None where its name is
    no pattern (a malformed one included: a file name with a `%` that is not there). Refused (an
    InputError) where its folder is missing, no file matches, or a number is missing between the
    first and the last (FFmpeg's image2 would fail there, midway)."""
    try:
        named = pattern(path)
    except InputError:
        return None
    if named is None:
        return None
    if not named.folder.is_dir():
        raise InputError(f"{path}: no such folder {named.folder}")
    numbers = sorted(n for entry in os.scandir(named.folder)
                     if (n := named.number_of(entry.name)) is not None and entry.is_file())
    if not numbers:
        raise InputError(f"{path}: no file matches it (a numbered image sequence, e.g. "
                         "frame_%04d.png for frame_0000.png, frame_0001.png, ...)")
    gap = next((a for a, b in zip(numbers, numbers[1:]) if b != a + 1), None)
    if gap is not None:
        raise InputError(f"{path}: number {gap + 1} is missing, between {gap} and the next "
                         f"file; a sequence is read from its first number ({numbers[0]}) to its "
                         f"last ({numbers[-1]}) without a gap")
    return numbers[0]


def left_after(named: Pattern, count: int) -> int:
    """How many files of `named` follow the `count` numbered from 0 without a gap: frames of an
    earlier, longer sequence, which a reader of the pattern would take for this one's."""
    n = count
    while named.name(n).exists():
        n += 1
    return n - count
