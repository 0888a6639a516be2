"""Classical no-reference IQA baselines that run fully offline: BRISQUE and NIQE.

Both come from wheels (``brisque==0.2.0`` with its LIVE-trained libsvm SVR; ``scikit-video==1.1.11`` with the
NIQE pristine model) and both predate numpy 2, so each needs a small compatibility fix. The fixes are applied
here at first use and scoped as narrowly as possible, so nothing else in the process sees a patched numpy or
scipy (see ``_load_brisque`` and ``_load_niqe``). Heavy imports happen there too, so importing this module
is cheap.

Both metrics are "lower = better"; ``Prediction.raw`` keeps the native value and ``Prediction.score`` is its
negation, so that higher = better like every other predictor. Neither is on the MOS scale: compare them to MOS
with rank metrics or after the logistic fit (`qponder.eval.metrics`).

One image failing (for example a flat image whose statistics are undefined) yields
``Prediction(score=None, ok=False, reason=...)``; a missing package raises ``QPonderError`` up front, since no
image could succeed.

NIQE on small images: the scikit-video model uses 96 px patches at two scales and needs a luminance image
with both sides of at least ``NIQE_MIN_SIDE`` (194) px. Smaller images are upscaled (bicubic, aspect ratio
kept) until the short side reaches 194 px, as long as that takes at most ``max_upscale`` (default 2x, so a
short side of 97 px or more); beyond that the image fails with a reason, because NIQE would then mostly
measure the interpolation blur. Pass ``max_upscale=1`` to never upscale. Upscaling was preferred to
reflection padding because it kept clean < blurred < JPEG ordering on small crops where padding did not.
NIQE only reads whole 96 px patches, so up to 95 px at the bottom and right of an image are ignored, and
below about 300 px per side it sees so few patches (6 per scale at 320x240) that its values are inflated
and noisy: compare NIQE only across images of similar size.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import sys
import threading
import types
import warnings
from typing import Any, Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from qponder.errors import QPonderError
from qponder.eval.predictor import Prediction, Predictor

# scikit-video asserts both sides > 2 * 96 + 1.
NIQE_MIN_SIDE = 194

_load_lock = threading.Lock()


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The wheels' own deprecation warnings and the RuntimeWarnings of degenerate images are noise here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _missing(package: str, exc: Exception) -> QPonderError:
    return QPonderError(f"{package} is not usable ({type(exc).__name__}: {exc}); install it with `pip install {package}`")


class _ClassicalPredictor:
    """Shared loop: load once, score each image independently, turn per-image failures into Predictions."""

    name: str = ""
    on_mos_scale: bool = False

    def load(self) -> None:
        """Load the model's files and packages; a missing package raises QPonderError naming it."""
        raise NotImplementedError

    def _raw(self, image: Image.Image) -> float:
        raise NotImplementedError

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        self.load()
        out: list[Prediction] = []
        for image in images:
            try:
                with _quiet():
                    raw = float(self._raw(image))
            except Exception as exc:  # one bad image must not sink a whole evaluation run
                out.append(Prediction(score=None, ok=False, reason=f"{self.name}: {type(exc).__name__}: {exc}"))
                continue
            if not math.isfinite(raw):
                out.append(Prediction(score=None, ok=False, raw=None, reason=f"{self.name}: non-finite value ({raw}); flat or degenerate image?"))
                continue
            out.append(Prediction(score=-raw, raw=raw))
        return out


# ---------------------------------------------------------------------------------------------------- BRISQUE


def _load_brisque() -> type:
    """A BRISQUE subclass that works on numpy 2 and refuses to score undefined features.

    brisque 0.2.0 calls ``float()`` on features that are 1-element arrays, which numpy 2.x rejects. The fix
    is the one from shared/research/offline-assets.md, placed on a subclass instead of assigned to
    ``BRISQUE.scale_features``, so other users of the package in this process keep the original class.
    """
    try:
        with _quiet():
            from brisque import BRISQUE
    except Exception as exc:
        raise _missing("brisque[opencv-python-headless]==0.2.0", exc) from exc

    def one(a: Any) -> float:
        return float(np.ravel(a)[0])

    class _Brisque(BRISQUE):
        def scale_features(self, feats):
            lo = np.array([one(v) for v in self.scale_params["min_"]])
            hi = np.array([one(v) for v in self.scale_params["max_"]])
            return -1.0 + 2.0 * (np.array([one(v) for v in feats]) - lo) / (hi - lo)

        def calculate_image_quality_score(self, brisque_features):
            # libsvm happily maps NaN features (flat image: 0/0 in the shape fits) to a finite, meaningless
            # score, so undefined features must be caught before the SVR sees them.
            feats = np.array([one(v) for v in brisque_features])
            if not np.all(np.isfinite(feats)):
                raise ValueError("undefined BRISQUE features (flat or nearly flat image)")
            return super().calculate_image_quality_score(brisque_features)

    return _Brisque


class BrisquePredictor(_ClassicalPredictor):
    """BRISQUE (Mittal et al. 2012) with the LIVE-trained SVR shipped in ``brisque==0.2.0``.

    Raw values are roughly 0 (pristine) to 100+ (heavily distorted). Input is converted to 8-bit RGB.
    """

    name = "brisque"
    on_mos_scale = False

    def __init__(self) -> None:
        self._model = None

    def load(self) -> None:
        if self._model is None:
            with _load_lock:
                if self._model is None:
                    cls = _load_brisque()
                    with _quiet():
                        self._model = cls(url=False)

    def _raw(self, image: Image.Image) -> float:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
        return self._model.score(rgb)


