"""How good is the offline attribute teacher? Score agreement with MOS and distortion-family identification.

Calibrates ``AttributeTeacher.fit`` on a subsample of qponder-synth ``train`` (never on test), then on ``test``,
``test_xtype`` and ``test_compound`` reports:

* SRCC/PLCC/... of its own score vs MOS (``qponder.eval.metrics.summarize``), calibrated and uncalibrated;
* family identification on distorted images, read from the *text* with the rule the reasoning metrics use:
  ``qponder.lexicon.family_mentions`` of the reasoning, the family with most mentions (a tie counts as a miss,
  no mention as "clean"); a compound is a hit when either of its families is named. Per family and per
  distortion type, plus how often the text agrees with the top of ``diagnose``;
* the share of references it calls clean (no family named), time per image, distinct scores.

The teacher only ever sees pixels: labels are read here, by the benchmark, to score it.

    .venv/bin/python benchmarks/attribute_teacher.py --synth runs/bench/synth [--fit-n 600]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

from PIL import Image

SPLITS = ("test", "test_xtype", "test_compound")


def named_family(text: str) -> str:
    from qponder.lexicon import family_mentions

    m = family_mentions(text)
    best = max(m.values())
    if best == 0:
        return "clean"
    top = [f for f, c in m.items() if c == best]
    return top[0] if len(top) == 1 else "tie"


def evaluate_split(teacher, records, root: Path) -> dict:
    from qponder.eval.metrics import summarize
    from qponder.models.answer import parse
    from qponder.teachers.attribute import CLEAN_BELOW, _default_score

    scores, scores_default, mos = [], [], []
    hits, agree, ref_clean_text, ref_clean_diag = [], [], [], []
    per_family, per_type = defaultdict(list), defaultdict(list)
    confusion: dict[str, Counter] = defaultdict(Counter)
    parse_fail, seconds = 0, 0.0
    for rec in records:
        with Image.open(rec.path(root)) as im:
            image = im.convert("RGB")
        t0 = time.perf_counter()
        text = teacher.describe(image)  # no MOS: the honest teacher
        seconds += time.perf_counter() - t0
        p = parse(text)
        if not p.ok or not p.reasoning:
            parse_fail += 1
            continue
        r = teacher.assess(image)
        scores.append(p.score)
        scores_default.append(min(max(_default_score(r["diagnosis"]), 1.0), 5.0))
        mos.append(rec.mos)
        named = named_family(p.reasoning)
        top, top_sev = r["diagnosis"][0]
        diag_top = top if top_sev >= CLEAN_BELOW else "clean"
        agree.append(named == diag_top)
        if rec.family in (None, "", "none"):
            ref_clean_text.append(named == "clean")
            ref_clean_diag.append(diag_top == "clean")
            confusion["reference"][named] += 1
            continue
        fams = rec.family.split("+")
        ok = named in fams
        hits.append(ok)
        per_family[rec.family].append(ok)
        per_type[rec.dis_type].append(ok)
        confusion[rec.family][named] += 1
    n = len(scores)
    mean = lambda xs: round(sum(xs) / len(xs), 4) if xs else None  # noqa: E731
    return {
        "n": len(records),
        "parse_fail": parse_fail,
        "calibrated": summarize(scores, mos),
        "uncalibrated": summarize(scores_default, mos),
        "family_accuracy": mean(hits),
        "family_n": len(hits),
        "chance": round(1 / 7, 4),
        "per_family_accuracy": {f: {"acc": mean(v), "n": len(v)} for f, v in sorted(per_family.items())},
        "per_type_accuracy": {t: {"acc": mean(v), "n": len(v)} for t, v in sorted(per_type.items())},
        "named_family_confusion": {f: dict(c.most_common()) for f, c in sorted(confusion.items())},
        "text_agrees_with_diagnosis": mean(agree),
        "references": len(ref_clean_text),
        "references_called_clean_text": mean(ref_clean_text),
        "references_called_clean_diagnosis": mean(ref_clean_diag),
        "distinct_scores": len(set(scores)),
        "ms_per_image_describe": round(1000 * seconds / max(n, 1), 2),
    }


def main() -> None:
    from qponder.data.records import read_meta
    from qponder.teachers.attribute import AttributeTeacher

    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", type=Path, default=Path("runs/bench/synth"))
    ap.add_argument("--fit-n", type=int, default=600, help="train images used by fit (random subsample)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--limit", type=int, default=None, help="at most this many images per test split")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/attribute_teacher.json"))
    a = ap.parse_args()
    root = a.synth / "images"

    train = read_meta(a.synth / "metas" / "train.json")
    fit_recs = random.Random(a.seed).sample(train, min(a.fit_n, len(train)))
    teacher = AttributeTeacher(seed=a.seed)
    t0 = time.perf_counter()
    images = []
    for r in fit_recs:
        with Image.open(r.path(root)) as im:
            images.append(im.convert("RGB"))
    cal = teacher.fit(images, [r.mos for r in fit_recs])
    fit_s = time.perf_counter() - t0
    print(f"fit on {len(fit_recs)} train images in {fit_s:.1f}s: fit SRCC {cal['fit_srcc']}", flush=True)

    results = {}
    for split in SPLITS:
        recs = read_meta(a.synth / "metas" / f"{split}.json")
        if a.limit:
            recs = recs[: a.limit]
        results[split] = evaluate_split(teacher, recs, root)
        s = results[split]
        print(f"{split}: n={s['n']} SRCC {s['calibrated']['srcc']:.3f} PLCC {s['calibrated']['plcc']:.3f} "
              f"(uncalibrated SRCC {s['uncalibrated']['srcc']:.3f}) family acc {s['family_accuracy']} "
              f"refs clean {s['references_called_clean_text']} distinct {s['distinct_scores']} "
              f"{s['ms_per_image_describe']} ms/img", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "benchmark": "attribute_teacher",
        "machine": platform.processor() or platform.machine(),
        "synth": str(a.synth),
        "fit": {"split": "train", "n": len(fit_recs), "seconds": round(fit_s, 1), "calibration": cal},
        "note": "teacher sees pixels only; describe() called without MOS; family read from the reasoning text "
                "with qponder.lexicon.family_mentions (most mentions, ties = miss); compounds hit on either family",
        "results": results,
    }, indent=1))
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
