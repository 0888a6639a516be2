"""Agreement between predicted quality and human MOS: SRCC, PLCC, KRCC, RMSE, and the 4-parameter logistic.

Conventions shared by every function here:

* Inputs are any 1-D sequences of numbers. ``None`` and non-finite entries are allowed and the *pair* is
  dropped, because failed predictions (``Prediction.score is None``) must not sink a whole evaluation;
  ``summarize()["n"]`` reports how many pairs were actually used. Sequences of different lengths raise
  ``QPonderError``: that is a bookkeeping bug, not a degenerate sample.
* A metric that is undefined for the sample (fewer than 3 pairs, constant predictions or constant MOS for
  correlations) is returned as ``None``, never NaN and never an exception, so results serialize to JSON
  and the caller can tell "undefined" from "bad".
* Results are plain Python floats.

Metric choices follow the usual IQA practice (VQEG): rank metrics on raw predictions, and PLCC/RMSE both
raw and after fitting a monotonic 4-parameter logistic from predictions to MOS on the same sample, since
metrics such as BRISQUE live on their own, often reversed, scale.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple, Sequence

import numpy as np

from qponder.errors import QPonderError

# Fitting a map through fewer points than this is interpolation, not evaluation.
MIN_PAIRS = 3
# curve_fit needs at least as many points as the logistic has parameters.
_LOGISTIC_PARAMS = 4


def _pairs(pred: Sequence[float | None], mos: Sequence[float | None]) -> tuple[np.ndarray, np.ndarray]:
    p = np.array([np.nan if v is None else v for v in pred], dtype=float).ravel()
    m = np.array([np.nan if v is None else v for v in mos], dtype=float).ravel()
    if p.shape != m.shape:
        raise QPonderError(f"metrics: got {p.size} predictions but {m.size} MOS values; they must pair up one-to-one")
    keep = np.isfinite(p) & np.isfinite(m)
    return p[keep], m[keep]


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _correlation(pred, mos, fn) -> float | None:
    p, m = _pairs(pred, mos)
    # scipy returns NaN (with a warning) for constant input; checking first keeps the output quiet and explicit.
    if p.size < MIN_PAIRS or np.ptp(p) == 0 or np.ptp(m) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _finite_or_none(fn(p, m)[0])


def srcc(pred: Sequence[float | None], mos: Sequence[float | None]) -> float | None:
    """Spearman rank-order correlation."""
    from scipy.stats import spearmanr

    return _correlation(pred, mos, spearmanr)


def plcc(pred: Sequence[float | None], mos: Sequence[float | None]) -> float | None:
    """Pearson linear correlation on the raw predictions (no mapping)."""
    from scipy.stats import pearsonr

    return _correlation(pred, mos, pearsonr)


def krcc(pred: Sequence[float | None], mos: Sequence[float | None]) -> float | None:
    """Kendall rank correlation (tau-b, so ties are handled)."""
    from scipy.stats import kendalltau

    return _correlation(pred, mos, kendalltau)


def _rmse(p: np.ndarray, m: np.ndarray) -> float | None:
    if p.size == 0:
        return None
    return _finite_or_none(np.sqrt(np.mean((p - m) ** 2)))


def rmse(pred: Sequence[float | None], mos: Sequence[float | None]) -> float | None:
    """Root-mean-square error on the raw predictions; only meaningful when they are on the MOS scale."""
    return _rmse(*_pairs(pred, mos))


def logistic4(x, b1: float, b2: float, b3: float, b4: float):
    """``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``: b2 at -inf, b1 at +inf, midpoint b3, width |b4|."""
    from scipy.special import expit

    # expit instead of 1/(1+exp) so far-out x saturates without overflow warnings; |b4| is floored so a
    # collapsed width becomes a step rather than a division by zero.
    width = max(abs(float(b4)), np.finfo(float).tiny)
    return (b1 - b2) * expit((np.asarray(x, dtype=float) - b3) / width) + b2


class LogisticFit(NamedTuple):
    """Result of `fit_logistic`. ``fn`` maps predictions to the MOS scale.

    ``linear`` is True when the logistic could not be fitted (too few points, no convergence, or a fit
    worse than a straight line) and ``fn`` is the least-squares line instead; ``params`` are then
    ``(slope, intercept)`` rather than ``(b1, b2, b3, b4)``.
    """

    fn: Callable[[np.ndarray], np.ndarray]
    params: tuple[float, ...]
    linear: bool


def _linear_fit(p: np.ndarray, m: np.ndarray) -> LogisticFit:
    var = float(np.var(p))
    # Constant predictions carry no information: the best map is the MOS mean.
    slope = float(np.mean((p - p.mean()) * (m - m.mean())) / var) if var > 0 else 0.0
    intercept = float(m.mean() - slope * p.mean())
    return LogisticFit(lambda x: slope * np.asarray(x, dtype=float) + intercept, (slope, intercept), True)


def fit_logistic(pred: Sequence[float | None], mos: Sequence[float | None]) -> LogisticFit:
    """Least-squares fit of `logistic4` from predictions to MOS, falling back to a line (see `LogisticFit`).

    Raises ``QPonderError`` only when no pair is usable at all, since then not even a line exists.
    """
    from scipy.optimize import curve_fit
    from scipy.stats import spearmanr

    p, m = _pairs(pred, mos)
    if p.size == 0:
        raise QPonderError("fit_logistic: no finite (prediction, MOS) pairs to fit")
    line = _linear_fit(p, m)
    if p.size < _LOGISTIC_PARAMS or np.ptp(p) == 0 or np.ptp(m) == 0:
        return line

    hi, lo = float(np.max(m)), float(np.min(m))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rho = spearmanr(p, m)[0]
    # Metrics where lower = better (BRISQUE, NIQE) need a falling curve; starting on the wrong side of the
    # b1/b2 swap often leaves the optimizer in a flat region it never leaves.
    if math.isfinite(rho) and rho < 0:
        hi, lo = lo, hi
    b4 = float(np.std(p)) or 1.0
    p0 = [hi, lo, float(np.median(p)), b4]
    try:
        with warnings.catch_warnings():
            # OptimizeWarning (covariance not estimable) does not make the fitted curve wrong.
            warnings.simplefilter("ignore")
            params, _ = curve_fit(logistic4, p, m, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError, TypeError, FloatingPointError):
        return line
    params = tuple(float(v) for v in params)
    fitted = logistic4(p, *params)
    if not all(math.isfinite(v) for v in params) or not np.all(np.isfinite(fitted)):
        return line
    # A converged-but-stuck fit (local minimum) can be worse than a line, which the logistic can nearly
    # reproduce; the line is then the better mapping and the flag says so.
    sse_logistic = float(np.sum((fitted - m) ** 2))
    sse_line = float(np.sum((line.fn(p) - m) ** 2))
    if sse_logistic > sse_line * (1 + 1e-9) + 1e-12:
        return line
    return LogisticFit(lambda x: logistic4(x, *params), params, False)


def _mapped(pred, mos) -> tuple[np.ndarray, np.ndarray] | None:
    p, m = _pairs(pred, mos)
    if p.size < MIN_PAIRS:
        return None
    return fit_logistic(p, m).fn(p), m


def plcc_logistic(pred: Sequence[float | None], mos: Sequence[float | None]) -> float | None:
    """Pearson correlation after mapping predictions to MOS with the fitted 4-parameter logistic."""
    mapped = _mapped(pred, mos)
    return None if mapped is None else plcc(*mapped)


def rmse_logistic(pred: Sequence[float | None], mos: Sequence[float | None]) -> float | None:
    """RMSE after the logistic mapping. Constant predictions still get a value: the spread of MOS around its mean."""
    mapped = _mapped(pred, mos)
    return None if mapped is None else _rmse(*mapped)


def summarize(pred: Sequence[float | None], mos: Sequence[float | None]) -> dict[str, float | int | None]:
    """All metrics at once: ``n, srcc, plcc, plcc_logistic, krcc, rmse, rmse_logistic``.

    ``n`` is the number of usable pairs. The logistic is fitted once and shared by both fitted metrics.
    """
    p, m = _pairs(pred, mos)
    out: dict[str, float | int | None] = {
        "n": int(p.size),
        "srcc": srcc(p, m),
        "plcc": plcc(p, m),
        "plcc_logistic": None,
        "krcc": krcc(p, m),
        "rmse": rmse(p, m),
        "rmse_logistic": None,
    }
    if p.size >= MIN_PAIRS:
        mapped = fit_logistic(p, m).fn(p)
        out["plcc_logistic"] = plcc(mapped, m)
        out["rmse_logistic"] = _rmse(mapped, m)
    return out
