"""The offline "attribute" teacher: classical low-level measurements turned into an expert-style rationale.

Q-Ponder distils reasoning from a large teacher VLM. Offline there is none, so this teacher does what such a
model is asked to do, from the pixels only: look at sharpness, noise, compression, exposure, contrast and
colour, name the dominant problem(s) and how badly they hurt the content, then give a score in [1, 5].

Unless one of the two hints below is switched on, it never reads labels, file names or distortion types:
``measure`` takes a PIL image (or an HxWx3 uint8 array) and nothing else. It is deliberately an *honest, imperfect* teacher, roughly what a generalist 72B VLM would
be on synthetic distortions: it sees strong blur, noise, blocking, palette reduction or clipping well, and it
misses or misnames subtle ones (mild blur, small tone shifts, displaced patches, JPEG 2000 is called blur),
which leaves room for later RL to beat it.

Pipeline
--------
``measure(image) -> Attributes``  Classical no-reference estimators (units in ``Attributes``):
    sharpness: width of the strongest edges (local range / peak gradient), the high-frequency residual on
    those edges, and the anisotropy of second differences over 4 directions (motion blur); noise:
    Immerkaer's Laplacian-difference estimator on the flattest 16x16 blocks, for luma and
    for chroma, plus salt-and-pepper outliers from a 3x3 median; compression: 8x8 grid blockiness (boundary vs
    interior column/row differences); exposure: mean luma, clipped shares, 5th/95th percentiles; contrast: RMS
    contrast and an unsharp-mask halo ratio (band energy at sigma 1..4 vs 4..12); colour: Hasler-Suesstrunk
    colourfulness, HSV saturation, channel clipping at mid luma, red/green/blue edge misalignment; spatial:
    palette size, levels per channel, repeated rows/columns (pixelation), uniform pasted squares, exact
    copies of textured patches a few pixels away (displaced patches).
``detectors(a)``  Named detectors (``DETECTORS`` gives each one's family), severity in [0, 1] from soft
    (logistic) ramps, so severities are continuous and scores do not collapse onto a few levels. Thresholds
    were set by looking at the train split of qponder-synth and at the held-out distortion types rendered on
    train photos (never at test); severities are roughly aligned with KADID's MOS drop so that the severity
    words mean something.
``diagnose(a)``  Family severities (the max of that family's detectors), most severe first; families are
    ``qponder.lexicon.FAMILY_WORDS`` keys.
``score_from(a, diagnosis, calibration=None)``  Quality in [1, 5], two decimals. Uncalibrated: a hand-set
    ``4.6 - 3.4 * (s1 + 0.4 s2 + 0.2 s3)`` on the sorted family severities. ``AttributeTeacher.fit`` (train
    split only) fits ``intercept - sum_d w_d * severity_d - w * worst severity`` by non-negative least squares
    with a small ridge (non-negative weights keep "more damage, lower score"), then a monotone map of that
    (isotonic regression on 12 quantile knots, blended 70/30 with the identity so it stays strictly
    increasing). Both ends approach 1 and 5 exponentially instead of clipping, so scores do not pile up there.
``AttributeTeacher.describe(image, mos=None)``  ``<think>...</think><answer>3.47</answer>``: the dominant
    problem with a severity word from ``SEVERITY_WORDS`` and its impact on the content, then a walk through the
    six attributes (an attribute with nothing wrong is described without any family's vocabulary, so that
    ``qponder.lexicon.family_mentions`` of the text peaks at the diagnosed family), then a conclusion with a
    quality word (``diagnosis_first=False``: the walk comes before the dominant problem). Phrasing is varied
    deterministically: the choices are seeded by a hash of the pixels (and the teacher's ``seed``), so one image
    always gives the same text and different images read differently.

MOS hint (``use_mos_hint=True``, off by default): the reasoning stays the teacher's own, and the final score is
pulled toward the given MOS, ``score + hint_weight * (mos - score)``; the conclusion's quality word follows the
final score. Without a MOS (or with the option off) the MOS argument is ignored.

Family hint (``family_hint=True``, off by default): the reasoning leads with the given distortion family label
(``lead_with``) and the score stays the teacher's own. Measured in docs/results.md (stop 33): on qponder-synth it
gives every kept trace its label's family, and a student trained on them names no more families right.
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import asdict, dataclass
from typing import Iterable, Sequence

import cv2
import numpy as np
from PIL import Image

from qponder.errors import QPonderError
from qponder.lexicon import FAMILY_WORDS, QUALITY_WORDS, SEVERITY_WORDS, family_mentions
from qponder.models.answer import format_answer

FAMILIES: tuple[str, ...] = tuple(FAMILY_WORDS)
CLEAN_BELOW = 0.2  # a family whose severity stays below this is not called a problem
MIN_SIDE = 32


@dataclass
class Attributes:
    """Low-level measurements of one image. Grey levels are on the 0..255 luma scale (BT.601)."""

    edge_width: float  # px; median width of the strongest edges (~2.5-3.5 sharp photo, 5+ clearly blurred)
    edge_residual: float  # ratio >= 0; Immerkaer residual / gradient on those edges (<0.2 smeared, >1.5 rough)
    detail: float  # grey levels / px; mean gradient magnitude
    anisotropy: float  # ratio >= 1; max / min mean |second difference| over 4 directions (~1.6 typical,
    #                    3+ directional smear as in motion blur, ~1.0-1.2 isotropic scatter or noise)
    texture_sigma: float  # grey levels; median Immerkaer sigma over 16x16 blocks (fine texture + noise)
    noise_sigma: float  # grey levels; 10th-percentile Immerkaer sigma over 16x16 blocks (the noise floor)
    chroma_noise: float  # grey levels; the same floor on the B-Y and R-Y chroma planes
    impulse_frac: float  # 0..1; share of pixels with an isolated 0/255 sample (salt-and-pepper)
    blockiness: float  # ratio, ~1.0 without a grid; 8x8 boundary / interior neighbour differences
    mean_luma: float  # 0..1
    clip_low: float  # 0..1; share of pixels with luma <= 4
    clip_high: float  # 0..1; share of pixels with luma >= 251
    p05: float  # 0..1; 5th percentile of luma
    p95: float  # 0..1; 95th percentile of luma
    contrast: float  # 0..~0.5; RMS contrast, std of luma / 255
    halo: float  # ratio, ~0.9 typical; band energy sigma 1..4 over band 4..12 (unsharp-mask overshoot)
    colourfulness: float  # Hasler-Suesstrunk M on 0..255 RGB (~15 dull .. ~110 very colourful)
    saturation: float  # 0..1; mean HSV saturation over pixels with V >= 0.25
    grey_frac: float  # 0..1; share of pixels with max-min channel spread <= 3 (no colour)
    chroma_clip: float  # 0..1; share of mid-luma pixels with a channel at 0/255 (out-of-gamut colour)
    misalign: float  # 0..1; 1 - correlation of G and (R+B)/2 gradient magnitudes (colour fringing)
    unique_colours: float  # count of distinct RGB colours on the 2x-subsampled grid
    levels_per_channel: float  # mean number of distinct values per RGB channel (<=256)
    shared_levels: float  # 0..1; Jaccard overlap of the three channels' value sets
    pixel_dup: float  # 0..1; min(share of rows equal to the previous row, same for columns)
    flat_blocks: float  # 0..1; area share of uniform, non-clipped squares that stand out from surroundings
    copied: float  # 0..1; share of textured 6x6 windows with an exact copy 1..10 px away (displaced patches)

    def to_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}


# ----------------------------------------------------------------------------------------------- measure

_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
_IMM_SCALE = math.sqrt(math.pi / 2.0) / 6.0
_DIAG = np.diag([1.0, -2.0, 1.0]).astype(np.float32)
_SECOND_DIFF = [np.array([[1, -2, 1]], np.float32), np.array([[1], [-2], [1]], np.float32), _DIAG,
                np.ascontiguousarray(np.fliplr(_DIAG))]
_HASH_K = 6
_HASH_W = np.random.default_rng(7).integers(1, 997, (_HASH_K, _HASH_K)).astype(np.float64)


def _rgb(image) -> np.ndarray:
    if isinstance(image, Image.Image):
        arr = np.asarray(image.convert("RGB"), dtype=np.uint8)
    elif isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3:
        arr = image
    else:
        got = type(image).__name__ if not isinstance(image, np.ndarray) else f"array {image.dtype} {image.shape}"
        raise QPonderError(f"the attribute teacher takes a PIL image or an HxWx3 uint8 RGB array; got {got}")
    if min(arr.shape[:2]) < MIN_SIDE:
        raise QPonderError(f"image {arr.shape[1]}x{arr.shape[0]} is too small for the attribute teacher "
                           f"(at least {MIN_SIDE}x{MIN_SIDE} px)")
    return np.ascontiguousarray(arr)


def _block_mean(x: np.ndarray, b: int) -> np.ndarray:
    h, w = (x.shape[0] // b) * b, (x.shape[1] // b) * b
    return x[:h, :w].reshape(h // b, b, w // b, b).mean(axis=(1, 3))


def _grid_ratio(d: np.ndarray) -> float:
    """Mean difference at positions 7 mod 8 (between 8x8 blocks) over the median of the other positions."""
    m = len(d) // 8 * 8
    if m < 16:
        return 1.0
    p = d[:m].reshape(-1, 8).mean(axis=0)
    return float(p[7] / max(float(np.median(p[:7])), 1e-3))


def _flat_blocks(rgb: np.ndarray, packed: np.ndarray, mx: np.ndarray, mn: np.ndarray) -> float:
    """Area share of uniform squares (>= 20 px a side) whose colour differs from their surroundings."""
    k3 = np.ones((3, 3), np.uint8)
    flat = (cv2.dilate(packed, k3) == cv2.erode(packed, k3)) & (mn < 250) & (mx > 5)
    n, _, stats, _ = cv2.connectedComponentsWithStats(flat.astype(np.uint8), connectivity=4)
    if n <= 1:
        return 0.0
    h, w = flat.shape
    area = 0
    for i in np.flatnonzero((stats[:, 4] >= 300) & (stats[:, 2] >= 20) & (stats[:, 3] >= 20)
                            & (stats[:, 2] <= 120) & (stats[:, 3] <= 120)):
        if i == 0:
            continue
        x0, y0, ww, hh, a = (int(v) for v in stats[i])
        if a < 0.5 * ww * hh:
            continue
        # the ring just outside the bounding box: a pasted block differs from it, a smooth region does not
        inner = rgb[y0 + hh // 2, x0 + ww // 2].astype(np.int16)
        ring = np.concatenate([rgb[max(y0 - 2, 0), x0:x0 + ww], rgb[min(y0 + hh + 1, h - 1), x0:x0 + ww],
                               rgb[y0:y0 + hh, max(x0 - 2, 0)], rgb[y0:y0 + hh, min(x0 + ww + 1, w - 1)]])
        if np.abs(ring.astype(np.int16) - inner).sum(axis=1).mean() > 30:
            area += a
    return area / float(h * w)


def _copied(packed: np.ndarray, y: np.ndarray) -> float:
    """Share of textured 6x6 windows that occur again, exactly, 1..10 px away (copy-moved patches)."""
    # an integer-weighted sum of the packed 24-bit colours is exact in float64: equal sums = equal windows
    h = cv2.filter2D(packed.astype(np.float64), cv2.CV_64F, _HASH_W, anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)
    hh, ww = packed.shape[0] - _HASH_K + 1, packed.shape[1] - _HASH_K + 1
    h = h[:hh, :ww]
    m1 = cv2.boxFilter(y, cv2.CV_32F, (_HASH_K, _HASH_K), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)[:hh, :ww]
    m2 = cv2.boxFilter(y * y, cv2.CV_32F, (_HASH_K, _HASH_K), anchor=(0, 0), borderType=cv2.BORDER_CONSTANT)[:hh, :ww]
    textured = (m2 - m1 * m1) > 16.0  # local std above 4 grey levels
    idx = np.flatnonzero(textured)
    if idx.size < 2:
        return 0.0
    hv = h.ravel()[idx]
    order = np.argsort(hv)
    same = np.flatnonzero(hv[order][1:] == hv[order][:-1])
    if same.size == 0:
        return 0.0
    a, b = idx[order[same]], idx[order[same + 1]]
    dy = np.abs(a // ww - b // ww)
    dx = np.abs(a % ww - b % ww)
    near = (dy <= 10) & (dx <= 10)
    return float(near.sum() / float(hh * ww))


def measure(image) -> Attributes:
    """All attributes of one image (PIL image or HxWx3 uint8 RGB). About 10-20 ms at 320x240 on one core."""
    rgb = _rgb(image)
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    h, w = y.shape
    n = float(h * w)

    # sharpness: edge width and the high-frequency residual on the strongest edges
    gx = cv2.Sobel(y, cv2.CV_32F, 1, 0, ksize=3, scale=0.125)
    gy = cv2.Sobel(y, cv2.CV_32F, 0, 1, ksize=3, scale=0.125)
    gm = cv2.magnitude(gx, gy)
    k9 = np.ones((9, 9), np.uint8)
    range9 = cv2.dilate(y, k9) - cv2.erode(y, k9)
    lap = np.abs(cv2.filter2D(y, cv2.CV_32F, _IMMERKAER, borderType=cv2.BORDER_REFLECT))
    edges = (gm >= max(float(np.percentile(gm, 97)), 2.0)) & (range9 > 25)
    if np.count_nonzero(edges) >= 20:
        ge = np.maximum(gm[edges], 1e-3)
        edge_width = float(np.median(range9[edges] / ge))
        edge_residual = float(np.median(lap[edges] / ge))
    else:  # no edge worth the name: featureless or extremely soft
        edge_width, edge_residual = 10.0, 0.0
    detail = float(cv2.mean(gm)[0])
    dirs = [cv2.mean(cv2.absdiff(cv2.filter2D(y, cv2.CV_32F, k), 0))[0] for k in _SECOND_DIFF]
    anisotropy = float(max(dirs) / max(min(dirs), 1e-3))

    # noise: Immerkaer's estimator per 16x16 block; the flattest blocks give the noise floor
    blocks = np.sort(_block_mean(lap, 16).ravel()) * _IMM_SCALE
    noise_sigma = float(blocks[int(0.1 * (blocks.size - 1))])
    texture_sigma = float(blocks[int(0.5 * (blocks.size - 1))])
    lc = sum(cv2.absdiff(cv2.filter2D(c - y, cv2.CV_32F, _IMMERKAER), 0) for c in (b, r))
    cblocks = np.sort(_block_mean(lc, 16).ravel()) * (0.5 * _IMM_SCALE)
    chroma_noise = float(cblocks[int(0.1 * (cblocks.size - 1))])
    med = cv2.medianBlur(rgb, 3)
    extreme = (rgb == 0) | (rgb == 255)
    outlier = cv2.absdiff(rgb, med) > 60
    hit = extreme & outlier
    impulse_frac = float(np.count_nonzero(hit[..., 0] | hit[..., 1] | hit[..., 2]) / n)

    # compression: JPEG's 8x8 grid
    dh = np.minimum(np.abs(y[:, 1:] - y[:, :-1]), 30.0).mean(axis=0)
    dv = np.minimum(np.abs(y[1:, :] - y[:-1, :]), 30.0).mean(axis=1)
    blockiness = 0.5 * (_grid_ratio(dh) + _grid_ratio(dv))

    # exposure and contrast
    yu8 = np.clip(y + 0.5, 0, 255).astype(np.uint8)
    hist = np.bincount(yu8.ravel(), minlength=256).astype(np.float64)
    cdf = np.cumsum(hist) / n
    mean_luma = float(cv2.mean(y)[0] / 255.0)
    clip_low = float(cdf[4])
    clip_high = float(1.0 - cdf[250])
    p05 = float(np.searchsorted(cdf, 0.05) / 255.0)
    p95 = float(np.searchsorted(cdf, 0.95) / 255.0)
    contrast = float(np.sqrt(max((hist * (np.arange(256) - mean_luma * 255) ** 2).sum() / n, 0.0)) / 255.0)
    g1 = cv2.GaussianBlur(y, (0, 0), 1.0)
    g4 = cv2.GaussianBlur(y, (0, 0), 4.0)
    g12 = cv2.GaussianBlur(y, (0, 0), 12.0)
    halo = float(cv2.meanStdDev(g1 - g4)[1][0, 0] / max(float(cv2.meanStdDev(g4 - g12)[1][0, 0]), 1e-3))

    # colour
    rg = r - g
    yb = 0.5 * (r + g) - b
    (mrg,), (srg,) = (v[:, 0] for v in cv2.meanStdDev(rg))
    (myb,), (syb,) = (v[:, 0] for v in cv2.meanStdDev(yb))
    colourfulness = float(math.hypot(srg, syb) + 0.3 * math.hypot(mrg, myb))
    mx = np.maximum(np.maximum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    mn = np.minimum(np.minimum(rgb[..., 0], rgb[..., 1]), rgb[..., 2])
    spread = (mx - mn).astype(np.float32)
    lit = mx >= 64
    saturation = float((spread[lit] / mx[lit]).mean()) if np.count_nonzero(lit) > 0.01 * n else 0.0
    grey_frac = float(np.count_nonzero(spread <= 3) / n)
    mid = (y > 40) & (y < 215)
    chroma_clip = float(np.count_nonzero(mid & ((mn <= 1) | (mx >= 254))) / max(np.count_nonzero(mid), 1))
    gm_c = [cv2.magnitude(cv2.Sobel(c, cv2.CV_32F, 1, 0), cv2.Sobel(c, cv2.CV_32F, 0, 1)) for c in (r, g, b)]
    u = gm_c[1] - float(cv2.mean(gm_c[1])[0])
    v = 0.5 * (gm_c[0] + gm_c[2])
    v -= float(cv2.mean(v)[0])
    # element-wise sums rather than BLAS dot products: BLAS threads stall on a busy machine
    den = math.sqrt(float(cv2.sumElems(u * u)[0]) * float(cv2.sumElems(v * v)[0]))
    misalign = float(1.0 - float(cv2.sumElems(u * v)[0]) / den) if den > 0 else 0.0

    # palette and posterization
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    unique_colours = float(np.unique(packed[::2, ::2]).size)
    packed_f = packed.astype(np.float32)  # exact: 24-bit integers fit a float32 mantissa
    present = [np.bincount(rgb[..., c].ravel(), minlength=256) > 0 for c in range(3)]
    levels_per_channel = float(np.mean([p.sum() for p in present]))
    inter = np.logical_and.reduce(present).sum()
    union = np.logical_or.reduce(present).sum()
    shared_levels = float(inter / max(union, 1))

    # pixelation: rows / columns repeated exactly
    flat_rows = rgb.reshape(h, -1)
    rows = float(np.mean(np.all(flat_rows[1:] == flat_rows[:-1], axis=1)))
    flat_cols = np.ascontiguousarray(rgb.transpose(1, 0, 2)).reshape(w, -1)
    cols = float(np.mean(np.all(flat_cols[1:] == flat_cols[:-1], axis=1)))
    pixel_dup = min(rows, cols)

    return _rounded(Attributes(
        edge_width=edge_width, edge_residual=edge_residual, detail=detail, anisotropy=anisotropy,
        texture_sigma=texture_sigma,
        noise_sigma=noise_sigma, chroma_noise=chroma_noise, impulse_frac=impulse_frac, blockiness=blockiness,
        mean_luma=mean_luma, clip_low=clip_low, clip_high=clip_high, p05=p05, p95=p95, contrast=contrast,
        halo=halo, colourfulness=colourfulness, saturation=saturation, grey_frac=grey_frac,
        chroma_clip=chroma_clip, misalign=misalign, unique_colours=unique_colours,
        levels_per_channel=levels_per_channel, shared_levels=shared_levels, pixel_dup=pixel_dup,
        flat_blocks=_flat_blocks(rgb, packed_f, mx, mn), copied=_copied(packed_f, y)))


def _rounded(a: Attributes) -> Attributes:
    # OpenCV's SIMD sums depend on buffer alignment in the last bits; 6 significant digits make the
    # measurements (and so the text and the score) identical for identical pixels
    return Attributes(**{k: float(f"{v:.6g}") for k, v in asdict(a).items()})


# -------------------------------------------------------------------------------------------- diagnosis


def _ramp(x: float, lo: float, hi: float) -> float:
    """Soft ramp from ~0.05 at ``lo`` to ~0.95 at ``hi`` (``lo > hi`` makes it decreasing); never exactly 0/1,
    so severities, and the scores built from them, stay continuous."""
    z = (x - 0.5 * (lo + hi)) * (5.9 / (hi - lo))
    return 1.0 / (1.0 + math.exp(-max(min(z, 40.0), -40.0)))


def _lramp(x: float, lo: float, hi: float) -> float:
    """``_ramp`` on a log scale (for quantities that matter by ratio, such as noise sigma)."""
    return _ramp(math.log(max(x, 1e-9)), math.log(lo), math.log(hi))


# detector -> its family (the order is also the order in which they are listed)
DETECTORS: dict[str, str] = {
    "blur_edges": "blur", "blur_detail": "blur", "blur_motion": "blur",
    "noise_chroma": "noise", "noise_luma": "noise", "noise_waxy": "noise", "noise_impulse": "noise",
    "blocking": "compression",
    "palette": "color", "desaturated": "color", "oversaturated": "color", "fringing": "color",
    "dark": "brightness", "bright": "brightness",
    "oversharpened": "sharpness_contrast", "low_contrast": "sharpness_contrast", "high_contrast": "sharpness_contrast",
    "posterized": "spatial", "pixelated": "spatial", "pasted_blocks": "spatial", "jitter": "spatial",
    "displaced": "spatial",
}


def detectors(a: Attributes) -> dict[str, float]:
    """Severity in [0, 1] of each named detector (see ``DETECTORS`` for their families)."""
    quiet_chroma = 1.0 - _ramp(a.chroma_noise, 0.8, 1.6)  # ~1 unless chroma noise is present
    block = _ramp(a.blockiness, 1.12, 2.4)
    posterized = a.levels_per_channel <= 30 and a.shared_levels >= 0.9
    palette = a.unique_colours <= 100 and not posterized
    natural = 0.0 if (posterized or palette) else 1.0  # dithered / posterized images fool the texture detectors
    toned = 1.0 - _ramp(a.halo, 1.2, 1.6)  # clipping from over-sharpening is not an exposure problem
    s = {
        "blur_edges": _ramp(a.edge_width, 3.9, 8.5) * (1.0 - 0.6 * block),
        "blur_detail": min(_ramp(a.edge_residual, 0.32, 0.04), _lramp(a.texture_sigma + 0.05, 1.0, 0.15))
        * (1.0 - 0.6 * block),
        "blur_motion": _ramp(a.anisotropy, 2.3, 4.0) * _ramp(a.edge_residual, 0.5, 0.15) * (1.0 - 0.6 * block),
        "noise_chroma": _lramp(a.chroma_noise, 2.0, 50.0) * natural,
        "noise_luma": _lramp(a.noise_sigma, 2.5, 30.0) * (1.0 - _ramp(a.halo, 1.2, 1.6)) * natural,
        "noise_waxy": _ramp(a.halo, 0.85, 0.6) * _ramp(a.chroma_noise, 0.8, 1.4)
        * (1.0 - _ramp(a.chroma_noise, 4.0, 6.0)) * _ramp(a.edge_residual, 0.8, 1.1) * natural,
        "noise_impulse": _lramp(a.impulse_frac + 1e-4, 0.001, 0.3) * (1.0 - _ramp(a.halo, 1.1, 1.4)) * natural,
        "blocking": block,
        # a palette or posterization is detected with certainty, so it is never below "slight"
        "palette": min(max(0.15 + 0.17 * math.log2(64.0 / max(a.unique_colours, 1.0)), 0.22), 1.0) if palette else 0.0,
        "desaturated": 0.9 if a.grey_frac > 0.98
        else min(_ramp(a.saturation, 0.16, 0.03), _ramp(a.colourfulness, 24.0, 6.0)),
        "oversaturated": max(_ramp(a.chroma_clip, 0.15, 0.8), _ramp(a.saturation, 0.62, 0.95)) * natural,
        "fringing": _ramp(a.misalign, 0.13, 0.4) * quiet_chroma * natural,
        "dark": max(_ramp(a.mean_luma, 0.25, 0.1), _ramp(a.clip_low, 0.08, 0.4)) * toned,
        "bright": max(_ramp(a.mean_luma, 0.66, 0.9), _ramp(a.clip_high, 0.04, 0.35),
                      _ramp(a.p05, 0.30, 0.45) * _ramp(a.p95, 0.85, 0.95)) * toned,
        "oversharpened": max(_ramp(a.halo, 1.2, 2.2),
                             _lramp(a.impulse_frac + 1e-4, 0.002, 0.03) * quiet_chroma * _ramp(a.halo, 1.0, 1.3))
        * natural,
        "low_contrast": min(_ramp(a.contrast, 0.11, 0.06), _ramp(a.p95 - a.p05, 0.4, 0.2)),
        "high_contrast": min(_ramp(a.clip_low, 0.01, 0.06), _ramp(a.clip_high, 0.01, 0.06),
                             _ramp(a.contrast, 0.24, 0.32)) * toned,
        "posterized": min(max(0.15 + 0.4 * (21.0 - a.levels_per_channel) / 13.0, 0.22), 0.9) if posterized else 0.0,
        "pixelated": _ramp(a.pixel_dup, 0.03, 0.6),
        "pasted_blocks": (0.45 + 0.5 * _ramp(a.flat_blocks, 0.01, 0.12)) * _ramp(a.flat_blocks, 0.004, 0.012)
        * (1.0 - block) * natural,
        "jitter": _ramp(a.edge_residual, 1.3, 3.0) * _ramp(a.anisotropy, 1.3, 1.1) * quiet_chroma * natural,
        "displaced": 0.45 * _ramp(a.copied, 0.0006, 0.008) * (1.0 - block) * natural
        * (1.0 - _ramp(a.flat_blocks, 0.004, 0.012)),
    }
    return {k: float(v) for k, v in s.items()}


def diagnose(a: Attributes) -> list[tuple[str, float]]:
    """(family, severity 0..1) for every family, most severe first. Severity below ``CLEAN_BELOW`` = not a problem."""
    fam = {f: 0.0 for f in FAMILIES}
    for name, sev in detectors(a).items():
        f = DETECTORS[name]
        fam[f] = max(fam[f], sev)
    order = {f: i for i, f in enumerate(FAMILIES)}
    return sorted(((f, round(s, 4)) for f, s in fam.items()), key=lambda kv: (-kv[1], order[kv[0]]))


# ------------------------------------------------------------------------------------------------ score

# Hand-set fallback used before any calibration: damage from the worst family plus a share of the others.
DEFAULT_INTERCEPT = 4.6


def _default_score(diagnosis: Sequence[tuple[str, float]]) -> float:
    sev = sorted((s for _, s in diagnosis), reverse=True) + [0.0, 0.0, 0.0]
    damage = sev[0] + 0.4 * sev[1] + 0.2 * sev[2]
    return DEFAULT_INTERCEPT - 3.4 * damage


WORST = "worst_family"  # the extra regressor next to the detectors: the largest severity of all


def _regressors(sev: dict[str, float]) -> dict[str, float]:
    return {**sev, WORST: max(sev.values(), default=0.0)}


def _raw_calibrated(sev: dict[str, float], calibration: dict) -> float:
    x = _regressors(sev)
    return calibration["intercept"] - sum(w * x.get(k, 0.0) for k, w in calibration["weights"].items())


def score_from(a: Attributes, diagnosis: Sequence[tuple[str, float]] | None = None,
               calibration: dict | None = None) -> float:
    """The teacher's own quality score in [1, 5] (continuous, rounded to 2 decimals).

    Without a calibration: ``4.6 - 3.4 * (s1 + 0.4 s2 + 0.2 s3)`` on the sorted family severities. With one
    (from ``AttributeTeacher.fit``): ``intercept - sum_d w_d * severity_d - w_worst * max_d severity_d`` over
    the detectors, then the calibration's monotone piecewise-linear map.
    """
    if calibration is None:
        return round(_soft_range(_default_score(diagnosis if diagnosis is not None else diagnose(a))), 2)
    raw = _raw_calibrated(detectors(a), calibration)
    kx, ky = calibration.get("knots_x") or [], calibration.get("knots_y") or []
    if len(kx) >= 2:
        if raw > kx[-1]:
            return round(_soft_range(ky[-1] + (raw - kx[-1]), lo=ky[-1], hi=ky[-1]), 2)
        if raw < kx[0]:
            return round(_soft_range(ky[0] + (raw - kx[0]), lo=ky[0], hi=ky[0]), 2)
        raw = float(np.interp(raw, kx, ky))
    return round(_soft_range(raw), 2)


def _soft_range(x: float, lo: float = 1.5, hi: float = 4.5) -> float:
    """Identity on [lo, hi]; outside, an exponential approach to 1 (below) or 5 (above) with slope 1 at the
    joint. Scores keep their order near the ends instead of piling up on a clipped 1.00 or 5.00."""
    if x < lo:
        span = max(lo - 1.0, 1e-3)
        return 1.0 + span * math.exp((x - lo) / span)
    if x > hi:
        span = max(5.0 - hi, 1e-3)
        return 5.0 - span * math.exp(-(x - hi) / span)
    return x


def _isotonic(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing fit of y (ordered by x), returned in x's sorted order."""
    order = np.argsort(x, kind="stable")
    vals, wts, sizes = [], [], []
    for v in y[order]:
        vals.append(float(v)); wts.append(1.0); sizes.append(1)
        while len(vals) > 1 and vals[-2] > vals[-1]:
            w = wts[-2] + wts[-1]
            vals[-2] = (vals[-2] * wts[-2] + vals[-1] * wts[-1]) / w
            wts[-2] = w
            sizes[-2] += sizes[-1]
            vals.pop(); wts.pop(); sizes.pop()
    return np.repeat(vals, sizes)


