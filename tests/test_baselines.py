import io
import math
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from qponder.errors import QPonderError
from qponder.eval.baselines import BASELINES, NIQE_MIN_SIDE, NiqePredictor, create_baseline
from qponder.eval.predictor import Prediction

NAMES = sorted(BASELINES)


def _astronaut(size: tuple[int, int]) -> Image.Image:
    from skimage.data import astronaut

    return Image.fromarray(astronaut()).resize(size, Image.LANCZOS)


def _blur(image: Image.Image, sigma: float) -> Image.Image:
    from scipy.ndimage import gaussian_filter

    # scipy rather than PIL's GaussianBlur, whose "radius" is a box-filter approximation, not a sigma.
    a = gaussian_filter(np.asarray(image, dtype=float), sigma=(sigma, sigma, 0))
    return Image.fromarray(np.clip(a.round(), 0, 255).astype(np.uint8))


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


@pytest.fixture(scope="module")
def triplet() -> dict[str, Image.Image]:
    clean = _astronaut((320, 240))
    return {"clean": clean, "blur": _blur(clean, 4), "jpeg": _jpeg(clean, 5)}


@pytest.fixture(scope="module")
def predictors():
    return {name: create_baseline(name) for name in NAMES}


@pytest.fixture(scope="module")
def triplet_results(predictors, triplet, request):
    out = {name: dict(zip(triplet, predictors[name].predict(list(triplet.values())))) for name in NAMES}
    # Reported so that regressions in the wheels (or their shims) are visible in the test log.
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        for name in NAMES:
            print(f"\n[{name}] raw at 320x240: " + ", ".join(f"{k} {p.raw:.2f}" for k, p in out[name].items()))
    return out


@pytest.mark.parametrize("name", NAMES)
def test_outputs_are_finite_and_negated(triplet_results, name):
    for kind, p in triplet_results[name].items():
        assert isinstance(p, Prediction)
        assert p.ok, (kind, p.reason)
        assert math.isfinite(p.raw) and math.isfinite(p.score)
        assert p.score == -p.raw
        assert p.text is None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("distortion", ["blur", "jpeg"])
def test_clean_scores_better_than_distorted(triplet_results, name, distortion):
    r = triplet_results[name]
    assert r["clean"].score > r[distortion].score, {k: p.raw for k, p in r.items()}


@pytest.mark.parametrize("name", NAMES)
def test_constant_image_fails_softly(predictors, triplet, name):
    flat = Image.new("RGB", (320, 240), (128, 128, 128))
    flat_result, clean_result = predictors[name].predict([flat, triplet["clean"]])
    assert flat_result.ok is False and flat_result.score is None
    assert flat_result.reason and name in flat_result.reason
    # The failure is per image: the next image in the batch is unaffected.
    assert clean_result.ok and math.isfinite(clean_result.score)


@pytest.mark.parametrize("name", NAMES)
def test_other_modes_and_empty_batch(predictors, triplet, name):
    p = predictors[name]
    assert p.predict([]) == []
    gray, rgba = triplet["clean"].convert("L"), triplet["clean"].convert("RGBA")
    assert all(r.ok and math.isfinite(r.score) for r in p.predict([gray, rgba]))


def test_niqe_upscales_small_images_within_limit():
    small = _astronaut((200, 150))  # 194/150 = 1.29x upscale, under the default 2x
    (r,) = NiqePredictor().predict([small])
    assert r.ok and math.isfinite(r.score)


def test_niqe_small_image_beyond_limit_fails_with_reason():
    tiny = _astronaut((120, 90))  # needs 194/90 = 2.16x
    (r,) = NiqePredictor().predict([tiny])
    assert not r.ok and r.score is None
    assert "too small" in r.reason and str(NIQE_MIN_SIDE) in r.reason
    (r,) = NiqePredictor(max_upscale=1).predict([_astronaut((200, 150))])
    assert not r.ok and "too small" in r.reason


def test_niqe_rejects_bad_max_upscale():
    with pytest.raises(QPonderError):
        NiqePredictor(max_upscale=0.5)


def test_registry():
    assert set(BASELINES) == {"brisque", "niqe"}
    for name in NAMES:
        p = create_baseline(name.upper())
        assert p.name == name and p.on_mos_scale is False
    with pytest.raises(QPonderError, match="valid names: brisque, niqe"):
        create_baseline("piqe")


def test_shims_stay_local(predictors, triplet):
    for p in predictors.values():
        p.predict([triplet["clean"]])
    import scipy.misc
    from brisque import BRISQUE

    assert not hasattr(np, "int") and not hasattr(np, "float")
    assert not hasattr(scipy.misc, "imresize")
    assert BRISQUE.scale_features.__module__ == "brisque.brisque"


def test_import_is_cheap_and_running_is_warning_free():
    # A fresh interpreter: importing must not pull in the wheels, and with every warning turned into an
    # error the first use (imports, shims, a flat image's RuntimeWarnings) must still go through.
    code = (
        "import sys\n"
        "import qponder.eval.baselines as b\n"
        "assert not {'brisque', 'skvideo', 'cv2', 'libsvm'} & set(sys.modules), sorted(sys.modules)\n"
        "from PIL import Image\n"
        "import numpy as np\n"
        "img = Image.fromarray((np.random.default_rng(0).random((240, 320, 3)) * 255).astype('uint8'))\n"
        "flat = Image.new('RGB', (320, 240))\n"
        "for n in b.BASELINES:\n"
        "    r = b.create_baseline(n).predict([img, flat])\n"
        "    assert r[0].ok and not r[1].ok, r\n"
    )
    proc = subprocess.run([sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "" and proc.stdout == ""


@pytest.mark.parametrize("size", [(320, 240), (512, 384)])
def test_report_timing(predictors, size, request):
    image = _astronaut(size)
    lines = []
    for name in NAMES:
        p = predictors[name]
        p.predict([image])  # warm-up: model loading is a one-off cost
        reps = 5
        t0 = time.perf_counter()
        p.predict([image] * reps)
        lines.append(f"{name} {1000 * (time.perf_counter() - t0) / reps:.0f} ms/image")
    capman = request.config.pluginmanager.getplugin("capturemanager")
    with capman.global_and_fixture_disabled():
        print(f"\n[timing {size[0]}x{size[1]}] " + ", ".join(lines))
