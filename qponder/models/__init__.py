"""Students and any HF VLM behind one loader; the answer contract lives in ``answer``.

``load(path_or_id)`` -> (model, processor) for a student folder (``qponder model init``), a preset built in
memory (``preset:tiny``, ``preset:default``), or any local/hub VLM with a chat template (Qwen2.5-VL included),
with or without torchvision.
"""

from __future__ import annotations

from pathlib import Path


def load(path_or_id: str, trust_remote_code: bool = False, dtype=None, device=None):
    if str(path_or_id).startswith("preset:"):
        from qponder.models.build import build_student, get_preset

        return build_student(get_preset(str(path_or_id).split(":", 1)[1]))
    from qponder.models.hf import load_hf

    return load_hf(str(path_or_id), trust_remote_code=trust_remote_code, dtype=dtype, device=device)


def save(model, processor, out: str | Path) -> Path:
    """Save model + processor as one HF folder that stock ``from_pretrained`` can read back."""
    from qponder.models.hf import save_processor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    save_processor(processor, out)
    return out
