"""Classical baselines (BRISQUE, NIQE) on qponder-synth's test splits, on the same images as stage1.py.
Writes ``benchmarks/results/baselines.json``.

    .venv/bin/python benchmarks/baselines.py --synth runs/bench/synth
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qponder.data.records import read_meta
from qponder.eval.baselines import create_baseline
from qponder.eval.evaluate import evaluate

ap = argparse.ArgumentParser()
ap.add_argument("--synth", type=Path, required=True)
ap.add_argument("--test-stride", type=int, default=4)
ap.add_argument("--work", type=Path, default=Path("runs/bench/baselines"))
a = ap.parse_args()
res = {}
for name in ("brisque", "niqe"):
    res[name] = {}
    for split in ("test", "test_xtype", "test_compound"):
        meta = a.synth / "metas" / f"{split}.json"
        recs = read_meta(meta)
        recs = recs[:: a.test_stride] if split == "test" else recs
        s = evaluate(create_baseline(name), meta, a.work / name / split, records=recs, progress=False)
        res[name][split] = {k: s[k] for k in ("n", "srcc", "plcc", "plcc_logistic", "krcc", "images_per_second")}
        print(name, split, res[name][split], flush=True)
Path("benchmarks/results/baselines.json").write_text(json.dumps(res, indent=1))
