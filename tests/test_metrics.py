import json
import math

import numpy as np
import pytest

from qponder.errors import QPonderError
from qponder.eval.metrics import (
    fit_logistic,
    krcc,
    logistic4,
    plcc,
    plcc_logistic,
    rmse,
    rmse_logistic,
    srcc,
    summarize,
)

# One adjacent swap among five items: predicted ranks 1,2,3,5,4 against MOS ranks 1,2,3,4,5.
SWAP_PRED = [1.0, 2.0, 3.0, 5.0, 4.0]
SWAP_MOS = [1.0, 2.0, 3.0, 4.0, 5.0]


def test_srcc_one_adjacent_swap_is_point_nine():
    # d = (0,0,0,1,-1), sum d^2 = 2; rho = 1 - 6*2 / (5*(25-1)) = 1 - 12/120 = 0.9
    assert srcc(SWAP_PRED, SWAP_MOS) == pytest.approx(0.9, abs=1e-12)


def test_krcc_one_discordant_pair():
    # 10 pairs, only (4th, 5th) is discordant: tau = (9 - 1) / 10 = 0.8 (no ties, so tau-b = tau-a)
    assert krcc(SWAP_PRED, SWAP_MOS) == pytest.approx(0.8, abs=1e-12)


def test_plcc_known_pair():
    # x - 3 = (-2,-1,0,1,2), y - 4 = (-2,0,1,0,1)
    # sum dx*dy = 4+0+0+0+2 = 6, sum dx^2 = 10, sum dy^2 = 6  ->  r = 6 / sqrt(60) = sqrt(0.6)
    assert plcc([1, 2, 3, 4, 5], [2, 4, 5, 4, 5]) == pytest.approx(math.sqrt(0.6), abs=1e-12)


def test_plcc_is_raw_and_sign_preserving():
    # A perfectly reversed linear relation: raw Pearson is exactly -1, no mapping applied.
    assert plcc([1, 2, 3, 4], [8, 6, 4, 2]) == pytest.approx(-1.0, abs=1e-12)


def test_rmse_hand_computed():
    # errors (1, 0, 2) -> squares (1, 0, 4) -> mean 5/3
    assert rmse([1, 2, 3], [2, 2, 5]) == pytest.approx(math.sqrt(5 / 3), abs=1e-12)


def test_rank_metrics_ignore_monotone_rescaling():
    pred = np.array(SWAP_PRED)
    assert srcc(np.exp(pred) * 100, SWAP_MOS) == pytest.approx(0.9)
    assert krcc(np.exp(pred) * 100, SWAP_MOS) == pytest.approx(0.8)


def test_logistic4_hand_values():
    # At x = b3 the curve sits halfway between b2 and b1: (5 + 1) / 2 = 3
    assert logistic4(0.5, 5, 1, 0.5, 2) == pytest.approx(3.0)
    # One width above the midpoint: 1 + 4 / (1 + e^-1)
    assert logistic4(2.5, 5, 1, 0.5, 2) == pytest.approx(1 + 4 / (1 + math.exp(-1)))
    # The width enters as |b4|, so its sign does not flip the curve.
    assert logistic4(2.5, 5, 1, 0.5, -2) == pytest.approx(logistic4(2.5, 5, 1, 0.5, 2))
    # Far tails saturate to b2 / b1 without overflow.
    with np.errstate(all="raise"):
        assert logistic4(np.array([-1e6, 1e6]), 5, 1, 0, 1e-3).tolist() == pytest.approx([1, 5])


@pytest.mark.parametrize(
    "true",
    [
        (4.5, 1.2, 0.7, 1.3),  # rising: higher prediction = better
        (1.2, 4.5, 40.0, 9.0),  # falling, BRISQUE-like scale (0..100)
    ],
)
def test_fit_logistic_recovers_known_sigmoid(true):
    b3, b4 = true[2], true[3]
    x = np.linspace(b3 - 5 * b4, b3 + 5 * b4, 41)
    y = logistic4(x, *true)
    fit = fit_logistic(x, y)
    assert not fit.linear
    b1, b2, c3, c4 = fit.params
    assert (b1, b2, c3, abs(c4)) == pytest.approx(true, rel=1e-4, abs=1e-4)
    assert fit.fn(x) == pytest.approx(y, abs=1e-6)
    assert plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-9)
    assert rmse_logistic(x, y) == pytest.approx(0.0, abs=1e-6)


def test_fit_logistic_recovers_with_noise():
    rng = np.random.default_rng(0)
    true = (4.6, 1.3, 0.0, 1.0)
    x = rng.uniform(-4, 4, 400)
    y = logistic4(x, *true) + rng.normal(0, 0.05, x.size)
    fit = fit_logistic(x, y)
    assert not fit.linear
    b1, b2, c3, c4 = fit.params
    assert (b1, b2, c3, abs(c4)) == pytest.approx(true, abs=0.1)


