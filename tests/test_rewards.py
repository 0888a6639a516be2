"""Rewards on hand-written completions, with exact expected values."""

import math
import statistics

import pytest

from qponder.judge import TextJudge
from qponder.rewards import (PRESETS, REWARDS, accuracy_continuous, accuracy_threshold, consistency, degradation,
                             format_lenient, format_strict, ranking)


def conv(text):
    return [{"role": "assistant", "content": text}]


RIGHT = conv("<think>Strong blur softens every edge.</think><answer>2.00</answer>")
NEAR = conv("<think>Strong blur softens every edge.</think><answer>2.30</answer>")
FAR = conv("<think>The image is clean.</think><answer>4.50</answer>")
UNPARSEABLE = conv("<think>blurry</think><answer>good</answer>")
TRUNCATED = conv("<think>Strong blur softens every")
BARE = conv("Score: <answer>2.00</answer> thanks")


def test_format():
    batch = [RIGHT, UNPARSEABLE, TRUNCATED, BARE]
    assert format_strict(batch) == [1.0, 0.0, 0.0, 0.0]
    assert format_lenient(batch) == [1.0, 0.0, 0.0, 1.0]
    assert format_strict(["<think>a</think><answer>3</answer>"]) == [1.0]  # plain strings work too


def test_accuracy_threshold_and_continuous():
    batch = [RIGHT, NEAR, FAR, UNPARSEABLE, TRUNCATED]
    mos = [2.0] * 5
    assert accuracy_threshold(batch, mos=mos) == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert accuracy_threshold(batch, mos=mos, eps=0.2) == [1.0, 0.0, 0.0, 0.0, 0.0]
    g = accuracy_continuous(batch, mos=mos)
    assert g[0] == 1.0 and g[1] == pytest.approx(math.exp(-0.09 / 0.5)) and g[2] == pytest.approx(math.exp(-12.5))
    assert g[3:] == [0.0, 0.0]
    lap = accuracy_continuous(batch, mos=mos, kind="laplace", width=1.0)
    assert lap[1] == pytest.approx(math.exp(-0.3))
    assert g[0] > g[1] > g[2] > g[3]  # near beats far beats unparseable


def test_ranking_exact_and_duplicates():
    # two images, two rollouts each; image a (MOS 4) is better than image b (MOS 2)
    comps = [conv("<answer>4.00</answer>"), conv("<answer>3.00</answer>"),
             conv("<answer>2.00</answer>"), conv("<answer>1.00</answer>")]
    r = ranking(comps, mos=[4.0, 4.0, 2.0, 2.0], image=["a", "a", "b", "b"])
    var = 0.5  # unbiased variance of {4, 3} and of {2, 1}
    p = 0.5 * (1 + math.erf(((4.0 - 1.5) / math.sqrt(2 * var + 1e-6)) / math.sqrt(2)))
    assert r[0] == pytest.approx(math.sqrt(p + 1e-6) + math.sqrt(1e-6))
    p_b = 0.5 * (1 + math.erf(((1.0 - 3.5) / math.sqrt(2 * var + 1e-6)) / math.sqrt(2)))
    assert r[3] == pytest.approx(math.sqrt(1e-6) + math.sqrt((1 - p_b) + 1e-6))
    assert r[0] > r[1] and r[3] > r[2]  # within each image, the better-ordered rollout earns more
    # one image repeated across the whole batch: nothing to rank against
    assert ranking(comps, mos=[3.0] * 4, image=["x"] * 4) == [None] * 4
    # an unparseable rollout scores 0 and does not enter its image's statistics
    r2 = ranking(comps[:3] + [UNPARSEABLE], mos=[4.0, 4.0, 2.0, 2.0], image=["a", "a", "b", "b"])
    assert r2[3] == 0.0 and r2[2] > 0


def test_degradation():
    blur_strong = conv("<think>The image shows strong blur; edges are smeared.</think><answer>2.00</answer>")
    blur_slight = conv("<think>The image shows slight blur.</think><answer>3.50</answer>")
    noise = conv("<think>Strong noise and grain everywhere.</think><answer>2.00</answer>")
    clean = conv("<think>No defect stands out.</think><answer>4.60</answer>")
    got = degradation([blur_strong, blur_slight, noise, clean, clean, blur_strong, UNPARSEABLE, blur_strong],
                      family=["blur", "blur", "blur", "none", "blur", "none", "blur", "blur+compression"],
                      level=[4, 4, 4, 0, 2, 0, 4, None])
    assert got == [1.0, 0.25, 0.0, 1.0, 0.0, 0.0, 0.0, 0.25]
    assert degradation([blur_strong], family=[None]) == [None]


