"""Which distortion families does each model's reasoning name? Per labelled family, from saved predictions.

The report's table (``qponder.report.family_naming``) for any set of evaluations, e.g. the arms of
``ci_variants.py``, with a mean over the seeds of each group. Trains and scores nothing.

    python benchmarks/family_naming.py --group 'base=runs/bench29/ci600_bf16_lr3e4_from_nocot/eval/think/test,...' \\
        --group 'hint=runs/bench33/ci600_bf16_lr3e4_from_nocot_famhint_s0/eval/think/test,...' --out FILE
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path


def naming(pred_dir: Path) -> dict:
    from qponder.eval.reasoning import reasoning_metrics, with_reasoning

    f = pred_dir / "predictions.jsonl"
    if not f.is_file():
        raise SystemExit(f"{f}: no predictions")
    m = reasoning_metrics(with_reasoning([json.loads(x) for x in f.read_text().splitlines() if x.strip()]))
    return {"family_acc": m["family_acc"], "by_family": m["family_by_family"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--group", action="append", required=True, help="NAME=DIR,DIR,... (eval folders of one split)")
    ap.add_argument("--traces", action="append", default=[], help="NAME=JSONL: a distillation's kept traces per family")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    res = {}
    for g in a.group:
        name, _, dirs = g.partition("=")
        runs = {d: naming(Path(d)) for d in dirs.split(",")}
        fams = sorted({f for r in runs.values() for f in r["by_family"]})
        mean = {f: round(statistics.mean(r["by_family"][f]["acc"] for r in runs.values()), 4) for f in fams}
        res[name] = {"runs": runs, "mean_by_family": mean,
                     "mean_family_acc": round(statistics.mean(r["family_acc"] for r in runs.values()), 4),
                     "mean_macro": round(statistics.mean(mean.values()), 4)}
    kept = {}
    for t in a.traces:
        name, _, path = t.partition("=")
        rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
        kept[name] = dict(sorted(Counter(r["family"] for r in rows if r.get("kept")).items()))
        print(f"kept traces, {name}: {sum(kept[name].values())}", kept[name])
    a.out.write_text(json.dumps({**res, **({"kept_traces": kept} if kept else {})}, indent=1))
    fams = sorted({f for r in res.values() for f in r["mean_by_family"]}, key=lambda f: ("+" in f, f))
    print("| group (mean over its runs) | " + " | ".join(fams) + " | all | per-family mean |")
    print("|---|" + "---|" * (len(fams) + 2))
    for name, r in res.items():
        print(f"| {name} ({len(r['runs'])}) | " + " | ".join(f"{r['mean_by_family'].get(f, float('nan')):.3f}"
                                                          for f in fams)
              + f" | {r['mean_family_acc']:.3f} | {r['mean_macro']:.3f} |")


if __name__ == "__main__":
    main()
