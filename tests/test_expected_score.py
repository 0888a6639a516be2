"""The expected score: the answer's digits read as a distribution, on hand-made logits and through the Scorer."""

import json
import math

import pytest
import torch
from PIL import Image

from qponder.models.expected import DigitLogits, digit_token_ids, expected_from_tokens

DIGITS = list(range(10, 20))  # fake ids of "0".."9"
BIG = 1e4  # a logit gap that makes softmax exactly one-hot in float32


def _logits(probs: dict[int, float] | None) -> torch.Tensor:
    """Ten digit logits whose softmax over the given digits is ``probs`` (others ~0); None: uniform."""
    if probs is None:
        return torch.zeros(10)
    out = torch.full((10,), -BIG)
    for d, p in probs.items():
        out[d] = math.log(p)
    return out


def _completion(answer: str):
    pieces = ["<think>", "blur", "</think>", "<answer>", *answer, "</answer>"]
    ids = [DIGITS[int(c)] if c.isdigit() else 100 + k for k, c in enumerate(pieces)]
    return pieces, ids


def test_expectation_over_each_digit():
    pieces, ids = _completion("3.47")
    k = pieces.index("<answer>") + 1
    steps = [_logits({0: 1.0})] * len(pieces)
    steps[k] = _logits({3: 0.5, 4: 0.5})      # integer: 3.5
    steps[k + 2] = _logits({4: 1.0})          # first decimal: 0.4
    steps[k + 3] = _logits(None)              # second decimal uniform: 4.5 -> 0.045
    assert expected_from_tokens(pieces, ids, steps, DIGITS) == pytest.approx(3.945, abs=1e-6)


def test_integer_renormalised_to_the_contract_and_clipped():
    pieces, ids = _completion("5.00")
    k = pieces.index("<answer>") + 1
    steps = [_logits({9: 1.0})] * len(pieces)  # decimals all 9: 5 + 0.99 clips to 5
    steps[k] = _logits({0: 0.5, 5: 0.5})      # "0" is outside 1-5: its mass is dropped, not averaged in
    assert expected_from_tokens(pieces, ids, steps, DIGITS) == 5.0
    steps[k] = _logits({1: 0.25, 2: 0.25, 9: 0.5})
    steps = [s if i == k else _logits({0: 1.0}) for i, s in enumerate(steps)]
    assert expected_from_tokens(pieces, ids, steps, DIGITS) == pytest.approx(1.5, abs=1e-6)


def test_integer_only_answer_and_greedy_path_unreadable_cases():
    pieces, ids = _completion("4")
    steps = [_logits({2: 0.5, 4: 0.5})] * len(pieces)
    assert expected_from_tokens(pieces, ids, steps, DIGITS) == pytest.approx(3.0, abs=1e-6)
    for bad in ("", "x", "10.5"):  # no answer digit, no digit, two integer digits
        pieces, ids = _completion(bad)
        assert expected_from_tokens(pieces, ids, [_logits(None)] * len(pieces), DIGITS) is None
    pieces = ["<think>", "no answer", "</think>"]
    assert expected_from_tokens(pieces, [1, 2, 3], [_logits(None)] * 3, DIGITS) is None
    # the recorded steps end before the answer (a truncated record): no guess
    pieces, ids = _completion("3.5")
    assert expected_from_tokens(pieces, ids, [_logits(None)] * 3, DIGITS) is None


def test_answer_tag_split_over_tokens():
    pieces = ["<think>", "ok", "</think>", "<ans", "wer>", " ", "2", ".", "5", "</answer>"]
    ids = [1, 2, 3, 4, 5, 6, DIGITS[2], 7, DIGITS[5], 8]
    steps = [_logits({5: 1.0})] * len(pieces)
    steps[6] = _logits({2: 1.0})
    assert expected_from_tokens(pieces, ids, steps, DIGITS) == pytest.approx(2.5, abs=1e-6)


