"""Paired SRCC of written answers and of expected scores, from saved evaluations (trains and scores nothing).

A student's written answer is the argmax of its digit distributions; the expected score (``qponder.models.expected``)
reads the whole distribution, and can show what a model knows that its answers hide (docs/results.md, stop 7). Each
``--pair WITH:WITHOUT`` names two evaluation folders holding one ``SPLIT/summary.json`` per split, e.g. the
``eval/no_think`` folders of two ``ci_variants.py`` arms of the same seed.

    python benchmarks/expected_pairs.py --pair runs/bench34/ARM_s0/eval/no_think:runs/bench29/ARM/eval/no_think \\
        --out benchmarks/results/expected_pairs.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SPLITS = ("test", "test_xtype", "test_compound")
READS = ("score", "expected")


def srcc(folder: Path, split: str, read: str) -> float:
    """The evaluator's own figure (a failed answer counts as the median answer, as in every table)."""
    f = folder / split / "summary.json"
    if not f.is_file():
        raise SystemExit(f"{f}: no evaluation summary")
    value = json.loads(f.read_text()).get("srcc" if read == "score" else "srcc_expected")
    if value is None:
        raise SystemExit(f"{f}: no {read!r} SRCC (an evaluation from before stop 7, or not a VLM)")
    return float(value)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pair", action="append", required=True, help="WITH_DIR:WITHOUT_DIR")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    rows = []
    for pair in a.pair:
        with_dir, without_dir = map(Path, pair.split(":"))
        row = {"with": str(with_dir), "without": str(without_dir)}
        for read in READS:
            w = {s: srcc(with_dir, s, read) for s in SPLITS}
            wo = {s: srcc(without_dir, s, read) for s in SPLITS}
            row[read] = {"with": w, "without": wo, "diff": {s: w[s] - wo[s] for s in SPLITS}}
        rows.append(row)
    mean = {read: {s: statistics.mean(r[read]["diff"][s] for r in rows) for s in SPLITS} for read in READS}
    print("| pair | read as | without, test / xtype / compound | with | with − without |")
    print("|---|---|---|---|---|")
    fmt = lambda d, sign="": " / ".join(f"{d[s]:{sign}.3f}" for s in SPLITS)  # noqa: E731
    for i, r in enumerate(rows):
        for read in READS:
            d = r[read]
            print(f"| {i} | {read} | {fmt(d['without'])} | {fmt(d['with'])} | {fmt(d['diff'], '+')} |")
    for read in READS:
        print(f"| **mean** | {read} | | | **{fmt(mean[read], '+')}** |")
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"pairs": rows, "mean_diff": mean}, indent=1))


if __name__ == "__main__":
    main()
