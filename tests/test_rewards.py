"""Rewards on hand-written completions, with exact expected values."""

import math

import pytest

from qponder.rewards import (REWARDS, accuracy_continuous, accuracy_threshold, degradation, format_lenient,
                             format_strict, ranking)


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


def test_registry():
    assert set(REWARDS) >= {"format", "accuracy_threshold", "accuracy_continuous", "ranking", "degradation"}
