"""Can the student learn to name the distortion family when the label is its only target? (a diagnostic)

Trains the demo's student on perception turns alone (``SFTRecipe.perception_turns`` over every image of the
run's distilled JSONL, with no reasoning traces), then asks each `test` image (every 4th, as the demo) the
perception question and scores the family it names against the label, over the distorted images. Compare with
the linear probe on the tower's features (``diagnosis_ceiling.py``, ``reading_path.py``): the gap is what the
image-to-words path has not learnt.

    python benchmarks/perception_only.py --run runs/demo_stop8 --steps 300,900
    python benchmarks/perception_only.py --run runs/demo27 --ask runs/bench32/ARM/ci --results FILE   # ask only
"""

from __future__ import annotations

import argparse
import collections
import json
import time
from pathlib import Path


def name_families(folder: Path, synth: Path, batch: int = 16) -> dict:
    from PIL import Image

    from qponder.data.records import load_records
    from qponder.eval.reasoning import named_family
    from qponder.score import Scorer

    s = Scorer.from_pretrained(folder, max_new_tokens=24)
    recs = load_records(synth / "metas" / "test.json")[::4]
    named, answers = collections.defaultdict(collections.Counter), collections.Counter()
    for i in range(0, len(recs), batch):
        part = recs[i:i + batch]
        images = [Image.open(synth / "images" / r.image).convert("RGB") for r in part]
        for r, (t, _, _) in zip(part, s.generate(images, prompt="student_perceive")):
            named[r.family][named_family(t) or "none"] += 1
            answers[t.strip()] += 1
    distorted = {f: c for f, c in named.items() if f != "none"}
    n = sum(sum(c.values()) for c in distorted.values())
    return {"family_acc": round(sum(c[f] for f, c in distorted.items()) / n, 4), "n_distorted": n,
            "distinct_answers": len(answers), "named": {f: dict(c.most_common()) for f, c in sorted(named.items())}}


def main() -> None:
    from qponder.train.sft import SFTRecipe, train

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--steps", default="300,900")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/perception_only"))
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/perception_only.json"))
    ap.add_argument("--ask", default="", help="model folders, comma-separated: only ask them the perception question "
                    "(e.g. CIs trained with perception turns beside the traces), no training")
    a = ap.parse_args()
    results = json.loads(a.results.read_text()) if a.results.exists() else {}
    if a.ask:
        for folder in a.ask.split(","):
            results[folder] = name_families(Path(folder), a.run / "synth")
            print(folder, {k: v for k, v in results[folder].items() if k != "named"}, flush=True)
        a.results.parent.mkdir(parents=True, exist_ok=True)
        a.results.write_text(json.dumps(results, indent=1))
        return
    data = a.out / "perception.jsonl"
    if not data.exists():  # every distilled image, none of its traces: kept=false leaves the perception turn only
        a.out.mkdir(parents=True, exist_ok=True)
        rows = [json.loads(line) for line in (a.run / "distill" / "train.jsonl").read_text().splitlines() if line]
        data.write_text("".join(json.dumps({**r, "kept": False}) + "\n" for r in rows))
    for steps in map(int, a.steps.split(",")):
        model, t0, seconds = a.out / f"steps_{steps}", time.time(), None
        if not (model / "model.safetensors").exists():
            train(SFTRecipe(model=str(a.run / "student"), data=str(data), out=str(model), perception_turns=True,
                            max_steps=steps, report_to="none", logging_steps=50, save_steps=100_000))
            seconds = round(time.time() - t0, 1)
        res = {"steps": steps, "sft_seconds": seconds, **name_families(model, a.run / "synth")}
        results[f"steps_{steps}"] = res
        print(steps, {k: v for k, v in res.items() if k != "named"}, flush=True)
        a.results.parent.mkdir(parents=True, exist_ok=True)
        a.results.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
