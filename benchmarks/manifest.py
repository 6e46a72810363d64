"""Sequence manifests: one sequence a line, `file width height fps frames`, '-' = from the file."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

MANIFEST_DIR = Path(__file__).resolve().parent / "manifests"
DATASETS = ("uvg", "hevc-b", "hevc-c", "hevc-d", "hevc-e", "shared", "shared-training")


@dataclass(frozen=True)
class Sequence:
    file: str
    size: tuple[int, int] | None
    fps: Fraction | None
    frames: int

    @property
    def name(self) -> str:
        return Path(self.file).stem.split("_")[0]


def read_manifest(path: Path) -> list[Sequence]:
    out = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 5:
            raise ValueError(f"{path}:{number}: expected 'file width height fps frames'")
        file, w, h, fps, frames = fields
        size = None if "-" in (w, h) else (int(w), int(h))
        out.append(Sequence(file, size, None if fps == "-" else Fraction(fps), int(frames)))
    return out


def dataset_manifest(name: str) -> Path:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return MANIFEST_DIR / f"{name}.txt"