# ------------------------------------------------------------------------------------------------------- NIQE


class _ModuleShim(types.ModuleType):
    """Stands in for a module inside one third-party module: extra names first, everything else forwarded."""

    def __init__(self, target: types.ModuleType, **extra: Any) -> None:
        super().__init__(target.__name__)
        self.__dict__.update(extra)
        self.__dict__["_target"] = target

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__dict__["_target"], name)


def _imresize(arr, size, interp: str = "bicubic", mode: str = "F"):
    """The subset of the removed ``scipy.misc.imresize`` that NIQE uses: float images scaled by a factor."""
    if interp != "bicubic" or mode != "F" or not isinstance(size, float):
        raise NotImplementedError(f"imresize shim supports only a float factor, bicubic, mode F (got {size!r}, {interp!r}, {mode!r})")
    a = np.asarray(arr, dtype=np.float32)
    # Same rounding as the original (truncating the scaled size).
    new = (int(a.shape[1] * size), int(a.shape[0] * size))
    return np.asarray(Image.fromarray(a).resize(new, Image.BICUBIC))


def _load_niqe() -> Callable[[np.ndarray], np.ndarray]:
    """scikit-video's ``niqe`` with its numpy-2 / scipy fixes.

    It uses ``np.int`` (gone in numpy 2) and ``scipy.misc.imresize`` (gone since scipy 1.3). Instead of
    setting ``np.int``/``np.float``/``scipy.misc.imresize`` process-wide, the niqe module's own ``np`` and
    ``scipy`` globals are replaced by thin stand-ins that add just those names; nothing else in scikit-video
    that NIQE calls needs them.
    """
    try:
        with _quiet():
            importlib.import_module("skvideo.measure")
            import scipy
            import scipy.io
            import scipy.linalg
    except Exception as exc:
        raise _missing("scikit-video==1.1.11", exc) from exc
    # `skvideo.measure.niqe` as an attribute is the function (the package star-imports it), not the module.
    mod = sys.modules["skvideo.measure.niqe"]
    if not isinstance(mod.np, _ModuleShim):
        mod.np = _ModuleShim(np, int=int, float=float)
        mod.scipy = _ModuleShim(scipy, misc=types.SimpleNamespace(imresize=_imresize))
    return mod.niqe


def _luma(image: Image.Image) -> np.ndarray:
    # Float BT.601 luma, 0..255 like the MATLAB model expects, without the 8-bit rounding of PIL's "L".
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


class NiqePredictor(_ClassicalPredictor):
    """NIQE (Mittal et al. 2013) with scikit-video's pristine model; see the module docstring for small images.

    Raw values are distances from natural-image statistics (lower = more natural); the scale differs from
    the MATLAB reference implementation but the ordering agrees.
    """

    name = "niqe"
    on_mos_scale = False

    def __init__(self, max_upscale: float = 2.0) -> None:
        if not max_upscale >= 1:
            raise QPonderError(f"NiqePredictor: max_upscale must be >= 1 (1 = never upscale), got {max_upscale}")
        self.max_upscale = float(max_upscale)
        self._niqe: Callable[[np.ndarray], np.ndarray] | None = None

    def load(self) -> None:
        if self._niqe is None:
            with _load_lock:
                if self._niqe is None:
                    self._niqe = _load_niqe()

    def _fit_size(self, image: Image.Image) -> Image.Image:
        w, h = image.size
        if min(w, h) >= NIQE_MIN_SIDE:
            return image
        factor = NIQE_MIN_SIDE / min(w, h)
        if factor > self.max_upscale:
            raise ValueError(
                f"image {w}x{h} is too small: NIQE needs both sides >= {NIQE_MIN_SIDE} px and upscaling "
                f"by {factor:.2f}x exceeds max_upscale={self.max_upscale:g}"
            )
        # ceil so that rounding never lands one pixel short of the minimum.
        size = (max(NIQE_MIN_SIDE, math.ceil(w * factor)), max(NIQE_MIN_SIDE, math.ceil(h * factor)))
        return image.convert("RGB").resize(size, Image.BICUBIC)

    def _raw(self, image: Image.Image) -> float:
        luma = _luma(self._fit_size(image))
        # On a flat image NIQE's statistics are 0/0; scikit-video's zero-padded filtering still returns a
        # finite number made only of border artefacts (about 27, "better" than a blurred photo), so refuse.
        if np.ptp(luma) == 0:
            raise ValueError("flat image: NIQE statistics are undefined")
        return float(self._niqe(luma)[0])


# --------------------------------------------------------------------------------------------------- registry

BASELINES: dict[str, Callable[[], Predictor]] = {"brisque": BrisquePredictor, "niqe": NiqePredictor}


def create_baseline(name: str) -> Predictor:
    """Instantiate a baseline by name (case-insensitive)."""
    key = name.strip().lower()
    if key not in BASELINES:
        raise QPonderError(f"unknown baseline {name!r}; valid names: {', '.join(sorted(BASELINES))}")
    return BASELINES[key]()
