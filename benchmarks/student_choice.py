"""Which embedded student sees quality best per CPU-minute?

Each variant is initialised offline, fine-tuned on the same stage-1 data (the attribute teacher's kept traces
on qponder-synth train, MOS as the target score), seed, batch and step budget, then evaluated on (every
``--test-stride``-th image of) the unseen-photo test split with greedy decoding.
Writes ``benchmarks/results/student_choice.json``.

    qponder distill --data runs/bench/synth/metas/train.json --out runs/bench/distill/train.jsonl
    .venv/bin/python benchmarks/student_choice.py --synth runs/bench/synth --distilled runs/bench/distill/train.jsonl
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

VARIANTS = {
    # name: (preset, overrides for the spec, SFT recipe overrides, steps (None: --steps))
    "default": ("default", {}, {}, None),
    "default-trainable-vision": ("default", {}, {"freeze_vision": False}, None),
    "default-trainable-vision-lr1e-4": ("default", {}, {"freeze_vision": False, "learning_rate": 1e-4}, None),
    "default-256tok": ("default-256", {}, {}, None),
    "dinov2-6blocks": ("default", {"vision_layers": 6}, {}, None),
    "smollm2-lora": ("smollm2", {}, {"lora": True, "lora_r": 16, "lora_alpha": 32, "learning_rate": 2e-4}, 60),
}


def run_variant(name: str, synth: Path, distilled: Path, work: Path, steps: int, batch: int, stride: int) -> dict:
    from qponder.eval.evaluate import evaluate
    from qponder.models.build import init_model
    from qponder.score import Scorer, VLMPredictor
    from qponder.train.sft import SFTRecipe, train

    from qponder.data.records import read_meta

    preset, spec_over, sft_over, own_steps = VARIANTS[name]
    steps = own_steps or steps
    t0 = time.time()
    card = init_model(preset, work / name / "init", **spec_over)
    t_init = time.time() - t0
    recipe = SFTRecipe(model=str(work / name / "init"), data=str(distilled),
                       out=str(work / name / "sft"), reasoning=True, max_steps=steps,
                       per_device_train_batch_size=batch, logging_steps=25,
                       save_steps=10 ** 6, report_to="none", seed=0, **sft_over)
    t0 = time.time()
    train(recipe)
    t_train = time.time() - t0
    scorer = Scorer.from_pretrained(work / name / "sft", max_new_tokens=256)
    test = read_meta(synth / "metas" / "test.json")[::stride]
    t0 = time.time()
    s = evaluate(VLMPredictor(scorer), synth / "metas" / "test.json", work / name / "eval", records=test,
                 progress=False)
    t_eval = time.time() - t0
    return {
        "variant": name, "preset": preset, "spec_overrides": spec_over, "sft_overrides": sft_over,
        "parameters": card["parameters"], "image_tokens": card["image_tokens"],
        "steps": steps, "batch": batch, "init_s": round(t_init, 1), "train_s": round(t_train, 1),
        "s_per_step": round(t_train / steps, 3), "eval_s": round(t_eval, 1),
        "test_n": s["n"], "srcc": s["srcc"], "plcc": s["plcc"], "parse_fail_rate": s["parse_fail_rate"],
        "family_acc": s.get("family_acc"), "mean_tokens": s["mean_tokens"], "images_per_second": s["images_per_second"],
        "srcc_per_train_minute": round(s["srcc"] / (t_train / 60), 4) if s["srcc"] else None,
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--synth", required=True, type=Path)
    ap.add_argument("--work", type=Path, default=Path("runs/bench/student_choice"))
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--distilled", required=True, type=Path)
    ap.add_argument("--test-stride", type=int, default=4)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/student_choice.json"))
    a = ap.parse_args()
    results = json.loads(a.out.read_text())["results"] if a.out.exists() else {}
    for name in a.variants.split(","):
        print(f"== {name}", flush=True)
        results[name] = run_variant(name, a.synth, a.distilled, a.work, a.steps, a.batch, a.test_stride)
        print(json.dumps(results[name]), flush=True)
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(),
                                     "synth": str(a.synth), "results": results}, indent=1))


if __name__ == "__main__":
    main()