LINEAR_SHARE = 0.3


def fit_calibration(severities: Sequence[dict[str, float]], mos: Sequence[float], n_knots: int = 12,
                    ridge: float = 0.005) -> dict:
    """Fit the score: MOS ~ intercept - sum_d w_d * severity_d - w_worst * worst severity, with every w >= 0
    (more damage never raises the score) by non-negative least squares with a small ridge (``ridge`` per
    image) that keeps weights of correlated detectors from running off; then an isotonic (monotone) map of
    that linear score on ``n_knots`` quantile knots, blended 70/30 with the linear score itself so that it
    stays strictly increasing. Returns a JSON-able calibration dict."""
    from scipy.optimize import nnls
    from scipy.stats import spearmanr

    names = [*DETECTORS, WORST]
    rows = [_regressors(s) for s in severities]
    S = np.array([[r.get(k, 0.0) for k in names] for r in rows], dtype=np.float64)
    m = np.asarray(mos, dtype=np.float64)
    if len(m) < 20 or len(m) != len(S):
        raise QPonderError(f"attribute teacher fit needs at least 20 images with MOS (got {len(m)} images, "
                           f"{len(severities)} measured)")
    if not np.all(np.isfinite(m)):
        raise QPonderError("attribute teacher fit: MOS values must be finite numbers")
    # columns: intercept and minus each regressor; ridge rows shrink the weights (not the intercept)
    X = np.hstack([np.ones((len(m), 1)), -S])
    k = S.shape[1]
    penalty = np.hstack([np.zeros((k, 1)), math.sqrt(ridge * len(m)) * np.eye(k)])
    coef, _ = nnls(np.vstack([X, penalty]), np.concatenate([m, np.zeros(k)]))
    raw = X @ coef
    fitted = _isotonic(raw, m)
    xs = np.sort(raw)
    qs = np.linspace(0.0, 1.0, n_knots)
    idx = np.minimum((qs * (len(xs) - 1)).round().astype(int), len(xs) - 1)
    kx, ky = [], []
    for i in idx:
        if kx and xs[i] <= kx[-1] + 1e-6:
            continue
        kx.append(float(xs[i]))
        ky.append(float(fitted[i]))
    # blend with the linear score (already on the MOS scale) so that no stretch of the map is nearly flat:
    # slope >= LINEAR_SHARE everywhere, so distinct measurements keep distinct scores
    ky = [(1.0 - LINEAR_SHARE) * yv + LINEAR_SHARE * xv for xv, yv in zip(kx, ky)]
    cal = {
        "method": "nnls-ridge+isotonic",
        "ridge": ridge,
        "intercept": float(coef[0]),
        "weights": {k: round(float(w), 4) for k, w in zip(names, coef[1:]) if w > 0},
        "knots_x": [round(v, 4) for v in kx],
        "knots_y": [round(v, 4) for v in ky],
        "n": int(len(m)),
    }
    pred = np.clip(np.interp(raw, kx, ky), 1, 5)
    cal["fit_srcc"] = round(float(spearmanr(pred, m)[0]), 4)
    cal["fit_rmse"] = round(float(np.sqrt(np.mean((pred - m) ** 2))), 4)
    return cal


