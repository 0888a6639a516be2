"""The expected score: the answer's digits read as a distribution rather than a draw.

A student that writes ``<answer>3.47</answer>`` has, at each digit, a distribution over 0-9. Greedy decoding
keeps its argmax, so a weak student repeats a handful of scores and ties many images (the demo's CI writes 12
distinct answers for 294 images). The expectation over those digit distributions keeps the model's
uncertainty, the way Q-Align and DeQA-Score read their score tokens:

    expected = sum_d p(d) * d  +  sum_j 10^-j * sum_e p_j(e) * e

where d is the integer digit (renormalised over 1-5, the contract's range) and p_j the distribution of the
j-th decimal. It is read on the path greedy decoding took (the decimals' distributions are conditioned on the
greedy integer digit), so it costs nothing beyond recording ten logits per generated token. The reasoning
before the answer is the same greedy reasoning either way.

Tokenizers that do not write each digit as its own token (checked, not assumed) give no expected score.
"""

from __future__ import annotations

import math

import torch
from transformers import LogitsProcessor

from qponder.models.answer import SCORE_MAX, SCORE_MIN


def digit_token_ids(tokenizer) -> list[int] | None:
    """Ids of the tokens "0".."9" when each digit is one token of its own; None otherwise."""
    ids = []
    for d in "0123456789":
        enc = tokenizer.encode(d, add_special_tokens=False)
        if len(enc) != 1 or tokenizer.decode(enc) != d:
            return None
        ids.append(enc[0])
    return ids if len(set(ids)) == 10 else None


class DigitLogits(LogitsProcessor):
    """Records, at every generation step, the logits of the ten digit tokens (batch x 10), untouched."""

    def __init__(self, digit_ids: list[int]):
        self.digit_ids = torch.tensor(digit_ids)
        self.steps: list[torch.Tensor] = []

    def __call__(self, input_ids, scores):
        self.steps.append(scores[:, self.digit_ids.to(scores.device)].float().cpu())
        return scores


def expected_from_tokens(pieces: list[str], ids: list[int], digit_logits: list[torch.Tensor] | torch.Tensor,
                         digit_ids: list[int]) -> float | None:
    """The expected score of one completion.

    ``pieces`` are the completion's tokens decoded one by one, ``ids`` their ids and ``digit_logits[t]`` the
    ten digit logits recorded at step t. None when the answer is not ``<answer>D[.DD..]``, one digit token
    each, after the last ``<answer>``.
    """
    text, start, seen = "", None, 0
    for t, piece in enumerate(pieces):
        text += piece
        if text.count("<answer>") > seen:  # the last <answer> wins, as in the parser
            seen, start = text.count("<answer>"), t + 1
    if start is None:
        return None
    t = start
    while t < len(pieces) and not pieces[t].strip():
        t += 1
    digit = set(digit_ids)
    if t >= len(ids) or ids[t] not in digit or t >= len(digit_logits):
        return None
    integer = torch.softmax(digit_logits[t][1:6], -1)  # the contract's range: 1-5
    value = float((integer * torch.arange(1, 6)).sum())
    t += 1
    if t < len(ids) and ids[t] in digit:  # "10" or "35": not a score in the contract
        return None
    if t < len(pieces) and pieces[t] == ".":
        place = 1
        t += 1
        while t < len(ids) and ids[t] in digit and t < len(digit_logits):
            p = torch.softmax(digit_logits[t], -1)
            value += 10 ** -place * float((p * torch.arange(10)).sum())
            place += 1
            t += 1
    if not math.isfinite(value):
        return None
    return min(max(value, SCORE_MIN), SCORE_MAX)
