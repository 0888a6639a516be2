"""A cross-entropy that weighs some target tokens more: the few that need the image.

A teacher's trace is ~125 tokens, and most of them follow from the text before them (templates, the impact of a
named defect). The decisions that need the image (which defect, how bad, the score) are about a fifth of them, so an
unweighted loss spends most of each step on what the student could write without looking (docs/student.md).
``loss_weights`` in the SFT recipe maps a regular expression over the assistant text to a weight; every target
token that overlaps a match gets that weight (the largest where matches overlap), the others 1. With a capture
group, only the group's span is weighted. The loss is the weighted mean over the target tokens.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from trl import SFTTrainer

from qponder.errors import QPonderError


class TokenWeights:
    """Per-token weights for label rows (``-100`` = not a target) from regex -> weight over the decoded text."""

    def __init__(self, tokenizer, loss_weights: dict[str, float]):
        self.tokenizer = tokenizer
        self.rules = []
        for pattern, w in loss_weights.items():
            try:
                rx = re.compile(pattern, re.S)
            except re.error as e:
                raise QPonderError(f"loss_weights: {pattern!r} is not a valid regular expression ({e})") from None
            if not isinstance(w, (int, float)) or w < 0:
                raise QPonderError(f"loss_weights: the weight of {pattern!r} must be a number >= 0, not {w!r}")
            self.rules.append((rx, float(w)))
        self._pieces: dict[int, str] = {}

    def piece(self, token_id: int) -> str:
        if token_id not in self._pieces:
            self._pieces[token_id] = self.tokenizer.decode([token_id], skip_special_tokens=False)
        return self._pieces[token_id]

    def row(self, labels: list[int]) -> list[float]:
        """Weights for one row of labels; positions that are not targets get 0."""
        starts, text = [], ""
        for t in labels:
            starts.append(len(text))
            if t != -100:
                text += self.piece(t)
        starts.append(len(text))
        matched: list[float | None] = [None] * len(labels)
        for rx, w in self.rules:
            for m in rx.finditer(text):
                lo, hi = m.span(1) if rx.groups else m.span()
                if hi <= lo:
                    continue
                for i, t in enumerate(labels):  # the token's piece starts before the span ends and ends after it starts
                    if t != -100 and starts[i] < hi and starts[i + 1] > lo:
                        matched[i] = w if matched[i] is None else max(matched[i], w)
        return [0.0 if t == -100 else 1.0 if m is None else m for t, m in zip(labels, matched)]

    def __call__(self, labels):
        return torch.tensor([self.row(r) for r in labels.tolist()], dtype=torch.float32, device=labels.device)


class WeightedSFTTrainer(SFTTrainer):
    """TRL's SFTTrainer with ``compute_loss`` replaced by the token-weighted cross-entropy."""

    def __init__(self, *args, token_weights: TokenWeights, **kwargs):
        super().__init__(*args, **kwargs)
        self.token_weights = token_weights
        # each micro-batch's loss is its own weighted mean, so the Trainer must divide by the accumulation steps
        self.loss_is_scaled_for_ga = False

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        outputs = model(**{k: v for k, v in inputs.items() if k != "labels"}, use_cache=False)
        logits, target = outputs.logits[:, :-1].float(), labels[:, 1:]
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), ignore_index=-100,
                             reduction="none").view_as(target)
        w = self.token_weights(target)
        loss = (ce * w).sum() / w.sum().clamp(min=1e-8)
        with torch.no_grad():
            valid = target != -100
            hit = (logits.argmax(-1) == target) & valid
            mode = "train" if model.training else "eval"
            self._metrics[mode]["mean_token_accuracy"].append((hit.sum() / valid.sum().clamp(min=1)).item())
        return (loss, outputs) if return_outputs else loss
