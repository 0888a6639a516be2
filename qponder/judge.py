"""The consistency judge: what score does a piece of reasoning imply, read without its numbers?

Q-Ponder's second reward asks that the reasoning alone support the final score. The judge reads only the
``<think>`` text with every digit removed (so it cannot copy a number the model wrote) and predicts the score
that text implies. Two judges share one interface, ``implied(texts) -> list[float | None]``:

- ``TextJudge`` (default, offline): a ridge regression on word and word-pair counts, fitted on a distilled
  corpus against the *teacher's own* scores, because the teacher's reasoning is by construction consistent with
  the score it gave. Stored as one small JSON file; ``qponder judge fit`` makes one, and a judge fitted on the
  full qponder-synth distillation ships with the package (``DEFAULT``). ``reads="evidence"`` makes a judge that
  reads the reasoning without its final sentence. A trace's last sentence is its verdict ("Overall the quality is
  fair."), whose word is a band of the score, so a judge that reads it can lean on that word; the evidence judge
  asks whether what the reasoning *observed* supports the score (docs/results.md, stop 28).
- ``LLMJudge``: any OpenAI-compatible server asked the same question in words (``judge.txt`` prompt).
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from functools import lru_cache
from pathlib import Path

import numpy as np

from qponder.errors import QPonderError

DEFAULT = Path(__file__).with_name("judge_default.json")
_WORD = re.compile(r"[a-z]+")
_DIGITS = re.compile(r"[0-9]+(?:[.,][0-9]+)?")
_LAST_SENTENCE = re.compile(r"[^.!?]*[.!?]?\s*$")
READS = ("all", "evidence")


def _check_reads(reads: str) -> None:
    if reads not in READS:
        raise QPonderError(f"judge: reads must be one of {', '.join(READS)}, got {reads!r}")


def evidence(text: str) -> str:
    """The reasoning without its final sentence (the verdict in the teacher's traces and the students' copies)."""
    return _LAST_SENTENCE.sub("", (text or "").strip(), count=1)


def strip_digits(text: str) -> str:
    return _DIGITS.sub(" ", text or "")


def features(text: str) -> Counter:
    words = _WORD.findall(strip_digits(text).lower())
    return Counter(words + [f"{a} {b}" for a, b in zip(words, words[1:])])


class TextJudge:
    name = "text"

    def __init__(self, vocab: list[str], coef: list[float], intercept: float, meta: dict | None = None,
                 reads: str = "all"):
        _check_reads(reads)
        self.vocab, self.index = vocab, {w: i for i, w in enumerate(vocab)}
        self.coef, self.intercept, self.meta = np.asarray(coef, float), float(intercept), meta or {}
        self.reads = reads

    def _matrix(self, texts: list[str]) -> np.ndarray:
        x = np.zeros((len(texts), len(self.vocab)))
        for r, t in enumerate(texts):
            for f, c in features(t).items():
                if f in self.index:
                    x[r, self.index[f]] = math.log1p(c)  # a word repeated five times is not five times the evidence
        return x

    def implied(self, texts: list[str | None]) -> list[float | None]:
        if self.reads == "evidence":  # a one-sentence reasoning has no evidence to read: no implied score
            texts = [evidence(t) if t else t for t in texts]
        have = [i for i, t in enumerate(texts) if t and t.strip()]
        out: list[float | None] = [None] * len(texts)
        if have:
            pred = self._matrix([texts[i] for i in have]) @ self.coef + self.intercept
            for i, p in zip(have, pred):
                out[i] = float(min(5.0, max(1.0, p)))
        return out

    @classmethod
    def fit(cls, texts: list[str], scores: list[float], min_df: int = 3, alpha: float | None = None,
            folds: int = 5, seed: int = 0, reads: str = "all") -> "TextJudge":
        """Ridge on log counts; alpha by k-fold CV when not given. ``meta`` records the CV fit quality."""
        from scipy.stats import spearmanr

        if len(texts) < 2 * folds:
            raise QPonderError(f"judge: need at least {2 * folds} reasoning texts to fit, got {len(texts)}")
        _check_reads(reads)
        if reads == "evidence":
            texts = [evidence(t) for t in texts]
        df = Counter(f for t in texts for f in set(features(t)))
        vocab = sorted(f for f, n in df.items() if n >= min_df)
        if not vocab:
            raise QPonderError("judge: no word occurs in enough texts to fit on")
        probe = cls(vocab, [0.0] * len(vocab), 0.0)
        x, y = probe._matrix(texts), np.asarray(scores, float)
        fold = np.random.default_rng(seed).permutation(len(y)) % folds
        best = None
        for a in ([alpha] if alpha is not None else [0.1, 0.3, 1.0, 3.0, 10.0, 30.0]):
            pred = np.empty_like(y)
            for k in range(folds):
                tr, te = fold != k, fold == k
                w, b = _ridge(x[tr], y[tr], a)
                pred[te] = x[te] @ w + b
            mae = float(np.mean(np.abs(np.clip(pred, 1, 5) - y)))
            if best is None or mae < best[1]:
                best = (a, mae, float(spearmanr(pred, y).statistic))
        w, b = _ridge(x, y, best[0])
        meta = {"n": len(y), "alpha": best[0], "cv_mae": round(best[1], 4), "cv_srcc": round(best[2], 4),
                "features": len(vocab), "min_df": min_df, "reads": reads}
        return cls(vocab, w.tolist(), b, meta, reads)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        coef = [round(c, 6) for c in self.coef.tolist()]
        path.write_text(json.dumps({"kind": "text", "reads": self.reads, "meta": self.meta,
                                    "intercept": self.intercept, "vocab": self.vocab, "coef": coef}))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "TextJudge":
        path = Path(path)
        try:
            d = json.loads(path.read_text())
            return cls(d["vocab"], d["coef"], d["intercept"], d.get("meta"), d.get("reads", "all"))
        except FileNotFoundError:
            raise QPonderError(f"{path}: judge file not found (make one with `qponder judge fit`)") from None
        except QPonderError as e:
            raise QPonderError(f"{path}: {e}") from None
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise QPonderError(f"{path}: not a qponder judge file ({e.__class__.__name__}: {e})") from None


def _ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    mx, my = x.mean(0), y.mean()
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ (y - my))
    return w, float(my - mx @ w)


class LLMJudge:
    """Asks an OpenAI-compatible server which score the (digit-free) reasoning implies."""

    name = "llm"

    def __init__(self, base_url: str, model: str, **client_kwargs):
        from qponder import prompts
        from qponder.teachers.openai import OpenAITeacher

        self.client = OpenAITeacher(base_url, model, temperature=0.0, max_tokens=32, **client_kwargs)
        self.template = prompts.load("judge")

    def implied(self, texts: list[str | None]) -> list[float | None]:
        from qponder.models.answer import parse

        out: list[float | None] = []
        for t in texts:
            if not t or not t.strip():
                out.append(None)
                continue
            body = {"model": self.client.model, "temperature": 0.0, "max_tokens": 32,
                    "messages": [{"role": "user", "content": self.template.format(reasoning=strip_digits(t))}]}
            reply = self.client.complete(body)
            score = parse(reply).score
            if score is None:  # judges often answer with a bare number
                m = re.search(r"[1-5](?:\.[0-9]+)?", reply or "")
                score = float(m.group()) if m else None
            out.append(score)
        return out


def fit_from_distilled(path: str | Path, **kw) -> TextJudge:
    """Fit on every distilled row with a parseable teacher answer, kept or not (the text matches its own score)."""
    from qponder.models.answer import parse

    texts, scores = [], []
    for i, line in enumerate(Path(path).read_text().splitlines()):
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise QPonderError(f"{path}: line {i + 1} is not JSON") from None
        p = parse(row.get("text"))
        if p.ok and p.reasoning:
            texts.append(p.reasoning)
            scores.append(p.score)
    return TextJudge.fit(texts, scores, **kw)


@lru_cache(maxsize=8)
def load_judge(spec: str | None = None):
    """``None`` / ``"default"``: the packaged judge; a path: a fitted TextJudge; ``openai:BASE_URL@MODEL``: LLMJudge."""
    if spec in (None, "", "default"):
        return TextJudge.load(DEFAULT)
    if spec.startswith("openai:"):
        url, _, model = spec[len("openai:"):].rpartition("@")
        if not url or not model:
            raise QPonderError(f"judge {spec!r}: expected openai:BASE_URL@MODEL")
        return LLMJudge(url, model)
    return TextJudge.load(spec)
