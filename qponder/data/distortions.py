"""The 25 KADID-10k distortion types at KADID's 5 levels, one small function per type.

Definitions follow KADID-10k (Lin, Hosu, Saupe, QoMEX 2019) and its MATLAB generator ``imdist_generator.m``,
re-written here in numpy/OpenCV/Pillow (no code copied). Level 1 is the mildest; every function maps a
uint8 HxWx3 RGB image to a new one of the same shape and draws randomness only from the ``rng`` it is given,
so a seed fixes the output.

Where the numbers come from
---------------------------
*All 125 per-level parameters* are the ``levels`` vectors of the released ``imdist_generator.m`` (the file
that also generated KADIS-700k), read from public copies of it; none is estimated. The *formulas* come from
the released per-type ``.m`` files where we could read them ("m-file" below), otherwise from the MATLAB
toolbox calls they are built on, as documented by MathWorks and as reproduced by the ARNIQA port of
KADID's distortions ("toolbox").

====  ======================  ===============================  ==========================  ===========
id    name                    params, level 1 .. 5             unit                        formula
====  ======================  ===============================  ==========================  ===========
 1    gaussian_blur           0.1  0.5  1  2  5                Gaussian sigma (px)         toolbox
 2    lens_blur               1  2  4  6  8                    disk radius (px)            toolbox
 3    motion_blur             1  2  4  6  10                   line length (px)            toolbox
 4    color_diffusion         1  3  6  8  12                   chroma blur 1.5a+2, gain a  m-file
 5    color_shift             1  3  6  8  12                   green shift (px)            m-file (*)
 6    color_quantization      64  48  32  16  8                palette colours             m-file
 7    saturation_hsv          0.4  0.2  0.1  0  -0.4           HSV saturation factor       toolbox
 8    saturation_lab          1  2  3  6  9                    Lab chroma factor           m-file
 9    jpeg2000                16  32  45  120  400             compression ratio           m-file
10    jpeg                    43  36  24  7  4                 quality                     m-file
11    white_noise             .001 .002 .003 .005 .01          variance on [0, 1]          toolbox
12    white_noise_ycbcr       .0001 .0005 .001 .002 .003       variance on [0, 1]          m-file
13    impulse_noise           .001 .005 .01 .02 .03            salt & pepper density       m-file
14    multiplicative_noise    .001 .005 .01 .02 .05            speckle variance            m-file
15    denoising               .01 .03 .05 .1 .15               noise variance, then DnCNN  m-file
16    brighten                0.1  0.2  0.4  0.7  1.1          tone-curve amount           m-file
17    darken                  0.05  0.1  0.2  0.4  0.8         tone-curve amount           toolbox
18    mean_shift              0.15  0.08  0  -0.08  -0.15      offset on [0, 1]            toolbox
19    jitter                  0.05  0.1  0.2  0.5  1           offset std (px), 5 rounds   m-file (*)
20    non_eccentricity_patch  20  40  60  80  100              16x16 patches moved         m-file
21    pixelate                0.01  0.05  0.1  0.2  0.5        strength (scale .95-s^.6)   m-file
22    quantization            20  16  13  10  7                Otsu thresholds             m-file
23    color_block             2  4  6  8  10                   32x32 random-colour blocks  m-file
24    high_sharpen            1  2  3  6  12                   unsharp amount (radius 3)   m-file
25    contrast_change         0.3  0.15  0  -0.4  -0.6         contrast-curve amount       m-file
====  ======================  ===============================  ==========================  ===========

(*) the m-file calls helpers we could not read (``gradmag1``/``ps2``/``imshift``/``imblend`` for colour
shift, ``imscatter`` for jitter) and the shared ``curves`` tone-curve helper; those follow ARNIQA's port.

Approximations (MATLAB toolbox pieces we cannot call), each chosen to keep the same effect:
- ``denoising``: KADID denoises with MATLAB's pretrained DnCNN per channel; we use OpenCV's non-local means
  with a filter strength tied to the added noise (DnCNN is neither available nor fast on CPU).
- ``color_quantization``: MATLAB ``rgb2ind`` (minimum-variance palette + Floyd-Steinberg dither) becomes
  Pillow's median-cut palette + Floyd-Steinberg dither.
- ``quantization``: MATLAB ``multithresh`` searches multi-level Otsu thresholds numerically; we compute the
  exact multi-level Otsu optimum on the 256-bin histogram by dynamic programming.
- ``lens_blur`` / ``motion_blur`` kernels: our own anti-aliased disk (super-sampled pixel coverage) and
  anti-aliased line (tent profile across the line), matching ``fspecial('disk'|'motion')`` in support and
  weight to within anti-aliasing details. Motion direction is uniform in [0, 180) degrees.
- ``jpeg`` / ``jpeg2000``: Pillow's libjpeg / OpenJPEG instead of MATLAB's ``imwrite``; the quality factors
  and compression ratios are KADID's (libjpeg's quality scale is the one MATLAB uses; OpenJPEG's ``rates``
  are the same raw-size/compressed-size ratio as MATLAB's ``CompressionRatio``). JPEG keeps Pillow's default
  4:2:0 chroma subsampling.
- Lab/HSV/YCbCr conversions use scikit-image / BT.601 formulas (MATLAB's ``rgb2lab`` etc. are D65/sRGB and
  BT.601 too), so these differ from KADID only by float rounding.
- KADID's generator min-max stretches every input and output (``mapmm``). For a well-exposed photo that is
  a no-op, and in a chain it would undo earlier steps, so we skip it everywhere except ``mean_shift``, whose
  visible effect depends on it (see there).

Identity levels (KADID's own parameters make these no-ops on a uint8 image; KADID still rated them, at
4.6 MOS, and they are kept so the 5 levels line up with KADID's labels): ``gaussian_blur`` 1 (sigma 0.1),
``motion_blur`` 1 (length 1), ``saturation_lab`` 1 (factor 1), ``mean_shift`` 3 (shift 0). See
``IDENTITY_LEVELS``.

Severity grows with level for every type except ``mean_shift`` (+0.15 ... -0.15: the middle level is the
identity, KADID's MOS peaks there) and ``contrast_change`` (+0.3 ... -0.6: more contrast, then less; KADID's
MOS peaks at level 3). See ``NON_MONOTONE``.
"""

