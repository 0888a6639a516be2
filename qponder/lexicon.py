"""The vocabulary of image quality: distortion families, their words, and severity words.

One table serves the offline teacher (which writes with these words), the reasoning metrics and the
degradation reward (which read them back), and the student's tokenizer (trained on them). Families follow
KADID-10k's grouping; the words are what an expert says when naming that kind of damage.
"""

from __future__ import annotations

import re

FAMILY_WORDS: dict[str, tuple[str, ...]] = {
    "blur": ("blur", "blurry", "blurred", "out of focus", "defocus", "soft focus", "motion blur", "lens blur",
             "smeared", "loss of fine detail"),
    "noise": ("noise", "noisy", "grain", "grainy", "speckle", "salt-and-pepper", "impulse noise",
              "over-smoothed", "denoising", "waxy"),
    "compression": ("compression", "jpeg", "jpeg 2000", "blocking", "blocky", "block artifacts", "ringing",
                    "mosquito noise", "8x8 blocks"),
    "color": ("colour", "color", "saturation", "desaturated", "oversaturated", "colour shift", "colour bleeding",
              "colour fringing", "colour quantization", "false colours", "hue"),
    "brightness": ("brightness", "exposure", "overexposed", "underexposed", "too dark", "too bright",
                   "washed out", "crushed shadows", "clipped highlights"),
    "spatial": ("pixelated", "pixelation", "jitter", "displaced patches", "misaligned", "colour blocks",
                "posterized", "banding", "mosaic"),
    "sharpness_contrast": ("oversharpened", "halo", "halos", "sharpening", "contrast", "low contrast",
                           "high contrast", "flat tones", "harsh edges"),
}

FAMILY_NAMES = {
    "blur": "blur", "noise": "noise", "compression": "compression artifacts", "color": "colour distortion",
    "brightness": "exposure problems", "spatial": "spatial distortion", "sharpness_contrast": "sharpness and contrast",
}

# KADID levels 1..5 -> how an expert would call the damage
SEVERITY_WORDS: dict[int, tuple[str, ...]] = {
    1: ("barely visible", "imperceptible", "negligible"),
    2: ("slight", "mild", "minor"),
    3: ("moderate", "noticeable", "clear"),
    4: ("strong", "severe", "heavy"),
    5: ("extreme", "very severe", "overwhelming"),
}

QUALITY_WORDS = ("excellent", "good", "fair", "poor", "bad")

_PATTERNS = {f: re.compile(r"\b(" + "|".join(re.escape(w) for w in sorted(ws, key=len, reverse=True)) + r")\b", re.I)
             for f, ws in FAMILY_WORDS.items()}


def family_mentions(text: str) -> dict[str, int]:
    """How often each family's words occur in ``text`` (case-insensitive, whole words)."""
    return {f: len(p.findall(text or "")) for f, p in _PATTERNS.items()}


def corpus_lines() -> list[str]:
    """Sentences in the style of IQA reasoning, used to train a small student's tokenizer."""
    lines = []
    for fam, words in FAMILY_WORDS.items():
        for w in words:
            for lv, sev in SEVERITY_WORDS.items():
                lines.append(f"The image shows {sev[0]} {w}; the {FAMILY_NAMES[fam]} is {sev[1]}.")
    for q in QUALITY_WORDS:
        lines.append(f"Overall the quality is {q}. Sharpness, noise, compression, exposure, contrast and colour "
                     f"were checked before the score.")
    lines += [f"<think>reasoning</think><answer>{x / 100:.2f}</answer>" for x in range(100, 501, 7)]
    return lines