# ------------------------------------------------------------------------------------------------- text
#
# Neutral sentences (an attribute with nothing wrong) use no word of any family in qponder.lexicon, so the
# family a text names most is the family the teacher diagnosed. Problem sentences use their family's words
# only. ``{sev}`` is a severity word from SEVERITY_WORDS, ``{a_sev}`` the same with "a"/"an".

ASPECTS = ("sharpness", "noise", "compression", "exposure", "contrast", "colour", "structure")
_ASPECT_OF = {
    "blur_edges": "sharpness", "blur_detail": "sharpness", "blur_motion": "sharpness", "oversharpened": "sharpness",
    "noise_chroma": "noise", "noise_luma": "noise", "noise_waxy": "noise", "noise_impulse": "noise",
    "blocking": "compression",
    "dark": "exposure", "bright": "exposure",
    "low_contrast": "contrast", "high_contrast": "contrast",
    "palette": "colour", "desaturated": "colour", "oversaturated": "colour", "fringing": "colour",
    "posterized": "structure", "pixelated": "structure", "pasted_blocks": "structure", "jitter": "structure",
    "displaced": "structure",
}

_OPENERS = (
    "Let me inspect the low-level attributes one at a time.",
    "I will go through the technical attributes in turn before judging.",
    "Checking the picture attribute by attribute.",
    "First the technical attributes, then the verdict.",
    "I look at the image step by step.",
    "",
)