class _Tok:
    def __init__(self, vocab):
        self.vocab = vocab

    def encode(self, s, add_special_tokens=False):
        return [self.vocab[s]] if s in self.vocab else [0, 0]

    def decode(self, ids):
        inv = {v: k for k, v in self.vocab.items()}
        return "".join(inv.get(i, "?") for i in ids)


def test_digit_token_ids_checks_the_tokenizer():
    assert digit_token_ids(_Tok({str(d): 10 + d for d in range(10)})) == DIGITS
    assert digit_token_ids(_Tok({str(d): 10 + d for d in range(9)})) is None  # "9" needs two tokens


def test_recorder_keeps_raw_digit_logits():
    rec = DigitLogits(DIGITS)
    scores = torch.arange(40, dtype=torch.float32).reshape(2, 20)
    assert rec(None, scores) is scores
    assert torch.equal(rec.steps[0], scores[:, 10:20])


class _FakeModel:
    """A 'model' whose generate plays back fixed tokens and feeds fixed logits through the logits processors."""

    device = torch.device("cpu")

    def __init__(self, new_ids: list[list[int]], vocab: int, digit_logits: list[torch.Tensor]):
        self.new_ids, self.vocab, self.digit_logits = new_ids, vocab, digit_logits

    def eval(self):
        return self

    def generate(self, input_ids, logits_processor=None, **kw):
        n, steps = input_ids.shape[0], max(map(len, self.new_ids))
        for t in range(steps):
            scores = torch.zeros(n, self.vocab)
            for p in logits_processor or []:
                scores[:, p.digit_ids] = self.digit_logits[t]
                p(input_ids, scores)
        pad = kw["pad_token_id"]
        new = torch.tensor([row + [pad] * (steps - len(row)) for row in self.new_ids[:n]])
        return torch.cat([input_ids, new], 1)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from qponder.models.build import init_model

    out = tmp_path_factory.mktemp("tiny")
    init_model("tiny", out)
    return out


def test_scorer_reports_answer_and_expected(tiny, tmp_path):
    from qponder.models import load
    from qponder.score import Scorer

    _, proc = load(str(tiny))
    tok = proc.tokenizer
    digits = digit_token_ids(tok)
    assert digits is not None
    # the first is long enough that only its tail is decoded to find the answer
    texts = ["<think>" + "mild blur, " * 20 + "</think><answer>3.40</answer>",
             "<think>clean</think><answer>4.25</answer>"]
    rows = [tok.encode(t, add_special_tokens=False) for t in texts]
    steps = max(map(len, rows))
    logits = [torch.zeros(2, 10) for _ in range(steps)]  # uniform everywhere: decimals 4.5 and 4.5
    k0 = rows[0].index(tok.convert_tokens_to_ids("<answer>")) + 1
    k1 = rows[1].index(tok.convert_tokens_to_ids("<answer>")) + 1
    logits[k0] = logits[k0].clone()
    logits[k0][0] = _logits({3: 1.0})
    if k1 == k0:
        logits[k0][1] = _logits({4: 0.5, 5: 0.5})
    else:
        logits[k1] = logits[k1].clone()
        logits[k1][1] = _logits({4: 0.5, 5: 0.5})
    scorer = Scorer(_FakeModel(rows, len(tok), logits), proc, max_new_tokens=steps)
    res = scorer.score([Image.new("RGB", (40, 40)), Image.new("RGB", (40, 40), (9, 9, 9))])
    assert [r.score for r in res] == [3.40, 4.25]
    assert res[0].expected == pytest.approx(3 + 0.45 + 0.045, abs=1e-5)
    assert res[1].expected == pytest.approx(4.5 + 0.45 + 0.045, abs=1e-5)
    assert json.loads(json.dumps(res[0].to_dict()))["expected"] == pytest.approx(res[0].expected)


def test_qwen_tokenizer_writes_digits_one_per_token(tmp_path):
    from qponder.models import load
    from qponder.models.tiny_qwen import build_tiny_qwen25vl

    _, proc = load(str(build_tiny_qwen25vl(tmp_path / "qwen")))
    assert digit_token_ids(proc.tokenizer) is not None
