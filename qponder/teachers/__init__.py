"""Teachers: whatever writes the reasoning a student is distilled from.

Q-Ponder's cold start distils expert-style rationales (reason about the low-level attributes first, then give a
score) from a large teacher VLM. Every teacher here shares one small interface, ``Teacher``: a ``name`` and
``describe(image, mos=None)``, which returns a completion in the answer contract of
``qponder.models.answer`` (``<think>...</think><answer>3.47</answer>``). ``mos`` is the human label of the image
when one is known; a teacher may use it only as a documented hint (for example to pull its final score toward
it) and never has to.

Available offline: ``qponder.teachers.attribute.AttributeTeacher``, which measures blur, noise, compression,
exposure, contrast and colour from the pixels with classical estimators.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from PIL import Image


@runtime_checkable
class Teacher(Protocol):
    """Writes one completion (reasoning + score, in the answer contract) for one image."""

    name: str

    def describe(self, image: Image.Image, mos: float | None = None) -> str:
        ...


class TeacherPredictor:
    """A teacher behind the evaluator's Predictor contract, so it is scored like every other model."""

    on_mos_scale = True

    def __init__(self, teacher: Teacher):
        self.teacher = teacher
        self.name = f"teacher-{teacher.name}"

    def predict(self, images):
        from qponder.eval.predictor import Prediction
        from qponder.models.answer import parse

        out = []
        for im in images:
            text = self.teacher.describe(im)
            p = parse(text)
            out.append(Prediction(p.score, ok=p.ok, text=text, reason=p.reason))
        return out
