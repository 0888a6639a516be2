"""The answer contract, one for the whole project.

A completion is ``<think>reasoning</think><answer>3.47</answer>``: reasoning first, then one score in [1, 5]
written with two decimals. ``<think>`` may be absent (the no-reasoning ablation and the fast scoring mode).
Everything that reads model output (evaluator, rewards, distillation filter, Scorer) goes through ``parse``,
so "what counts as an answer" is decided here only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SCORE_MIN, SCORE_MAX = 1.0, 5.0
_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_THINK = re.compile(r"<think>(.*?)</think>", re.S)
_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
_STRICT = re.compile(r"\s*<think>(?:(?!<think>|</think>|<answer>).)+</think>\s*<answer>[^<]*</answer>\s*", re.S)


@dataclass(frozen=True)
class Parsed:
    score: float | None
    reasoning: str | None
    reason: str | None = None  # why parsing failed; None when ok

    @property
    def ok(self) -> bool:
        return self.score is not None


def format_answer(score: float, reasoning: str | None = None) -> str:
    """Write a completion in the contract (the SFT target and the teachers' output)."""
    score = min(max(float(score), SCORE_MIN), SCORE_MAX)
    answer = f"<answer>{score:.2f}</answer>"
    return answer if reasoning is None else f"<think>{reasoning.strip()}</think>{answer}"


def parse(text: str | None) -> Parsed:
    """Turn any completion into (score, reasoning) or a failure with a reason."""
    if text is None or not text.strip():
        return Parsed(None, None, "empty completion")
    think = _THINK.findall(text)
    reasoning = think[0].strip() if len(think) == 1 else None
    if "<think>" in text and "</think>" not in text:
        return Parsed(None, None, "truncated: <think> is never closed")
    if len(think) > 1:
        return Parsed(None, None, "more than one <think> block")
    answers = _ANSWER.findall(text)
    if not answers:
        if "<answer>" in text:
            return Parsed(None, reasoning, "truncated: <answer> is never closed")
        return Parsed(None, reasoning, "no <answer> block")
    if len(answers) > 1:
        return Parsed(None, reasoning, "more than one <answer> block")
    if think and text.find("<answer>") < text.find("</think>"):
        return Parsed(None, reasoning, "<answer> comes before the reasoning ends")
    numbers = _NUMBER.findall(answers[0])
    if not numbers:
        return Parsed(None, reasoning, "no number in <answer>")
    if len(numbers) > 1:
        return Parsed(None, reasoning, f"more than one number in <answer>: {answers[0].strip()[:40]!r}")
    score = float(numbers[0])
    if not SCORE_MIN <= score <= SCORE_MAX:
        return Parsed(None, reasoning, f"score {numbers[0]} is outside [1, 5]")
    return Parsed(score, reasoning)


def is_strict(text: str | None) -> bool:
    """The whole completion is exactly one think block then one answer block (whitespace aside)."""
    return bool(text) and _STRICT.fullmatch(text) is not None and parse(text).ok
