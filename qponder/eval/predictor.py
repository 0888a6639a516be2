"""The predictor contract: anything that turns images into quality predictions.

Classical baselines, our VLMs and remote models all implement ``predict(images) -> list[Prediction]``,
so one evaluator serves them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence

from PIL import Image


@dataclass
class Prediction:
    """One model output. ``score`` is a quality score, higher = better, or None when ``ok`` is False."""

    score: float | None
    ok: bool = True
    text: str | None = None  # raw model output (VLMs); None for classical metrics
    raw: float | None = None  # the metric's native value (e.g. BRISQUE, lower = better)
    reason: str | None = None  # why it failed, when ok is False
    tokens: int | None = None  # completion tokens (VLMs)
    expected: float | None = None  # VLMs: expectation over the answer's digits (qponder.models.expected)


class Predictor(Protocol):
    name: str
    # True when `score` is already on the MOS scale [1, 5] (VLMs); False for metrics with their own scale,
    # where only rank/fitted metrics are meaningful.
    on_mos_scale: bool

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]: ...
