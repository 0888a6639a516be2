"""Stage 1 figures on qponder-synth with the embedded default: the teacher, Q-Ponder-CI with the MOS or the
teacher's own score as the target, and the no-CoT ablation; SRCC/PLCC and reasoning metrics per test split,
wall time per stage. Writes ``benchmarks/results/stage1.json``.

    .venv/bin/python benchmarks/stage1.py --synth runs/bench/synth --distilled runs/bench/distill/train.jsonl \
        --student runs/bench/student_choice/default/init
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SPLITS = ("test", "test_xtype", "test_compound")


def main() -> None:
    from qponder.data.records import read_meta
    from qponder.eval.evaluate import evaluate, open_image
    from qponder.score import Scorer, VLMPredictor
    from qponder.teachers import TeacherPredictor
    from qponder.teachers.attribute import AttributeTeacher
    from qponder.train.sft import SFTRecipe, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", type=Path, required=True)
    ap.add_argument("--distilled", type=Path, required=True)
    ap.add_argument("--student", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=Path("runs/bench/stage1"))
    ap.add_argument("--ci-mos", type=Path, default=None,
                    help="reuse an SFT output trained with exactly these settings (e.g. student_choice's default)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--test-stride", type=int, default=4)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/stage1.json"))
    a = ap.parse_args()
    res = json.loads(a.out.read_text()) if a.out.exists() else {"models": {}, "seconds": {}}

    def save():
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps(res, indent=1))

    def evaluate_all(name, predictor):
        res["models"][name] = {}
        for split in SPLITS:
            recs = read_meta(a.synth / "metas" / f"{split}.json")
            recs = recs[:: a.test_stride] if split == "test" else recs
            s = evaluate(predictor, a.synth / "metas" / f"{split}.json", a.work / "eval" / name / split,
                         records=recs, progress=False)
            res["models"][name][split] = {k: s.get(k) for k in ("n", "srcc", "plcc", "krcc", "parse_fail_rate",
                                                                 "family_acc", "severity_acc", "clean_rate",
                                                                 "mean_tokens", "images_per_second")}
            print(name, split, res["models"][name][split], flush=True)
        save()

    if "teacher" not in res["models"]:
        teacher = AttributeTeacher()
        train_recs = read_meta(a.synth / "metas" / "train.json")
        sample = train_recs[:: max(1, len(train_recs) // 800)][:800]
        t0 = time.time()
        teacher.fit([open_image(a.synth / "images" / r.image) for r in sample], [r.mos for r in sample])
        res["seconds"]["teacher_fit"] = round(time.time() - t0, 1)
        evaluate_all("teacher", TeacherPredictor(teacher))

    runs = {"ci_mos": dict(target_score="mos"), "ci_teacher": dict(target_score="teacher"),
            "sft_no_reasoning": dict(reasoning=False)}
    for name, kw in runs.items():
        if name in res["models"]:
            continue
        if name == "ci_mos" and a.ci_mos:
            out = a.ci_mos
            evaluate_all(name, VLMPredictor(Scorer.from_pretrained(out, max_new_tokens=256)))
            continue
        t0 = time.time()
        out = train(SFTRecipe(model=str(a.student), data=str(a.distilled), out=str(a.work / name),
                              max_steps=a.steps, logging_steps=50, save_steps=10 ** 6, report_to="none", **kw))
        res["seconds"][f"sft_{name}"] = round(time.time() - t0, 1)
        think = kw.get("reasoning", True)
        evaluate_all(name, VLMPredictor(Scorer.from_pretrained(out, max_new_tokens=256), think=think))


if __name__ == "__main__":
    main()