_NEUTRAL = {
    "sharpness": ("Edges are crisp and fine detail is well resolved.",
                  "Sharpness is good: outlines are clean and small textures are resolved.",
                  "Focus looks accurate; small structures are clearly defined.",
                  "Detail holds up well, with well-defined edges."),
    "noise": ("Smooth areas are clean and even.",
              "Flat regions look clean, without random pixel fluctuations.",
              "Uniform regions are free of random pixel variation.",
              "Plain surfaces render cleanly."),
    "compression": ("There are no coding artefacts along edges or in gradients.",
                    "No sign of lossy coding: gradients stay smooth and edges stay clean.",
                    "Coding artefacts are absent.",
                    "Gradients are continuous, with no tiling from lossy coding."),
    "exposure": ("Tones are well placed; shadows and highlights both hold detail.",
                 "The tonal level is balanced, neither murky nor glaring.",
                 "Highlights and shadows keep their detail.",
                 "The overall tonal level is appropriate for the scene."),
    "contrast": ("Tonal separation looks natural.",
                 "The tonal range is full without looking harsh.",
                 "Midtones are well separated and the tonal range is natural.",
                 "Light and dark parts are separated naturally."),
    "colour": ("Tints look natural and plausible.",
               "The chromatic rendition is natural.",
               "Tints are natural, neither drained nor garish.",
               "Chromatic rendering looks faithful."),
    "structure": ("The geometry of the scene is intact.",
                  "Shapes and regions are intact, with nothing pasted or shifted.",
                  "Structures are continuous and undisturbed.",
                  ""),
}