@pytest.fixture
def judge(tmp_path):
    # implied score = 3 + log(1 + count("clean")) - log(1 + count("blur")), so the values below are exact
    return str(TextJudge(["clean", "blur"], [1.0, -1.0], 3.0).save(tmp_path / "judge.json"))


def g(d, w=0.5):
    return math.exp(-d * d / (2 * w * w))


def test_consistency_exact_values(judge):
    mid = 3 - math.log(2)  # what "blur" implies: 2.3069
    agree = conv(f"<think>blur</think><answer>{mid:.2f}</answer>")
    contradicts = conv("<think>blur</think><answer>4.80</answer>")  # reasoning says poor, answer says excellent
    no_reasoning = conv(f"<answer>{mid:.2f}</answer>")
    batch = [agree, agree, contradicts, contradicts, UNPARSEABLE, TRUNCATED, no_reasoning]
    mos = [round(mid, 2), 4.8, 4.8, round(mid, 2), 2.3, 2.3, 2.3]
    got = consistency(batch, mos=mos, judge=judge)
    s = round(mid, 2)
    assert got[0] == pytest.approx(g(abs(s - mid)))  # right and consistent: ~1
    assert got[1] == pytest.approx(g(4.8 - s) * g(abs(s - mid)))  # consistent with a wrong answer: ~0
    assert got[2] == pytest.approx(g(4.8 - mid))  # right answer, reasoning that contradicts it
    assert got[3] == pytest.approx(g(4.8 - s) * g(4.8 - mid))
    assert got[4:] == [0.0, 0.0, 0.0]  # unparseable, truncated, no reasoning
    assert got[0] > 0.99 and got[1] < 0.01 and got[2] < 0.01


def test_ungated_consistency_pays_agreement_alone_and_keeps_the_promise_below_0217(judge):
    mid = 3 - math.log(2)
    agree = conv(f"<think>blur</think><answer>{mid:.2f}</answer>")
    contradicts = conv("<think>blur</think><answer>4.80</answer>")
    got = consistency([agree, agree, contradicts, UNPARSEABLE], mos=[round(mid, 2), 4.8, 4.8, 2.3], judge=judge,
                      gate=False)
    s = round(mid, 2)
    assert got[0] == pytest.approx(g(abs(s - mid))) and got[1] == got[0]  # the MOS plays no part
    assert got[2] == pytest.approx(g(4.8 - mid)) and got[3] == 0.0
    # the weight is the guard: accuracy 1.0 + consistency w, a consistent answer off by 0.35 against an exact one
    # that contradicts its reasoning
    for w, holds in [(0.2, True), (0.25, False)]:
        best_wrong, worst_right = g(0.35) + w * 1.0, 1.0 + w * 0.0
        assert (best_wrong < worst_right) is holds


def test_threshold_gated_consistency_pays_only_right_answers_and_keeps_the_promise_at_any_weight(judge):
    mid = 3 - math.log(2)
    s = round(mid, 2)
    agree = conv(f"<think>blur</think><answer>{s:.2f}</answer>")
    contradicts = conv("<think>blur</think><answer>4.80</answer>")
    batch = [agree, agree, agree, contradicts, UNPARSEABLE]
    mos = [s, s + 0.34, s + 0.35, 4.8, 2.3]
    got = consistency(batch, mos=mos, judge=judge, gate="threshold")
    assert got[0] == pytest.approx(g(abs(s - mid))) and got[1] == got[0]  # inside eps: agreement, undiscounted
    assert got[2] == 0.0  # off by eps: wrong, however well the reasoning agrees
    assert got[3] == pytest.approx(g(4.8 - mid)) and got[4] == 0.0
    assert consistency([agree], mos=[s + 0.2], judge=judge, gate="threshold", eps=0.1) == [0.0]
    # accuracy_continuous 1.0 + consistency w: a wrong answer (off by eps) whose reasoning agrees against a right
    # one (just inside eps) whose reasoning contradicts it, at weights far past the other gates' caps
    pair, pair_mos = [agree, contradicts], [s + 0.35, 4.8 - 0.34]
    acc = accuracy_continuous(pair, mos=pair_mos)
    cons = consistency(pair, mos=pair_mos, judge=judge, gate="threshold")
    assert cons[0] == 0.0 and cons[1] > 0.0
    for w in [0.25, 1.0, 4.0]:
        assert acc[0] + w * cons[0] < acc[1] + w * cons[1]