def test_fit_logistic_falls_back_to_linear_with_too_few_points():
    # 3 points cannot fix 4 parameters; the least-squares line through them is y = 2x + 1 exactly.
    fit = fit_logistic([0, 1, 2], [1, 3, 5])
    assert fit.linear
    assert fit.params == pytest.approx((2.0, 1.0))
    assert fit.fn(np.array([10.0])) == pytest.approx([21.0])


def test_fit_logistic_constant_predictions_maps_to_mean():
    fit = fit_logistic([2, 2, 2, 2, 2], [1, 2, 3, 4, 5])
    assert fit.linear
    assert fit.fn(np.array([2.0, 7.0])) == pytest.approx([3.0, 3.0])


def test_fit_logistic_on_exactly_linear_data_is_never_worse_than_a_line():
    x = np.arange(10, dtype=float)
    y = 0.3 * x + 1
    fit = fit_logistic(x, y)
    assert np.sqrt(np.mean((fit.fn(x) - y) ** 2)) < 1e-3
    assert plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-6)


def test_fit_logistic_no_pairs_raises_user_error():
    with pytest.raises(QPonderError):
        fit_logistic([], [])


def test_plcc_logistic_beats_raw_plcc_on_a_nonlinear_monotone_metric():
    x = np.linspace(0, 100, 30)
    y = logistic4(x, 1.0, 5.0, 50.0, 8.0)  # falling, like BRISQUE vs MOS
    assert plcc(x, y) > -0.99
    assert plcc_logistic(x, y) == pytest.approx(1.0, abs=1e-6)


def _assert_json_clean(d):
    for key, value in d.items():
        assert value is None or (isinstance(value, (int, float)) and math.isfinite(value)), (key, value)
    json.dumps(d, allow_nan=False)


KEYS = {"n", "srcc", "plcc", "plcc_logistic", "krcc", "rmse", "rmse_logistic"}


def test_summarize_keys_and_values():
    s = summarize(SWAP_PRED, SWAP_MOS)
    assert set(s) == KEYS
    assert s["n"] == 5
    assert s["srcc"] == pytest.approx(0.9)
    assert s["krcc"] == pytest.approx(0.8)
    # Raw errors (0,0,0,1,-1): sqrt(2/5)
    assert s["rmse"] == pytest.approx(math.sqrt(0.4))
    # The fit is never worse than the best line (identity included), and regressing MOS on the mapped values
    # leaves at most that SSE, so r^2 cannot drop either.
    assert s["rmse_logistic"] <= s["rmse"] + 1e-9
    assert s["plcc_logistic"] >= s["plcc"] - 1e-9
    _assert_json_clean(s)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_summarize_too_few_pairs(n):
    s = summarize(list(range(n)), list(range(n)))
    assert set(s) == KEYS and s["n"] == n
    for key in ("srcc", "plcc", "plcc_logistic", "krcc", "rmse_logistic"):
        assert s[key] is None
    # RMSE of raw values needs only one pair; with none it is undefined.
    assert s["rmse"] is None if n == 0 else s["rmse"] == 0.0
    _assert_json_clean(s)


def test_summarize_constant_predictions():
    s = summarize([3, 3, 3, 3, 3], [1, 2, 3, 4, 5])
    for key in ("srcc", "plcc", "krcc", "plcc_logistic"):
        assert s[key] is None
    # Errors (2,1,0,-1,-2): sqrt(10/5); the best constant map is the MOS mean, leaving the MOS std.
    assert s["rmse"] == pytest.approx(math.sqrt(2))
    assert s["rmse_logistic"] == pytest.approx(np.std([1, 2, 3, 4, 5]))
    _assert_json_clean(s)


def test_summarize_constant_mos():
    s = summarize([1, 2, 3, 4], [3, 3, 3, 3])
    assert s["srcc"] is None and s["plcc"] is None and s["krcc"] is None and s["plcc_logistic"] is None
    assert s["rmse_logistic"] == pytest.approx(0.0)
    _assert_json_clean(s)


def test_failed_predictions_are_dropped_pairwise():
    pred = [1.0, None, 2.0, float("nan"), 3.0, 5.0, 4.0]
    mos = [1.0, 9.0, 2.0, 9.0, 3.0, 4.0, float("inf")]
    s = summarize(pred, mos)
    assert s["n"] == 4  # (1,1), (2,2), (3,3), (5,4)
    assert s["srcc"] == pytest.approx(1.0)
    _assert_json_clean(s)


def test_all_failed_predictions_do_not_raise():
    s = summarize([None, None, None], [1, 2, 3])
    assert s["n"] == 0
    assert all(s[k] is None for k in KEYS - {"n"})


def test_length_mismatch_is_a_user_error():
    with pytest.raises(QPonderError, match="3 predictions but 2 MOS"):
        summarize([1, 2, 3], [1, 2])


def test_outputs_are_python_floats():
    s = summarize([1, 2, 3, 4, 6], [1, 3, 2, 5, 4])
    assert all(type(v) is float for k, v in s.items() if k != "n")
    assert type(s["n"]) is int
