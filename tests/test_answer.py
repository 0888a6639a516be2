import pytest

from qponder.models.answer import format_answer, is_strict, parse


def test_well_formed():
    p = parse("<think>Strong blur on the edges.</think><answer>2.35</answer>")
    assert p.ok and p.score == 2.35 and p.reasoning == "Strong blur on the edges." and p.reason is None
    assert is_strict("<think>x</think>\n<answer>2.35</answer>\n")


def test_answer_only_is_ok_without_reasoning():
    p = parse("<answer>4.10</answer>")
    assert p.ok and p.score == 4.1 and p.reasoning is None
    assert not is_strict("<answer>4.10</answer>")


def test_lenient_number_forms():
    assert parse('<answer>{"rating": 3.5}</answer>').score == 3.5  # Q-Insight's JSON answer
    assert parse("<answer> 5 </answer>").score == 5.0
    assert parse("<answer>1.</answer>").score == 1.0
    assert parse("Some preamble <think>a</think> <answer>3.00</answer> trailing").ok
    assert not is_strict("Some preamble <think>a</think> <answer>3.00</answer> trailing")


@pytest.mark.parametrize("text,reason", [
    ("", "empty completion"),
    ("   ", "empty completion"),
    (None, "empty completion"),
    ("<think>The image shows heavy noise and", "truncated: <think> is never closed"),
    ("<think>noise</think><answer>3.2", "truncated: <answer> is never closed"),
    ("<think>noise</think>", "no <answer> block"),
    ("The score is 3.2", "no <answer> block"),
    ("<think>noise</think><answer>good</answer>", "no number in <answer>"),
    ("<think>x</think><answer>3.2 or 3.5</answer>", "more than one number in <answer>"),
    ("<think>x</think><answer>7.20</answer>", "score 7.20 is outside [1, 5]"),
    ("<think>x</think><answer>0.5</answer>", "score 0.5 is outside [1, 5]"),
    ("<think>x</think><answer>-2</answer>", "score -2 is outside [1, 5]"),
    ("<think>x</think><answer>3</answer><answer>4</answer>", "more than one <answer> block"),
    ("<think>a</think><think>b</think><answer>3</answer>", "more than one <think> block"),
    ("<think>a <answer>3</answer></think>", "<answer> comes before the reasoning ends"),
])
def test_failures_have_reasons(text, reason):
    p = parse(text)
    assert not p.ok and p.score is None and p.reason.startswith(reason)
    assert not is_strict(text)


def test_reasoning_kept_when_answer_fails():
    assert parse("<think>blurry</think><answer>9</answer>").reasoning == "blurry"


def test_format_roundtrip_two_decimals():
    s = format_answer(3.456, "  Mild JPEG blocking.  ")
    assert s == "<think>Mild JPEG blocking.</think><answer>3.46</answer>"
    assert parse(s).score == 3.46 and is_strict(s)
    assert format_answer(9) == "<answer>5.00</answer>"
