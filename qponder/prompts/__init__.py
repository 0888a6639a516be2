"""Versioned prompt templates (text files beside this module), loaded by name.

Each file starts with a ``# version: N`` line so that a run folder can record which prompt it used.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from qponder.errors import QPonderError

_DIR = Path(__file__).parent


@lru_cache(maxsize=None)
def load(name: str) -> str:
    """The template text (without its version header)."""
    path = _DIR / f"{name}.txt"
    if not path.exists():
        names = sorted(p.stem for p in _DIR.glob("*.txt"))
        raise QPonderError(f"unknown prompt {name!r}; available: {', '.join(names)}")
    lines = path.read_text().splitlines()
    return "\n".join(ln for ln in lines if not ln.startswith("# version:")).strip()


def version(name: str) -> str:
    first = (_DIR / f"{name}.txt").read_text().splitlines()[0]
    return first.split(":", 1)[1].strip() if first.startswith("# version:") else "0"