from __future__ import annotations

import io
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable, Sequence

import cv2
import numpy as np
from PIL import Image
from scipy.interpolate import CubicSpline
from skimage import color as skcolor

from qponder.errors import QPonderError

FAMILIES: tuple[str, ...] = ("blur", "color", "compression", "noise", "brightness", "spatial", "sharpness_contrast")
LEVELS: tuple[int, ...] = (1, 2, 3, 4, 5)
MIN_SIDE = 48  # non_eccentricity_patch needs a 16-px patch plus a 16-px margin on each side

IDENTITY_LEVELS: frozenset[tuple[str, int]] = frozenset(
    {("gaussian_blur", 1), ("motion_blur", 1), ("saturation_lab", 1), ("mean_shift", 3)}
)
NON_MONOTONE: frozenset[str] = frozenset({"mean_shift", "contrast_change"})

Fn = Callable[[np.ndarray, object, np.random.Generator], np.ndarray]


@dataclass(frozen=True)
class Distortion:
    name: str
    kadid_id: int
    kadid_name: str
    family: str
    params: tuple
    fn: Fn


DISTORTIONS: dict[str, Distortion] = {}


def register(name: str, kadid_id: int, kadid_name: str, family: str, params: tuple) -> Callable[[Fn], Fn]:
    def add(fn: Fn) -> Fn:
        # registration mistakes are programming errors: fail at import, not at the first image
        if family not in FAMILIES or len(params) != len(LEVELS):
            raise ValueError(f"{name}: family must be one of {FAMILIES} and params must have {len(LEVELS)} levels")
        if name in DISTORTIONS or kadid_id in {d.kadid_id for d in DISTORTIONS.values()}:
            raise ValueError(f"{name} (KADID id {kadid_id}) is registered twice")
        DISTORTIONS[name] = Distortion(name, kadid_id, kadid_name, family, tuple(params), fn)
        return fn

    return add


# ----------------------------------------------------------------------------------------------- helpers