def test_consistency_rejects_an_unknown_gate_before_training(judge):
    from qponder.errors import QPonderError
    from qponder.train.grpo import reward_functions

    with pytest.raises(QPonderError, match="gate"):
        consistency([conv("<think>blur</think><answer>3.00</answer>")], mos=[3.0], judge=judge, gate="hard")
    with pytest.raises(QPonderError, match="gate must be"):
        reward_functions({"accuracy_continuous": 1.0, "consistency": 0.5}, {"consistency": {"gate": "hard"}})
    funcs, ws = reward_functions({"accuracy_continuous": 1.0, "consistency": 0.5},
                                 {"consistency": {"gate": "threshold", "judge": judge}})
    assert ws[:2] == [1.0, 0.5] and [f.__name__ for f in funcs][:2] == ["accuracy_continuous", "consistency"]


def test_consistent_wrong_never_beats_right_under_the_recommended_weights(judge):
    # whatever the reasoning implies, an answer off by >= 0.35 earns less than an exact one from accuracy+consistency
    w = PRESETS["qponder"]
    worst_right = w["accuracy_continuous"] * 1.0 + w["consistency"] * 0.0
    for err in [0.35, 0.5, 1.0, 2.0]:
        for implied_gap in [0.0, 0.3, 1.0]:
            best_wrong = w["accuracy_continuous"] * g(err) + w["consistency"] * g(err) * g(implied_gap)
            assert best_wrong < worst_right
    # and on real completions: a wrong answer whose reasoning agrees with it vs a right one whose reasoning does not
    mid = 3 - math.log(2)
    wrong_consistent = conv(f"<think>blur</think><answer>{mid:.2f}</answer>")
    right_inconsistent = conv("<think>blur</think><answer>3.50</answer>")
    batch, mos = [wrong_consistent, right_inconsistent], [3.5, 3.5]
    total = [w["accuracy_continuous"] * a + w["consistency"] * c
             for a, c in zip(accuracy_continuous(batch, mos=mos), consistency(batch, mos=mos, judge=judge))]
    assert total[0] < total[1]


def test_threshold_gate_keeps_the_promise_when_each_term_is_normalised_in_its_group(judge):
    # TRL's normalize_then_sum (GRPORecipe.multi_objective_aggregation): every term becomes
    # (r - group mean) / (group std + 1e-4) before the weighted sum. In a group with two right answers (one whose
    # reasoning agrees, one whose reasoning does not) and a wrong one (off by 0.40) whose reasoning agrees, the wrong
    # one must rank last at any weight of the threshold-gated term; the accuracy-discounted gate breaks this
    mid = 3 - math.log(2)  # what "blur" implies
    mos = 2.0
    texts = ["<think>blur</think><answer>2.10</answer>",                   # right, agrees
             "<think>no defect at all, pristine</think><answer>2.05</answer>",  # right, reasoning says excellent
             "<think>blur</think><answer>2.40</answer>"]                   # off by 0.40: wrong, agrees
    batch = [conv(t) for t in texts]
    acc = accuracy_continuous(batch, mos=[mos] * 3)

    def z(v):
        mean, sd = statistics.fmean(v), statistics.stdev(v)
        return [(x - mean) / (sd + 1e-4) for x in v]

    def ranks_wrong_last(gate, weight):
        cons = consistency(batch, mos=[mos] * 3, judge=judge, gate=gate)
        total = [z(acc)[i] + weight * z(cons)[i] for i in range(3)]
        return total[2] < min(total[:2])

    assert abs(2.40 - mid) < 0.5 and all(ranks_wrong_last("threshold", w) for w in [0.25, 1.0, 4.0, 16.0])
    assert not ranks_wrong_last(True, 16.0)


def test_registry():
    assert set(REWARDS) >= {"format", "accuracy_threshold", "accuracy_continuous", "consistency", "ranking",
                            "degradation"}
    assert all(set(p) <= set(REWARDS) for p in PRESETS.values())
