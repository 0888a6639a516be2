"""The public face of a trained model: ``Scorer.from_pretrained(DIR).score(images)``.

Greedy decoding by default, so the same image gives the same answer twice. ``samples=N`` draws N sampled
completions per image and reports their mean score and spread (self-consistency), seeded for repeatability.
Each result also carries ``expected``: the answer's digits read as a distribution (``qponder.models.expected``),
which ranks images better than the written answer when a student repeats a few scores.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from PIL import Image

from qponder import prompts
from qponder.eval.predictor import Prediction
from qponder.models.answer import parse


@dataclass
class ScoreResult:
    score: float | None  # mean of the parsed samples; None when none parsed
    reasoning: str | None  # of the first parsed sample
    text: str  # the first sample's raw completion
    ok: bool
    reason: str | None = None  # why no sample parsed
    std: float | None = None  # spread of the sample scores (samples > 1)
    scores: list = field(default_factory=list)
    tokens: int = 0  # completion tokens of the first sample
    expected: float | None = None  # expectation over the answer's digits (mean over samples); None if unreadable

    def to_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}


def _as_image(x) -> Image.Image:
    if isinstance(x, Image.Image):
        return x.convert("RGB")
    from qponder.eval.evaluate import open_image

    return open_image(Path(x))


def build_messages(prompt: str, completion: str | None = None) -> list[dict]:
    """The one conversation layout every stage uses: an image, then the instruction (then the answer)."""
    msgs = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    if completion is not None:
        msgs.append({"role": "assistant", "content": [{"type": "text", "text": completion}]})
    return msgs


class Scorer:
    def __init__(self, model, processor, batch_size: int = 8, max_new_tokens: int = 256,
                 temperature: float = 1.0, name: str = "model", tower_cache: bool = False,
                 bf16: bool | None = None, static_cache: bool | None = None):
        from qponder.models.precision import use_bf16, use_static_cache

        self.model = model.eval()
        # None = where the device has bf16; fp32 weights then run under autocast (a caller's model is not cast)
        self.bf16 = use_bf16(bf16)
        # None = on a CPU in fp32, where writing the cache in place beats growing it (qponder.models.precision)
        self.static_cache = use_static_cache(static_cache, model.device.type, self.bf16)
        if self.bf16:
            from qponder.models.precision import fast_cpu_decode

            fast_cpu_decode(model)  # on a CPU: decode attention around SDPA's slow bf16 path; a no-op elsewhere
        if tower_cache:  # worth its memory when images come back: several models, or several passes over a set
            from qponder.models.tower_cache import cache_frozen_tower

            cache_frozen_tower(model)
        self.processor = processor
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.name = name
        from qponder.models.expected import digit_token_ids

        self.digit_ids = digit_token_ids(processor.tokenizer)  # None: this tokenizer gives no expected score

    @classmethod
    def from_pretrained(cls, path: str | Path, trust_remote_code: bool = False, **kw) -> "Scorer":
        from qponder.models import load

        import os

        import torch

        from qponder.models.precision import use_bf16

        # bf16 weights where the device runs them natively, as inference servers do: 1.5x the images/s of fp32
        # weights here, against 1.15x for autocast over fp32 weights (docs/results.md, stop 14)
        kw["bf16"] = use_bf16(kw.get("bf16"))
        dtype = torch.bfloat16 if kw["bf16"] else None
        model, processor = load(str(path), trust_remote_code=trust_remote_code, dtype=dtype)
        if torch.cuda.is_available():  # under accelerate launch each process owns the GPU of its LOCAL_RANK
            model.to(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}")
        return cls(model, processor, name=Path(str(path)).name or str(path), **kw)

    def generate(self, images: Sequence[Image.Image], think: bool = True, do_sample: bool = False,
                 seed: int = 0, prompt: str | None = None) -> list[tuple[str, int, float | None]]:
        """Raw completions (text, number of tokens, expected score) for a batch of images.

        ``prompt`` names another template of ``qponder/prompts`` (e.g. ``student_perceive``) instead of the
        scoring one that ``think`` picks."""
        import torch
        from transformers import LogitsProcessorList

        from qponder.models.expected import DigitLogits, expected_from_tokens
        from qponder.models.precision import autocast

        asked = prompts.load(prompt or ("student" if think else "student_nothink"))
        text = self.processor.apply_chat_template(build_messages(asked), add_generation_prompt=True, tokenize=False)
        inputs = self.processor(images=list(images), text=[text] * len(images), padding=True, return_tensors="pt")
        inputs = inputs.to(self.model.device)
        tok = self.processor.tokenizer
        kw = dict(max_new_tokens=self.max_new_tokens, pad_token_id=tok.pad_token_id)
        if self.static_cache:
            kw["cache_implementation"] = "static"
        digits = self.digit_ids
        recorder = DigitLogits(digits) if digits else None
        if recorder:
            kw["logits_processor"] = LogitsProcessorList([recorder])
        if do_sample:
            torch.manual_seed(seed)
            kw.update(do_sample=True, temperature=self.temperature, top_p=1.0, top_k=0)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        with torch.inference_mode(), autocast(self.model, self.bf16):
            out = self.model.generate(**inputs, **kw)
        new = out[:, inputs["input_ids"].shape[1]:]
        texts = tok.batch_decode(new, skip_special_tokens=True)
        lengths = [int((row != tok.pad_token_id).sum()) for row in new]
        expected: list[float | None] = [None] * len(texts)
        if recorder and recorder.steps:
            logits = torch.stack(recorder.steps, 1)  # batch x steps x 10
            for j, row in enumerate(new.tolist()):
                row = row[:lengths[j]]  # finished rows are padded at the end only
                # the answer closes the completion: decoding its last tokens is enough, unless it is not there
                for start in dict.fromkeys((max(0, len(row) - 24), 0)):
                    expected[j] = expected_from_tokens(tok.batch_decode([[i] for i in row[start:]]), row[start:],
                                                       logits[j, start:], digits)
                    if expected[j] is not None:
                        break
        return list(zip(texts, lengths, expected))

    def score(self, images: Sequence, think: bool = True, samples: int = 1, seed: int = 0,
              progress: bool = False) -> list[ScoreResult]:
        from rich.progress import Progress

        images = [_as_image(x) for x in images]
        results: list[ScoreResult] = []
        with Progress(disable=not progress) as bar:
            task = bar.add_task(f"scoring with {self.name}", total=len(images))
            for i in range(0, len(images), self.batch_size):
                batch = images[i:i + self.batch_size]
                draws = [self.generate(batch, think=think, do_sample=samples > 1, seed=seed + k)
                         for k in range(samples)]
                for j in range(len(batch)):
                    results.append(self._combine([d[j] for d in draws]))
                bar.advance(task, len(batch))
        return results

    @staticmethod
    def _combine(draws: list[tuple[str, int, float | None]]) -> ScoreResult:
        parsed = [parse(t) for t, _, _ in draws]
        good = [p for p in parsed if p.ok]
        text, tokens, _ = draws[0]
        if not good:
            return ScoreResult(None, parsed[0].reasoning, text, False, parsed[0].reason, tokens=tokens)
        scores = [p.score for p in good]
        # only draws whose answer parsed: an unparseable completion has no score to take the expectation of
        expected = [e for p, (_, _, e) in zip(parsed, draws) if p.ok and e is not None]
        return ScoreResult(statistics.fmean(scores), good[0].reasoning, text, True,
                           std=statistics.pstdev(scores) if len(scores) > 1 else None, scores=scores, tokens=tokens,
                           expected=statistics.fmean(expected) if expected else None)


class VLMPredictor:
    """A Scorer behind the evaluator's Predictor contract."""

    on_mos_scale = True

    def __init__(self, scorer: Scorer, think: bool = True, samples: int = 1, seed: int = 0):
        self.scorer, self.think, self.samples, self.seed = scorer, think, samples, seed
        self.name = scorer.name

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        res = self.scorer.score(images, think=self.think, samples=self.samples, seed=self.seed)
        return [Prediction(r.score, ok=r.ok, text=r.text, reason=r.reason, tokens=r.tokens, expected=r.expected)
                for r in res]