# detector -> (aspect sentences, noun phrase for the summary, impact phrases); all in the detector's family words
_PROBLEM = {
    "blur_edges": (("Edges are soft and spread over several pixels: {a_sev} blur.",
                    "Outlines are wide and soft, which points to {a_sev} blur.",
                    "The image is blurred; even the strongest edges are smeared ({sev})."),
                   "blur", ("fine textures and small details are lost, so the subject looks out of focus",
                            "small structures merge together and the whole scene looks blurry")),
    "blur_detail": (("Fine texture is largely gone and edges carry little crisp detail: {a_sev} blur.",
                     "There is a loss of fine detail across the frame, {a_sev} blur.",
                     "Textures are smeared and edges lack crispness, {a_sev} blur."),
                    "blur", ("textures that should be crisp are smeared, so the content looks blurry",
                             "the loss of fine detail flattens surfaces and makes the subject look out of focus")),
    "blur_motion": (("Detail is smeared in one direction, the streaking of motion blur ({sev}).",
                     "Edges are stretched along one direction: {a_sev} motion blur.",
                     "A directional smear runs through the frame, {a_sev} motion blur."),
                    "motion blur", ("edges are doubled and streaked, so the subject looks blurred",
                                    "shapes are smeared along the motion, losing fine detail")),
    "oversharpened": (("Edges carry bright and dark halos from aggressive sharpening: {a_sev} oversharpening.",
                       "Outlines look oversharpened, with halos along every edge ({sev}).",
                       "Sharpening has been overdone; halos surround edges ({sev})."),
                      "oversharpened edges", ("halos outline every object and textures look harsh and artificial",
                                              "the halos make edges look harsh and the image artificial")),
    "noise_chroma": (("Flat areas are covered in random coloured grain, a sign of {sev} noise.",
                      "Random grain covers smooth regions: {sev} noise.",
                      "The image is noisy; smooth areas show {sev} grain."),
                     "noise", ("the grain sits on smooth regions and masks fine texture",
                               "the noise makes surfaces look grainy and hides small details")),
    "noise_luma": (("Smooth regions show random grain: {sev} noise.",
                    "There is {sev} noise: plain surfaces look grainy.",
                    "The image is noisy, with {sev} grain in flat areas."),
                   "noise", ("the grain sits on smooth regions and masks fine texture",
                             "the noise makes surfaces look grainy and hides small details")),
    "noise_waxy": (("Surfaces look waxy and over-smoothed, with blotchy leftover noise ({sev} denoising damage).",
                    "Textures are over-smoothed by denoising and look waxy ({sev}).",
                    "Heavy denoising has left waxy, over-smoothed surfaces ({sev})."),
                   "over-smoothing from denoising", ("natural texture is replaced by a waxy, painted look",
                                               "surfaces look plastic and waxy, with residual noise blotches")),
    "noise_impulse": (("Isolated black and white dots are scattered over the frame: {sev} salt-and-pepper noise.",
                       "There is {sev} impulse noise, isolated specks all over the image.",
                       "Salt-and-pepper specks are sprinkled across the frame ({sev})."),
                      "impulse noise", ("the noisy specks distract from the content and break up smooth areas",
                                        "isolated noisy pixels pepper the scene and disturb every region")),
    "blocking": (("Smooth gradients break into 8x8 blocks with hard borders: {sev} JPEG compression.",
                  "There are block artifacts and ringing around edges from {sev} compression.",
                  "The image is blocky, with {sev} compression damage."),
                 "JPEG compression", ("blocking breaks up gradients and edges show ringing",
                                 "block artifacts tile the smooth areas and detail is lost to compression")),
    "palette": (("Smooth transitions are replaced by a small dithered palette: {sev} colour quantization.",
                 "Only a few colours remain, with dithering: {sev} colour quantization.",
                 "Colour quantization is {sev}; gradients turn into dithered patches of a few colours."),
                "colour quantization", ("gradients become dithered patches and subtle colour transitions are lost",
                                        "the reduced colour palette makes shading look coarse")),
    "desaturated": (("Colour is drained toward grey, {a_sev} loss of saturation.",
                     "The image looks desaturated ({sev}); tints are pale or missing.",
                     "Saturation is far too low; the colour is desaturated ({sev})."),
                    "desaturated colour", ("the scene looks dull and lifeless because colour is missing",
                                           "objects lose their colour identity and the image looks drab")),
    "oversaturated": (("Colours are pushed beyond natural levels and clip: {sev} oversaturated colour.",
                       "The image is oversaturated ({sev}); hues look garish.",
                       "Saturation is exaggerated, {sev} oversaturated colour with clipped channels."),
                      "oversaturated colour", ("garish colour hides shading detail and looks unnatural",
                                               "colour clipping flattens surfaces and false colours appear")),
    "fringing": (("Edges show colour fringing where the channels do not line up, {a_sev} colour shift.",
                  "There is {a_sev} colour shift; contours carry coloured fringes.",
                  "Colour fringing runs along the edges ({sev})."),
                 "colour fringing", ("false colours along contours make the image look misregistered",
                                     "colour fringing traces every edge and distracts from the content")),
    "dark": (("The frame is too dark and the shadows are crushed ({sev}).",
              "The image is underexposed, with {a_sev} loss of shadow detail.",
              "Exposure is too low; dark areas turn into crushed shadows ({sev})."),
             "underexposure that leaves the frame too dark",
             ("detail disappears in crushed shadows and the scene is hard to read",
                               "crushed shadows hide much of the content")),
    "bright": (("The image is too bright, with clipped highlights ({sev}).",
                "It is overexposed; {a_sev} excess of brightness washes the tones.",
                "Exposure is too high; highlights are clipped and tones look washed out ({sev})."),
               "overexposure with clipped highlights", ("clipped highlights erase detail in bright regions",
                                "the washed out tones remove detail from the brighter parts")),
    "low_contrast": (("Tones are flat, {a_sev} loss of contrast.",
                      "The image has low contrast ({sev}); everything sits in the midtones.",
                      "Contrast is weak, with flat tones ({sev})."),
                     "low contrast", ("flat tones make the subject hard to separate from the background",
                                      "the lack of contrast makes the scene look dull and veiled")),
    "high_contrast": (("Contrast is exaggerated, with both ends of the tonal range pushed out ({sev}).",
                       "The image has high contrast ({sev}) and harsh edges.",
                       "Tones are pushed to the extremes, {a_sev} excess of contrast."),
                      "high contrast", ("harsh contrast loses the gradations in shadows and highlights",
                                        "the contrast is so strong that midtone detail is lost")),
    "posterized": (("Gradients collapse into a few flat steps: {sev} posterized banding.",
                    "The image is posterized ({sev}); smooth shading turns into banding.",
                    "Banding replaces smooth shading, {a_sev} posterization effect."),
                   "posterized banding", ("banding replaces smooth shading and flattens volumes",
                                          "the posterized steps make surfaces look like flat cut-outs")),
    "pixelated": (("Detail is rendered in visible square pixels, {sev} pixelation.",
                   "The image is pixelated ({sev}); edges form staircases.",
                   "Pixelation is {sev}, with blocks of repeated pixels."),
                  "pixelation", ("pixelation turns edges into staircases and hides fine detail",
                                 "the pixelated rendering makes the content look coarse")),
    "pasted_blocks": (("Uniform squares of foreign paint are pasted over the content, {a_sev} mosaic defect.",
                       "Solid rectangles cover parts of the scene like a mosaic ({sev}).",
                       "A mosaic of flat, unrelated squares hides parts of the image ({sev})."),
                      "mosaic of pasted squares", ("the mosaic of pasted squares hides parts of the content entirely",
                                                   "the mosaic squares cover the scene and break its continuity")),
    "jitter": (("Pixels are scattered around edges: {sev} jitter that leaves outlines misaligned.",
                "Edges are ragged from jitter ({sev}).",
                "There is {sev} jitter; contours look misaligned and broken."),
               "jitter", ("outlines look ragged and misaligned, and textures turn to crumbs",
                          "the jitter breaks edges and makes the content look unstable")),
    "displaced": (("Small square patches are shifted by a few pixels, leaving displaced patches with seams ({sev}).",
                   "Some regions contain displaced patches, misaligned with their surroundings ({sev}).",
                   "Misaligned patches interrupt edges here and there ({sev})."),
                  "displaced patches", ("misaligned seams break lines that should be continuous",
                                        "the displaced patches disturb the continuity of edges")),
}

