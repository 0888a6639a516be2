"""Can the student's frozen features tell the distortion family at all? A linear-probe ceiling for the diagnosis.

The CoT student has to write the dominant problem before anything else, and at the demo's budget it writes the
same one for most images (docs/results.md, stop 6). This separates "cannot see it" from "has not learnt to
read it": the same pooled block-4 DINOv2 features as ``vision_ceiling.py`` (what the student's LM receives,
before the projector), and a ridge classifier on one-hot targets (argmax of the fitted scores), fitted on
qponder-synth `train` with alpha chosen on the last 20 % (photos the first 80 % do not contain). Two targets:

- ``teacher``: the family the teacher's trace names (``qponder.eval.reasoning.named_family``; "none" for a trace
  that names none), over every train image the teacher saw: the student's SFT target, kept traces or not.
- ``label``: the true family of the distortion ("none" for pristine references).

Both probes are then scored like the demo's family accuracy: over the distorted images of each test split, the
predicted family must be the label's (either family of a compound).

    python benchmarks/diagnosis_ceiling.py --run runs/demo_stop5
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import time
from pathlib import Path

import numpy as np

BLOCK = 4


def _vision_ceiling():
    spec = importlib.util.spec_from_file_location("vision_ceiling", Path(__file__).with_name("vision_ceiling.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def family_accuracy(pred: list[str], labels: list[str]) -> float | None:
    pairs = [(p, y) for p, y in zip(pred, labels) if y != "none"]
    return round(sum(p in y.split("+") for p, y in pairs) / len(pairs), 4) if pairs else None


def main() -> None:
    from qponder.eval.reasoning import named_family
    from qponder.models.answer import parse
    from qponder.models.dinov2 import load_dinov2

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/diagnosis_ceiling.json"))
    a = ap.parse_args()
    vc, synth, t0 = _vision_ceiling(), a.run / "synth", time.time()
    vc.BLOCKS = (BLOCK,)
    model = load_dinov2(BLOCK).eval()
    train = json.loads((synth / "metas" / "train.json").read_text())
    traces = {}
    for line in (a.run / "distill" / "train.jsonl").read_text().splitlines():
        d = json.loads(line)
        traces[d["image"]] = named_family(parse(d["text"]).reasoning) or "none"
    xtr = vc.features(model, synth, "train", 1)[0][BLOCK]
    targets = {"teacher": [traces.get(r["image"]) for r in train], "label": [r["family"] for r in train]}
    tests = {}
    for s in ("test", "test_xtype", "test_compound"):
        recs = json.loads((synth / "metas" / f"{s}.json").read_text())[::4 if s == "test" else 1]
        tests[s] = (vc.features(model, synth, s, 4 if s == "test" else 1)[0][BLOCK], [r["family"] for r in recs])
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    z = (xtr - mu) / sd
    cut = int(0.8 * len(z))
    res = {"run": str(a.run), "block": BLOCK, "features": "mean, std and CLS of block-4 tokens at 224 px",
           "n_train": len(z), "probes": {}}
    for name, ys in targets.items():
        keep = np.array([y is not None for y in ys])
        classes = sorted({y for y in ys if y is not None})
        onehot = np.array([[y == c for c in classes] for y in ys], dtype=float)

        def fit(rows, alpha):
            return vc.ridge(z[rows], onehot[rows], alpha)

        def classify(x, w):
            return [classes[i] for i in vc.predict(x, w).argmax(1)]

        first, last = keep.copy(), keep.copy()
        first[cut:], last[:cut] = False, False
        held = [y for y, k in zip(ys, last) if k]
        val = {al: np.mean([p == y for p, y in zip(classify(z[last], fit(first, al)), held)])
               for al in np.logspace(0, 4, 9)}
        alpha = float(max(val, key=val.get))
        w = fit(keep, alpha)
        row = {"alpha": alpha, "classes": classes, "held_out_train_agreement": round(float(val[alpha]), 4)}
        for s, (x, labels) in tests.items():
            row[s] = {"family_acc": family_accuracy(classify((x - mu) / sd, w), labels)}
        res["probes"][name] = row
        print(name, row, flush=True)
    res["seconds"] = round(time.time() - t0, 1)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
