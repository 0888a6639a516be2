"""Metrics of the reasoning itself, read through the distortion lexicon (``qponder.lexicon``).

- family: the family whose words the reasoning uses most (ties: the one named first); none if no word.
- family accuracy: over distorted images, the named family equals the label's (a compound counts as named
  when either of its families is).
- severity accuracy: the first severity word (``SEVERITY_WORDS``) gives a level 1..5, compared with the label's
  level, exactly and within one level.
- clean rate: over pristine references, the share whose reasoning names no distortion family.
- consistency rate: over parsed answers with reasoning, the share whose reasoning implies (through the
  consistency judge, ``qponder.judge``) a score within 0.5 of the answer given.
"""

from __future__ import annotations

import re

from qponder.lexicon import FAMILY_WORDS, SEVERITY_WORDS, family_mentions

_SEVERITY = [(lv, re.compile(r"\b(" + "|".join(map(re.escape, ws)) + r")\b", re.I)) for lv, ws in SEVERITY_WORDS.items()]
_FIRST = {f: re.compile(r"\b(" + "|".join(map(re.escape, ws)) + r")\b", re.I) for f, ws in FAMILY_WORDS.items()}


def named_family(text: str | None) -> str | None:
    if not text:
        return None
    counts = family_mentions(text)
    best = max(counts.values())
    if best == 0:
        return None
    tied = [f for f, c in counts.items() if c == best]
    return min(tied, key=lambda f: _FIRST[f].search(text).start())


def named_level(text: str | None) -> int | None:
    hits = [(m.start(), lv) for lv, p in _SEVERITY for m in [p.search(text or "")] if m]
    return min(hits)[1] if hits else None


def with_reasoning(rows: list[dict]) -> list[dict]:
    """Prediction rows that have a completion, each with its ``reasoning`` (the ``<think>`` text, or None)."""
    from qponder.models.answer import parse

    return [{**r, "reasoning": parse(r.get("text")).reasoning} for r in rows if r.get("text")]


def reasoning_metrics(rows: list[dict]) -> dict:
    """rows: dicts with ``reasoning`` (text or None), ``family`` and ``level`` labels. Missing labels are skipped."""
    fam_hits = fam_n = sev_hits = sev_near = sev_n = clean_hits = clean_n = 0
    by_family: dict[str, list[int]] = {}  # label -> [named right, images]: which defects the reasoning can name
    for r in rows:
        family, text = r.get("family"), r.get("reasoning")
        if text is None or not family:
            continue
        named = named_family(text)
        if family == "none":
            clean_n += 1
            clean_hits += named is None
            continue
        fam_n += 1
        hit = named is not None and named in family.split("+")
        fam_hits += hit
        tally = by_family.setdefault(family, [0, 0])
        tally[0] += hit
        tally[1] += 1
        if r.get("level") and "+" not in family:
            sev_n += 1
            lv = named_level(text)
            sev_hits += lv == r["level"]
            sev_near += lv is not None and abs(lv - r["level"]) <= 1
    ratio = lambda a, b: round(a / b, 4) if b else None  # noqa: E731
    return {"family_acc": ratio(fam_hits, fam_n), "family_n": fam_n, "severity_acc": ratio(sev_hits, sev_n),
            "severity_within1": ratio(sev_near, sev_n), "severity_n": sev_n, "clean_rate": ratio(clean_hits, clean_n),
            "clean_n": clean_n,
            "family_by_family": {f: {"acc": ratio(h, n), "n": n} for f, (h, n) in sorted(by_family.items())}}


CONSISTENT_WITHIN = 0.5


def consistency_metrics(rows: list[dict], judge=None) -> dict:
    """rows: dicts with ``reasoning`` and ``score`` (the parsed answer); ``judge``: a judge object or spec."""
    from qponder.judge import load_judge

    rows = [r for r in rows if r.get("reasoning") and r.get("score") is not None]
    if not rows:
        return {"consistency_rate": None, "consistency_gap": None, "consistency_n": 0}
    j = judge if hasattr(judge, "implied") else load_judge(judge)
    implied = j.implied([r["reasoning"] for r in rows])
    gaps = [abs(i - r["score"]) for i, r in zip(implied, rows) if i is not None]
    return {"consistency_rate": round(sum(g < CONSISTENT_WITHIN for g in gaps) / len(gaps), 4) if gaps else None,
            "consistency_gap": round(sum(gaps) / len(gaps), 4) if gaps else None, "consistency_n": len(gaps)}