_DOMINANT = (
    "The dominant problem: {sev} {noun}",
    "Above all, the image suffers from {sev} {noun}",
    "Main defect: {sev} {noun}",
    "What limits this image most is {sev} {noun}",
)
# The sentences that carry the teacher's decisions, for the SFT recipe's ``loss_weights``: the dominant problem
# (or that there is none), the closing quality word, and the answer. tests/test_sft_weighting.py keeps them in step
# with the phrase bank above and below.
DIAGNOSIS_PATTERN = (r"((?:The dominant problem:|Above all, the image suffers from|Main defect:|What limits this "
                     r"image most is|No defects? stands? out|Nothing in particular degrades|I find no clear defect)"
                     r"[^.]*\.)")
VERDICT_PATTERN = r"([^.]*\.)</think>"
ANSWER_PATTERN = r"<answer>.*?</answer>"
_ALSO = (", together with {sev} {noun}", ", plus {sev} {noun}", "; there is also {sev} {noun}")
_IMPACT = ("As a result, {impact}.", "Its impact on the content: {impact}.", "Consequently, {impact}.",
           "In practice, {impact}.")
_CLEAN = ("No defect stands out; the image looks clean.", "Nothing in particular degrades this picture.",
          "No defects stand out; it looks like a pristine capture.", "I find no clear defect.")