def _f(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / 255.0


def _u8(x: np.ndarray) -> np.ndarray:
    # MATLAB's im2uint8 rounds to nearest; doing the same keeps tiny changes from biasing brightness
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def _odd(sigma: float) -> int:
    # the kernel size fspecial/imgaussfilt use for a Gaussian of this sigma
    return 2 * math.ceil(2 * sigma) + 1


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    k = _odd(sigma)
    return cv2.GaussianBlur(np.ascontiguousarray(x), (k, k), sigma, borderType=cv2.BORDER_REPLICATE)


def _filter(x: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    # imfilter(..., 'replicate') correlates; so does filter2D
    return cv2.filter2D(x, -1, kernel.astype(np.float32), borderType=cv2.BORDER_REPLICATE)


def _rgb2lab(x: np.ndarray) -> np.ndarray:
    return skcolor.rgb2lab(x)


def _lab2rgb(lab: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # strongly scaled chroma leaves the gamut on purpose; skimage's clipping note is expected
        warnings.filterwarnings("ignore", message=".*negative Z values.*")
        return skcolor.lab2rgb(lab)


def _mapmm(x: np.ndarray) -> np.ndarray:
    lo, hi = float(x.min()), float(x.max())
    return (x - lo) / (hi - lo) if hi > lo else x


def _curve(ys: Sequence[float]) -> CubicSpline:
    """KADID's ``curves``: a not-a-knot spline (MATLAB ``spline``) through (0,0), control points, (1,1)."""
    xs = (0.5,) if len(ys) == 1 else (0.3, 0.5, 0.7)
    ctrl = tuple(ys) if len(ys) == 1 else (ys[0], 0.5, ys[1])
    return CubicSpline((0.0, *xs, 1.0), (0.0, *ctrl, 1.0), bc_type="not-a-knot")


def _tone_lut(img: np.ndarray, spline: CubicSpline) -> np.ndarray:
    # a tone curve on uint8 is a 256-entry table: exact and far cheaper than evaluating per pixel
    lut = _u8(spline(np.arange(256) / 255.0))
    return lut[img]


@lru_cache(maxsize=None)
def _disk_kernel(radius: float, sub: int = 16) -> np.ndarray:
    # pixel weight = fraction of the pixel square inside the disk, estimated on a sub x sub grid
    c = math.ceil(radius - 0.5)
    offs = (np.arange(sub) + 0.5) / sub - 0.5
    grid = np.arange(-c, c + 1)
    px = (grid[:, None] + offs[None, :]).ravel()
    inside = (px[:, None] ** 2 + px[None, :] ** 2) <= radius**2
    k = inside.reshape(2 * c + 1, sub, 2 * c + 1, sub).mean(axis=(1, 3))
    k /= k.sum()
    k.setflags(write=False)  # cached and shared between calls
    return k


def _line_kernel(length: float, angle_deg: float) -> np.ndarray:
    # weight falls off linearly with distance from a centred segment of the given length (1-px wide line)
    half = (max(length, 1.0) - 1.0) / 2.0
    r = math.ceil(half) + 1
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    d = np.array([math.cos(math.radians(angle_deg)), -math.sin(math.radians(angle_deg))])
    t = np.clip(xx * d[0] + yy * d[1], -half, half)
    dist = np.hypot(xx - t * d[0], yy - t * d[1])
    k = np.clip(1.0 - dist, 0.0, None)
    return k / k.sum()


_YCC = np.array([[65.481, 128.553, 24.966], [-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0
_YCC_OFF = np.array([16.0, 128.0, 128.0]) / 255.0


def _bilinear(x: np.ndarray, sy: np.ndarray, sx: np.ndarray) -> np.ndarray:
    """Sample ``x`` at (row, col) = (sy, sx) bilinearly, edges replicated (sub-1/32-px shifts must survive,
    which OpenCV's fixed-point remap would round away)."""
    h, w = x.shape[:2]
    sy = np.clip(sy, 0, h - 1)
    sx = np.clip(sx, 0, w - 1)
    y0 = np.minimum(sy.astype(np.int32), h - 2)  # coordinates are >= 0 here, so truncation is floor
    x0 = np.minimum(sx.astype(np.int32), w - 2)
    fy = (sy - y0)[..., None]
    fx = (sx - x0)[..., None]
    flat = x.reshape(-1, x.shape[2])
    idx = y0 * w + x0
    top = flat[idx] * (1 - fx) + flat[idx + 1] * fx
    bottom = flat[idx + w] * (1 - fx) + flat[idx + w + 1] * fx
    return top * (1 - fy) + bottom * fy


def _otsu_thresholds(hist: np.ndarray, n: int) -> np.ndarray:
    """Exact multi-level Otsu: the n thresholds (last value of each lower class) that minimise the
    within-class variance of a 256-bin histogram, by dynamic programming over class boundaries."""
    v = np.arange(hist.size, dtype=np.float64)
    w0 = np.concatenate([[0.0], np.cumsum(hist)])
    w1 = np.concatenate([[0.0], np.cumsum(hist * v)])
    w2 = np.concatenate([[0.0], np.cumsum(hist * v * v)])
    i, j = np.meshgrid(np.arange(hist.size + 1), np.arange(hist.size + 1), indexing="ij")
    cnt = w0[j] - w0[i]
    with np.errstate(divide="ignore", invalid="ignore"):
        sse = w2[j] - w2[i] - np.where(cnt > 0, (w1[j] - w1[i]) ** 2 / cnt, 0.0)
    sse = np.where(j > i, sse, np.inf)  # sse[i, j]: cost of one class holding bins i..j-1
    cost = sse[0].copy()
    back = []
    for _ in range(n):
        total = cost[:, None] + sse
        back.append(np.argmin(total, axis=0))
        cost = total[back[-1], np.arange(total.shape[1])]
    cuts, end = [], hist.size
    for b in reversed(back):
        end = b[end]
        cuts.append(end)
    return np.array(sorted(cuts)) - 1


# ------------------------------------------------------------------------------------------------- blur


@register("gaussian_blur", 1, "GBLUR", "blur", (0.1, 0.5, 1.0, 2.0, 5.0))
def gaussian_blur(img, sigma, rng):
    return _u8(_gauss(_f(img), sigma))


@register("lens_blur", 2, "Lens_Blur", "blur", (1, 2, 4, 6, 8))
def lens_blur(img, radius, rng):
    return _u8(_filter(_f(img), _disk_kernel(float(radius))))


@register("motion_blur", 3, "Motion_Blur", "blur", (1, 2, 4, 6, 10))
def motion_blur(img, length, rng):
    return _u8(_filter(_f(img), _line_kernel(float(length), float(rng.uniform(0.0, 180.0)))))


# ------------------------------------------------------------------------------------------------ color


@register("color_diffusion", 4, "Color_Diffusion", "color", (1, 3, 6, 8, 12))
def color_diffusion(img, amount, rng):
    # KADID blurs the chroma with sigma 1.5*amount+2 and also scales it by amount: it bleeds and saturates
    lab = _rgb2lab(_f(img))
    lab[..., 1:] = _gauss(lab[..., 1:], 1.5 * amount + 2.0) * amount
    return _u8(_lab2rgb(lab))


@register("color_shift", 5, "Color_Shift", "color", (1, 3, 6, 8, 12))
def color_shift(img, amount, rng):
    x = _f(img)
    gray = 0.2989 * x[..., 0] + 0.5870 * x[..., 1] + 0.1140 * x[..., 2]
    gy, gx = np.gradient(gray)
    edges = _mapmm(np.clip(_mapmm(_gauss(np.hypot(gx, gy).astype(np.float32), 4.0)), 0.1, 1.0))
    lo, hi = np.percentile(edges, (1, 99))
    weight = _mapmm(np.clip(edges, lo, hi))  # the shift shows only along edges, as in KADID
    direction = rng.random(2)
    dy, dx = np.rint(direction / max(np.linalg.norm(direction), 1e-12) * amount).astype(int)
    g = x[..., 1]
    padded = np.pad(g, ((dy, dy), (dx, dx)), mode="edge")
    shifted = padded[: g.shape[0], : g.shape[1]]  # content moves down/right by (dy, dx)
    x[..., 1] = shifted * weight + g * (1.0 - weight)
    return _u8(x)


@register("color_quantization", 6, "Color_Quantization", "color", (64, 48, 32, 16, 8))
def color_quantization(img, n_colors, rng):
    pil = Image.fromarray(img)
    # the palette from every other pixel is practically the same and 4x cheaper to find
    palette = Image.fromarray(np.ascontiguousarray(img[::2, ::2])).quantize(int(n_colors), Image.Quantize.MEDIANCUT)
    return np.asarray(pil.quantize(palette=palette, dither=Image.Dither.FLOYDSTEINBERG).convert("RGB")).copy()


@register("saturation_hsv", 7, "Saturation_Dist._HSV", "color", (0.4, 0.2, 0.1, 0.0, -0.4))
def saturation_hsv(img, factor, rng):
    # scaling HSV saturation by f keeps V = max(r,g,b) and moves each channel to max - f*(max - c):
    # the exact rgb2hsv -> S*f -> hsv2rgb round trip without computing hue (negative f overshoots, then clips)
    x = _f(img)
    vmax = x.max(axis=2, keepdims=True)
    return _u8(vmax - factor * (vmax - x))


@register("saturation_lab", 8, "Saturation_Dist._Lab", "color", (1, 2, 3, 6, 9))
def saturation_lab(img, factor, rng):
    if factor == 1:
        return img.copy()  # KADID's level 1; a float Lab round trip would only add rounding noise
    lab = _rgb2lab(_f(img))
    lab[..., 1:] *= factor
    return _u8(_lab2rgb(lab))


# ------------------------------------------------------------------------------------------ compression


def _roundtrip(img: np.ndarray, **save_args) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, **save_args)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


@register("jpeg2000", 9, "JP2K", "compression", (16, 32, 45, 120, 400))
def jpeg2000(img, ratio, rng):
    # lossy JPEG 2000 (9/7 wavelet) at a raw-to-compressed size ratio, MATLAB's CompressionRatio
    return _roundtrip(img, format="JPEG2000", quality_mode="rates", quality_layers=[float(ratio)], irreversible=True)


@register("jpeg", 10, "JPEG", "compression", (43, 36, 24, 7, 4))
def jpeg(img, quality, rng):
    return _roundtrip(img, format="JPEG", quality=int(quality))


# ------------------------------------------------------------------------------------------------ noise


@register("white_noise", 11, "AWGN", "noise", (0.001, 0.002, 0.003, 0.005, 0.01))
def white_noise(img, var, rng):
    # params are variances on [0, 1], as in imnoise(I, 'gaussian', 0, var)
    x = _f(img)
    return _u8(x + rng.normal(0.0, math.sqrt(var), x.shape))


@register("white_noise_ycbcr", 12, "AWGN_YCbCr", "noise", (0.0001, 0.0005, 0.001, 0.002, 0.003))
def white_noise_ycbcr(img, var, rng):
    # noise in BT.601 YCbCr (rgb2ycbcr), clipped there as imnoise does, then back to RGB
    ycc = _f(img).astype(np.float64) @ _YCC.T + _YCC_OFF
    ycc = np.clip(ycc + rng.normal(0.0, math.sqrt(var), ycc.shape), 0.0, 1.0)
    return _u8((ycc - _YCC_OFF) @ np.linalg.inv(_YCC).T)


@register("impulse_noise", 13, "Impulse_Noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.03))
def impulse_noise(img, density, rng):
    # imnoise 'salt & pepper' acts per sample, so each colour channel gets its own specks
    out = img.copy()
    u = rng.random(img.shape)
    out[u < density / 2] = 0
    out[(u >= density / 2) & (u < density)] = 255
    return out


@register("multiplicative_noise", 14, "Multiplicative_Noise", "noise", (0.001, 0.005, 0.01, 0.02, 0.05))
def multiplicative_noise(img, var, rng):
    # imnoise 'speckle': x + x*n with n uniform, zero mean, variance var
    x = _f(img)
    return _u8(x + math.sqrt(12.0 * var) * x * (rng.random(x.shape) - 0.5))


@register("denoising", 15, "Denoising", "noise", (0.01, 0.03, 0.05, 0.1, 0.15))
def denoising(img, var, rng):
    # KADID: Gaussian noise of this variance, then DnCNN. Non-local means stands in for DnCNN; its strength
    # follows the noise so that, like DnCNN, heavier noise leaves a smoother, more detail-less image.
    noisy = _u8(_f(img) + rng.normal(0.0, math.sqrt(var), img.shape))
    h = 0.6 * math.sqrt(var) * 255.0
    # 5x5 patches searched over 9x9: a quarter of OpenCV's default cost, visually the same at 320x240
    return cv2.fastNlMeansDenoisingColored(noisy, None, h, h, 5, 9)


# ------------------------------------------------------------------------------------------- brightness


@register("brighten", 16, "Brighten", "brightness", (0.1, 0.2, 0.4, 0.7, 1.1))
def brighten(img, amount, rng):
    # KADID averages a tone curve on RGB (weight 2) with the same curve on Lab lightness (weight 1)
    spline = _curve([0.5 + amount / 2])
    lab = _rgb2lab(_f(img))
    lab[..., 0] = np.clip(spline(lab[..., 0] / 100.0), 0.0, 1.0) * 100.0
    rgb_curve = _tone_lut(img, spline).astype(np.float32) / 255.0
    return _u8((2.0 * rgb_curve + np.clip(_lab2rgb(lab), 0.0, 1.0)) / 3.0)


@register("darken", 17, "Darken", "brightness", (0.05, 0.1, 0.2, 0.4, 0.8))
def darken(img, amount, rng):
    return _tone_lut(img, _curve([0.5 - amount / 2]))


@register("mean_shift", 18, "Mean_Shift", "brightness", (0.15, 0.08, 0.0, -0.08, -0.15))
def mean_shift(img, shift, rng):
    # KADID adds the shift, clips, then its generator min-max stretches the result. On a full-range photo
    # that turns +s into a highlight-clipping stretch and -s into a shadow-clipping one; we stretch back to
    # the input's own range so the middle level stays the identity on any image.
    x = img.astype(np.float64) / 255.0
    y = np.clip(x + shift, 0.0, 1.0)
    return _u8(_mapmm(y) * (x.max() - x.min()) + x.min())


# ---------------------------------------------------------------------------------------------- spatial


@register("jitter", 19, "Jitter", "spatial", (0.05, 0.1, 0.2, 0.5, 1.0))
def jitter(img, amount, rng):
    # imscatter(I, [], amount, 5): five rounds of moving every pixel by a Gaussian offset (std = amount px)
    x = _f(img)
    rows, cols = np.mgrid[0 : x.shape[0], 0 : x.shape[1]].astype(np.float32)
    for _ in range(5):
        dy, dx = rng.normal(0.0, amount, (2, *x.shape[:2])).astype(np.float32)
        x = _bilinear(x, rows - dy, cols - dx)
    return _u8(x)


@register("non_eccentricity_patch", 20, "Non-eccentricity_patch", "spatial", (20, 40, 60, 80, 100))
def non_eccentricity_patch(img, n_patches, rng):
    # copy 16x16 patches to a spot up to 8 px away, each copy reading the already-modified image
    out = img.copy()
    h, w = img.shape[:2]
    size, radius = 16, 16
    for _ in range(int(n_patches)):
        c0 = round(rng.random() * (w - size - 2 * radius)) + radius - 1
        r0 = round(rng.random() * (h - size - 2 * radius)) + radius - 1
        patch = out[r0 : r0 + size, c0 : c0 + size].copy()
        c1 = round((rng.random() - 0.5) * radius + c0)
        r1 = round((rng.random() - 0.5) * radius + r0)
        out[r1 : r1 + size, c1 : c1 + size] = patch
    return out


@register("pixelate", 21, "Pixelate", "spatial", (0.01, 0.05, 0.1, 0.2, 0.5))
def pixelate(img, strength, rng):
    # nearest-neighbour down by z = 0.95 - strength^0.6 and back up (imresize 'nearest' uses pixel centres)
    h, w = img.shape[:2]
    z = 0.95 - strength**0.6
    small = cv2.resize(img, (math.ceil(w * z), math.ceil(h * z)), interpolation=cv2.INTER_NEAREST_EXACT)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST_EXACT)


@register("quantization", 22, "Quantization", "spatial", (20, 16, 13, 10, 7))
def quantization(img, n_thresholds, rng):
    # imnoisequantize: Otsu thresholds over all RGB samples; each class maps to its upper threshold,
    # the lowest to black and the highest to white (value = [0, thresh(2:end), 1])
    t = _otsu_thresholds(np.bincount(img.ravel(), minlength=256).astype(np.float64), int(n_thresholds))
    values = np.concatenate([[0], t[1:], [255]])
    lut = values[np.searchsorted(t, np.arange(256), side="left")].astype(np.uint8)
    return lut[img]


@register("color_block", 23, "Color_Block", "spatial", (2, 4, 6, 8, 10))
def color_block(img, n_blocks, rng):
    out = img.copy()
    h, w = img.shape[:2]
    size = 32
    for _ in range(int(n_blocks)):
        rgb = _u8(rng.random(3))
        c0 = int(rng.random() * (w - size))
        r0 = int(rng.random() * (h - size))
        out[r0 : r0 + size, c0 : c0 + size] = rgb
    return out


# ----------------------------------------------------------------------------------- sharpness/contrast


@register("high_sharpen", 24, "High_Sharpen", "sharpness_contrast", (1, 2, 3, 6, 12))
def high_sharpen(img, amount, rng):
    # imsharpen(I, 'Radius', 3, 'Amount', a): unsharp mask on Lab lightness only
    lab = _rgb2lab(_f(img))
    lightness = lab[..., 0].astype(np.float32)
    lab[..., 0] = lightness + amount * (lightness - _gauss(lightness, 3.0))
    return _u8(_lab2rgb(lab))


@register("contrast_change", 25, "Contrast Dist.", "sharpness_contrast", (0.3, 0.15, 0.0, -0.4, -0.6))
def contrast_change(img, amount, rng):
    # positive amounts steepen the mid-tones (more contrast), negative ones flatten them
    return _tone_lut(img, _curve([0.25 - amount / 4, 0.75 + amount / 4]))


if [d.kadid_id for d in DISTORTIONS.values()] != list(range(1, 26)):
    raise ValueError("DISTORTIONS must hold KADID ids 1..25 in order")  # others index and iterate by id


# ------------------------------------------------------------------------------------------------- API


def get(name: str) -> Distortion:
    try:
        return DISTORTIONS[name]
    except (KeyError, TypeError):
        raise QPonderError(f"unknown distortion {name!r}; valid names: {', '.join(DISTORTIONS)}") from None


def by_family(family: str) -> list[Distortion]:
    if family not in FAMILIES:
        raise QPonderError(f"unknown distortion family {family!r}; valid families: {', '.join(FAMILIES)}")
    return [d for d in DISTORTIONS.values() if d.family == family]


def _check_image(image) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        got = type(image).__name__ if not isinstance(image, np.ndarray) else f"array of {image.dtype}"
        raise QPonderError(f"distortions take a uint8 HxWx3 RGB array; got {got}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise QPonderError(f"distortions take a uint8 HxWx3 RGB array; got shape {image.shape} "
                           "(convert grayscale/RGBA with PIL's .convert('RGB') first)")
    if min(image.shape[:2]) < MIN_SIDE:
        raise QPonderError(f"image {image.shape[1]}x{image.shape[0]} is too small; distortions need at least "
                           f"{MIN_SIDE}x{MIN_SIDE} pixels")


def _check_level(name: str, level) -> None:
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level not in LEVELS:
        raise QPonderError(f"level for {name!r} must be an integer 1..5 (1 = mildest); got {level!r}")


def apply(name: str, image: np.ndarray, level: int, rng: np.random.Generator) -> np.ndarray:
    """Distort ``image`` (uint8 HxWx3 RGB) with type ``name`` at KADID ``level`` 1..5; returns a new array."""
    d = get(name)
    _check_level(name, level)
    _check_image(image)
    if not isinstance(rng, np.random.Generator):
        raise QPonderError(f"rng must be a numpy Generator (np.random.default_rng(seed)); got {type(rng).__name__}")
    out = d.fn(image, d.params[int(level) - 1], rng)
    if out is image or np.may_share_memory(out, image):
        out = out.copy()  # callers may edit the result; never hand back a view of their input
    return np.ascontiguousarray(out, dtype=np.uint8)


def apply_chain(steps: Sequence[tuple[str, int]], image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Compound distortion: apply each (name, level) in order, e.g. [("gaussian_blur", 3), ("jpeg", 2)]."""
    steps = [tuple(s) for s in steps]
    for s in steps:
        if len(s) != 2:
            raise QPonderError(f"each chain step is (name, level); got {s!r}")
        get(s[0])
        _check_level(s[0], s[1])
    _check_image(image)
    out = image.copy()
    for name, level in steps:
        out = apply(name, out, level, rng)
    return out