_CONCLUDE = ("Overall the quality is {q}.", "Taking everything into account, the quality is {q}.",
             "My overall judgement: {q} quality.", "In sum, this is {a_q} image.")
# Said when a secondary problem is named as often as the dominant one. Each at most once: a trace that repeats
# one sentence teaches the student a loop (stop 3's CI looped on "Again, ..." in all 63 of its unparsed answers).
_RESTATE = ("Again, the {noun} is what matters most here.", "Above everything else it is the {noun} that counts.",
            "The {noun} outweighs the rest.", "So the {noun} decides my verdict.")
_HINT_GAP = ("The overall impression is somewhat {dir} than the individual measurements alone suggest.",
             "Judged as a whole, the picture reads a little {dir} than these measurements alone suggest.")


def severity_level(s: float) -> int:
    """Severity in [0, 1] -> KADID-style level 1..5 (the keys of ``SEVERITY_WORDS``)."""
    return 1 if s < 0.2 else 2 if s < 0.4 else 3 if s < 0.6 else 4 if s < 0.8 else 5


def quality_word(score: float) -> str:
    return QUALITY_WORDS[0 if score >= 4.2 else 1 if score >= 3.4 else 2 if score >= 2.6 else 3 if score >= 1.8 else 4]


def _article(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _fill(template: str, sev: str, **kw) -> str:
    return template.format(sev=sev, a_sev=_article(sev), **kw)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _dominant_family(text: str) -> str | None:
    m = family_mentions(text)
    best = max(m.values())
    if best == 0:
        return None
    top = [f for f, c in m.items() if c == best]
    return top[0] if len(top) == 1 else None


def write_reasoning(sev: dict[str, float], diagnosis: Sequence[tuple[str, float]], score: float,
                    rng: random.Random, hint_shift: float = 0.0, diagnosis_first: bool = True) -> str:
    """The rationale for detector severities ``sev`` and their ``diagnosis``, concluding with ``score``.

    ``diagnosis_first``: state the dominant problem (and its impact) before the attribute-by-attribute survey.
    With the survey first, every later sentence can be copied from the text before it, so a student trained on
    the traces learns to write them without looking; leading with the diagnosis puts the one decision that needs
    the image where nothing in the text can answer it.
    """
    problems = [(f, s) for f, s in diagnosis if s >= CLEAN_BELOW]
    # the worst detector of each problem family is the one that gets described
    worst: dict[str, str] = {}
    for name, s in sorted(sev.items(), key=lambda kv: -kv[1]):
        worst.setdefault(DETECTORS[name], name)
    shown = {worst[f]: s for f, s in problems[:3]}
    by_aspect: dict[str, tuple[str, float]] = {}
    for name, s in shown.items():
        asp = _ASPECT_OF[name]
        if asp not in by_aspect or s > by_aspect[asp][1]:
            by_aspect[asp] = (name, s)

    def sev_word(s: float) -> str:
        return rng.choice(SEVERITY_WORDS[severity_level(s)])

    opener = rng.choice(_OPENERS)  # drawn first, so that both orders phrase every sentence alike
    survey = []
    for asp in ASPECTS:
        if asp in by_aspect:
            name, s = by_aspect[asp]
            survey.append(_cap(_fill(rng.choice(_PROBLEM[name][0]), sev_word(s))))
        else:
            survey.append(rng.choice(_NEUTRAL[asp]))
    if problems:
        first = worst[problems[0][0]]
        line = _fill(rng.choice(_DOMINANT), sev_word(problems[0][1]), noun=_PROBLEM[first][1])
        for f, s in problems[1:3]:
            line += _fill(rng.choice(_ALSO), sev_word(s), noun=_PROBLEM[worst[f]][1])
        verdict = [line + ".", rng.choice(_IMPACT).format(impact=rng.choice(_PROBLEM[first][2]))]
    else:
        verdict = [rng.choice(_CLEAN)]
    parts = [opener] + (verdict + survey if diagnosis_first else survey + verdict)
    if abs(hint_shift) >= 0.5:
        parts.append(rng.choice(_HINT_GAP).format(dir="better" if hint_shift > 0 else "worse"))
    q = quality_word(score)
    parts.append(rng.choice(_CONCLUDE).format(q=q, a_q=_article(q)))
    text = " ".join(p for p in parts if p)
    if problems:  # the family named most must be the diagnosed one; say it once more if a secondary one ties
        fam, noun = problems[0][0], _PROBLEM[worst[problems[0][0]]][1]
        if _dominant_family(text) != fam:  # drawn only here, so other traces keep their phrasing
            conclusion = parts[-1]
            for line in rng.sample(_RESTATE, len(_RESTATE)):
                text = text[: len(text) - len(conclusion)] + line.format(noun=noun) + " " + conclusion
                if _dominant_family(text) == fam:
                    break
    return text


def lead_with(diagnosis: Sequence[tuple[str, float]], family: str) -> list[tuple[str, float]]:
    """``diagnosis`` led by a labelled ``family`` ("a+b" for a compound, "none" for a reference).

    The labelled families go first, none below "slight" and the first at least as severe as the teacher's own
    worst family, so the reasoning names the label's family; "none" brings every family under ``CLEAN_BELOW``.
    The other families keep the teacher's measured severities and order.
    """
    own = dict(diagnosis)
    if family == "none":
        return [(f, min(s, round(CLEAN_BELOW * 0.99, 4))) for f, s in diagnosis]
    wanted = family.split("+")
    unknown = [f for f in wanted if f not in own]
    if unknown:
        raise QPonderError(f"family hint {family!r}: {', '.join(unknown)} is not one of the teacher's families "
                           f"({', '.join(FAMILIES)}, or 'none')")
    top = max(own.values())
    lead = sorted(wanted, key=lambda f: -own[f])
    head = [(f, max(own[f], CLEAN_BELOW, top if i == 0 else 0.0)) for i, f in enumerate(lead)]
    return head + [(f, s) for f, s in diagnosis if f not in wanted]


# ---------------------------------------------------------------------------------------------- teacher


def image_key(image) -> int:
    """A stable integer from the pixels (and size) of an image, used to seed the phrasing."""
    rgb = _rgb(image)
    h = hashlib.sha1(np.ascontiguousarray(rgb).tobytes())
    h.update(str(rgb.shape).encode())
    return int.from_bytes(h.digest()[:8], "little")


class AttributeTeacher:
    """Offline teacher: classical attribute measurements -> expert-style reasoning -> its own score.

    ``use_mos_hint``: when True and ``describe`` gets a MOS, the final score moves ``hint_weight`` of the way
    from the teacher's own score to the MOS (the reasoning stays the teacher's own). ``family_hint``: when True
    and ``describe`` gets a distortion family label, the reasoning leads with that family (``lead_with``) while
    the score stays the teacher's own, so a MOS filter keeps the same images (STaR's rationalisation: the
    label tells the teacher what to explain, not what to score). ``seed`` changes the
    phrasing (not the measurements). ``diagnosis_first`` (the default): the verdict leads the reasoning, see
    ``write_reasoning``. ``calibration``: a dict from ``fit`` (or ``fit_calibration``); None uses
    the hand-set default mapping.
    """

    name = "attribute"

    def __init__(self, use_mos_hint: bool = False, seed: int = 0, calibration: dict | None = None,
                 hint_weight: float = 0.8, diagnosis_first: bool = True, family_hint: bool = False):
        if not 0.0 <= hint_weight <= 1.0:
            raise QPonderError(f"hint_weight must be in [0, 1] (got {hint_weight})")
        self.use_mos_hint = bool(use_mos_hint)
        self.seed = int(seed)
        self.calibration = calibration
        self.hint_weight = float(hint_weight)
        self.diagnosis_first = bool(diagnosis_first)
        self.family_hint = bool(family_hint)

    def assess(self, image) -> dict:
        """Everything the teacher concludes about one image: attributes, detector severities, diagnosis, score."""
        a = measure(image)
        sev = detectors(a)
        diag = diagnose(a)
        return {"attributes": a, "severities": sev, "diagnosis": diag,
                "score": score_from(a, diag, self.calibration)}

    def describe(self, image: Image.Image, mos: float | None = None, family: str | None = None) -> str:
        """``<think>reasoning</think><answer>score</answer>`` for one image (pixels, and the hints the class doc
        names when they are switched on)."""
        r = self.assess(image)
        score = r["score"]
        diagnosis = lead_with(r["diagnosis"], family) if self.family_hint and family else r["diagnosis"]
        shift = 0.0
        if self.use_mos_hint and mos is not None:
            target = min(max(float(mos), 1.0), 5.0)
            shift = self.hint_weight * (target - score)
            score = round(min(max(score + shift, 1.0), 5.0), 2)
        rng = random.Random(image_key(image) ^ (self.seed * 0x9E3779B97F4A7C15 & (2 ** 64 - 1)))
        text = write_reasoning(r["severities"], diagnosis, score, rng, hint_shift=shift,
                               diagnosis_first=self.diagnosis_first)
        return format_answer(score, text)

    def fit(self, images: Iterable, mos: Sequence[float], n_knots: int = 12) -> dict:
        """Calibrate the score on labelled images (use a TRAIN split only); sets and returns ``calibration``."""
        sev = [detectors(measure(im)) for im in images]
        self.calibration = fit_calibration(sev, list(mos), n_knots=n_knots)
        return self.calibration


def phrase_bank() -> list[str]:
    """Every sentence template this teacher writes with, so a small student's tokenizer can learn its words."""
    out: list[str] = []

    def walk(x) -> None:
        if isinstance(x, str):
            if " " in x:
                out.append(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (tuple, list)):
            for v in x:
                walk(v)

    for name in ("_OPENERS", "_NEUTRAL", "_PROBLEM", "_DOMINANT", "_ALSO", "_IMPACT", "_CLEAN", "_CONCLUDE", "_HINT_GAP"):
        walk(globals()[name])
    return out
