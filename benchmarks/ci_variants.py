"""Stage-1 variants of Q-Ponder-CI, each trained and evaluated exactly like the demo's `ci` stage.

Every arm starts from a student (the demo's, a fresh one with other preset fields, or the demo's no-CoT model
for a curriculum), trains CoT SFT on the demo's distilled traces (or on traces distilled again with the arm's
teacher settings) with the demo's budget (300 steps, batch 8, lr 1e-3 cosine, seed 0) plus the arm's
overrides, and is evaluated greedy on the demo's splits (every 4th `test` image, all of the cross-domain ones),
with the demo's judge for the consistency rate. Arms whose SFT saw answer-only turns are also evaluated in
no-think mode.

    python benchmarks/ci_variants.py --run runs/demo --arms direct,layers6,layers6_direct
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

WIDE = {"lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6}  # the demo's `wide` preset

ARMS: dict[str, dict] = {
    "default": {"student": {}, "sft": {}},
    "direct": {"student": {}, "sft": {"direct_answers": True}},
    "layers6": {"student": {"vision_layers": 6}, "sft": {}},
    "layers6_direct": {"student": {"vision_layers": 6}, "sft": {"direct_answers": True}},
    "survey_first": {"student": {}, "distill": {"diagnosis_first": False}, "sft": {}},
    "dfirst": {"student": {}, "distill": {"diagnosis_first": True}, "sft": {}},
    "dfirst_curriculum": {"init": "sft_no_reasoning", "distill": {"diagnosis_first": True}, "sft": {}},
    "dfirst_layers6": {"student": {"vision_layers": 6}, "distill": {"diagnosis_first": True}, "sft": {}},
    # stop 5: the pretrained tower trained at its own small lr (the LM keeps 1e-3); no-CoT arms are the cheap probe
    "nocot": {"sft": {"reasoning": False}},
    "nocot_tower1e5": {"sft": {"reasoning": False, "freeze_vision": False, "vision_learning_rate": 1e-5}},
    "nocot_tower3e6": {"sft": {"reasoning": False, "freeze_vision": False, "vision_learning_rate": 3e-6}},
    "nocot_tower3e5": {"sft": {"reasoning": False, "freeze_vision": False, "vision_learning_rate": 3e-5}},
    "nocot_tower1e4": {"sft": {"reasoning": False, "freeze_vision": False, "vision_learning_rate": 1e-4}},
    "tower1e5": {"sft": {"freeze_vision": False, "vision_learning_rate": 1e-5}},
    # `direct` again, run on a demo whose traces are diagnosis-first (runs/demo_stop5); `direct` was survey-first
    "dfirst_direct": {"sft": {"direct_answers": True}},
    # stop 6: the loss weighted toward the tokens that need the image (diagnosis, verdict, answer)
    "weighted3": {"sft": {"loss_weights": "decisions:3"}},
    "weighted10": {"sft": {"loss_weights": "decisions:10"}},
    "tokens16": {"student": {"downsample": 4}, "sft": {}},  # 4x4 pixel shuffle: 16 richer image tokens, not 64
    # traces whose named family is not the distortion label are dropped too (1,302 -> 816 kept)
    "famcheck": {"distill": {"check_family": True}, "sft": {}},
    "famcheck_s1": {"distill": {"check_family": True}, "sft": {"seed": 1}},
    "famcheck_nocot": {"distill": {"check_family": True}, "sft": {"reasoning": False}},
    "famcheck_nocot_s1": {"distill": {"check_family": True}, "sft": {"reasoning": False, "seed": 1}},
    "default_s1": {"sft": {"seed": 1}},  # the data order alone, for the size of the noise
    "weighted3_s1": {"sft": {"loss_weights": "decisions:3", "seed": 1}},
    # stop 10: the teacher told the MOS (its score pulled 0.8 of the way to it; reasoning its own), so the MOS
    # filter keeps the images whose score the teacher misjudged: more traces, and more of the rare families
    "hint": {"distill": {"check_family": True, "use_mos_hint": True}, "sft": {}},
    "hint_s1": {"distill": {"check_family": True, "use_mos_hint": True}, "sft": {"seed": 1}},
    # stop 10: a perception turn per training image (the labelled family and level), beside the demo's traces
    "perceive": {"sft": {"perception_turns": True}},
    "perceive_s1": {"sft": {"perception_turns": True, "seed": 1}},
    "perceive_600": {"sft": {"perception_turns": True, "max_steps": 600}},
    # stop 10: the projector's SwiGLU 8x wider (2048, not the LM's 256): at init its tokens keep more of the
    # family a linear probe reads from the tower (benchmarks/reading_path.py)
    "proj2048": {"student": {"projector_intermediate": 2048}, "sft": {}},
    "proj2048_s1": {"student": {"projector_intermediate": 2048}, "sft": {"seed": 1}},
    "projlr5e3": {"sft": {"projector_learning_rate": 5e-3}},  # the projector at 5x the LM's lr
    "projlr5e3_s1": {"sft": {"projector_learning_rate": 5e-3, "seed": 1}},
    # a wider language model (384, 6 heads, not 256 and 4): is the reading of the image tokens a matter of size?
    "lm384": {"student": {"lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6}, "sft": {}},
    "lm384_s1": {"student": {"lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6}, "sft": {"seed": 1}},
    "lm384_nocot": {"student": {"lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6}, "sft": {"reasoning": False}},
    # stop 13: the wide student reading DINOv2 block 6, the best single block for a linear read-out of the MOS
    # (benchmarks/readout_ceiling.py: 0.730 / 0.687 / 0.809 against block 4's 0.685 / 0.603 / 0.780)
    "lm384_layers6": {"student": {"lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6, "vision_layers": 6},
                      "sft": {}},
    "lm384_layers6_s1": {"student": {"lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6, "vision_layers": 6},
                         "sft": {"seed": 1}},
    # stop 14: bf16 autocast (2.1x faster SFT steps here), at the demo's 300 steps and with the time it saves
    "lm384_bf16": {"student": {"lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6}, "sft": {"bf16": True}},
    "lm384_bf16_600": {"student": {"lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6},
                       "sft": {"bf16": True, "max_steps": 600}},
    "lm384_bf16_900": {"student": {"lm_hidden": 384, "lm_intermediate": 1536, "lm_heads": 6},
                       "sft": {"bf16": True, "max_steps": 900}},
    # stop 23: the demo's two SFT stages (600 steps) in bf16 on a machine whose demo trains in fp32, and the
    # no-CoT stage with another data order: is "no-CoT < CI" a property of the recipe or of the precision?
    "nocot600_bf16": {"sft": {"reasoning": False, "max_steps": 600, "bf16": True}},
    "nocot600_s1": {"sft": {"reasoning": False, "max_steps": 600, "seed": 1}},
    "ci600_bf16": {"sft": {"max_steps": 600, "bf16": True}},
    "ci600_s1": {"sft": {"max_steps": 600, "seed": 1}},
    "nocot600_bf16_s1": {"sft": {"reasoning": False, "max_steps": 600, "bf16": True, "seed": 1}},
    "nocot600_s2": {"sft": {"reasoning": False, "max_steps": 600, "seed": 2}},
    "nocot600_bf16_s2": {"sft": {"reasoning": False, "max_steps": 600, "bf16": True, "seed": 2}},
    "ci600_s2": {"sft": {"max_steps": 600, "seed": 2}},
    # stop 29: the no-CoT stage shares the CI's lr (1e-3), tuned for ~130-token targets; with six answer tokens per
    # sample it draws unordered score levels in bf16. Is the ablation under-tuned rather than weaker?
    "nocot600_bf16_lr3e4": {"sft": {"reasoning": False, "max_steps": 600, "bf16": True, "learning_rate": 3e-4}},
    "nocot600_bf16_lr3e4_s1": {"sft": {"reasoning": False, "max_steps": 600, "bf16": True, "learning_rate": 3e-4,
                                       "seed": 1}},
    "nocot600_bf16_lr1e4": {"sft": {"reasoning": False, "max_steps": 600, "bf16": True, "learning_rate": 1e-4}},
    "nocot600_bf16_lr1e4_s1": {"sft": {"reasoning": False, "max_steps": 600, "bf16": True, "learning_rate": 1e-4,
                                       "seed": 1}},
    # ... and the CI at the lr where the no-CoT stage found ordered levels
    "ci600_bf16_lr3e4": {"sft": {"max_steps": 600, "bf16": True, "learning_rate": 3e-4}},
    "ci600_bf16_lr3e4_s1": {"sft": {"max_steps": 600, "bf16": True, "learning_rate": 3e-4, "seed": 1}},
    # the curriculum again (CoT SFT from the no-CoT model), now that the no-CoT stage reads the image at 3e-4
    "ci600_bf16_lr3e4_from_nocot": {"init": "../bench29/nocot600_bf16_lr3e4/ci",
                                    "sft": {"max_steps": 600, "bf16": True, "learning_rate": 3e-4}},
    "ci600_bf16_lr3e4_from_nocot_s1": {"init": "../bench29/nocot600_bf16_lr3e4_s1/ci",
                                       "sft": {"max_steps": 600, "bf16": True, "learning_rate": 3e-4, "seed": 1}},
    # stop 32: block 6 again (stop 13 tried it under lr 1e-3 from the fresh student, 0.3 under its input's ceiling),
    # now with the current curriculum, whose no-CoT stage reaches the block-4 ridge read-out (0.671 against 0.685)
    **{f"{kind}600_bf16_lr3e4_layers6_s{seed}": {
        **({"student": dict(WIDE, vision_layers=6)} if kind == "nocot" else
           {"init": f"../bench32/nocot600_bf16_lr3e4_layers6_s{seed}/ci"}),
        "sft": {"max_steps": 600, "bf16": True, "learning_rate": 3e-4, "seed": seed,
                **({"reasoning": False} if kind == "nocot" else {})}}
       for kind in ("nocot", "ci") for seed in (1, 2)},
    # block 4's seed 2, the pair of the block-6 seed-2 arms (stop 29 ran seeds 0 and 1)
    "nocot600_bf16_lr3e4_s2": {"student": dict(WIDE), "sft": {"reasoning": False, "max_steps": 600, "bf16": True,
                                                              "learning_rate": 3e-4, "seed": 2}},
    "ci600_bf16_lr3e4_from_nocot_s2": {"init": "../bench32/nocot600_bf16_lr3e4_s2/ci",
                                       "sft": {"max_steps": 600, "bf16": True, "learning_rate": 3e-4, "seed": 2}},
    # stop 32: perception turns (the label's family and level, every labelled training image) in the CI stage, under
    # the current curriculum; stop 10 tried them at lr 1e-3 from the fresh student, where the CoT collapsed
    **{f"ci600_bf16_lr3e4_from_nocot_perceive_s{seed}": {
        "init": f"../bench{29 if seed < 2 else 32}/nocot600_bf16_lr3e4{'_s%d' % seed if seed else ''}/ci",
        "sft": {"max_steps": 600, "bf16": True, "learning_rate": 3e-4, "seed": seed, "perception_turns": True}}
       for seed in (0, 1, 2)},
    # stop 33: a gentler CoT stage from the same no-CoT models (the demo's CI drops test_xtype from 0.642 to 0.574)
    **{f"ci600_bf16_lr1e4_from_nocot_s{seed}": {
        "init": f"../bench{29 if seed < 2 else 32}/nocot600_bf16_lr3e4{'_s%d' % seed if seed else ''}/ci",
        "sft": {"max_steps": 600, "bf16": True, "learning_rate": 1e-4, "seed": seed}}
       for seed in (0, 1, 2)},
    # stop 33: the teacher told each image's family label (its traces lead with it; its score stays its own), so
    # the MOS filter alone decides which images keep a trace (1,302 instead of 816 on the demo's train split)
    **{f"ci600_bf16_lr3e4_from_nocot_famhint_s{seed}": {
        "init": f"../bench{29 if seed < 2 else 32}/nocot600_bf16_lr3e4{'_s%d' % seed if seed else ''}/ci",
        "distill": {"check_family": True, "use_family_hint": True},
        "sft": {"max_steps": 600, "bf16": True, "learning_rate": 3e-4, "seed": seed}}
       for seed in (0, 1, 2)},
    # stop 34: the tower warmed up on MOS and family labels first (qponder.train.tower, 350 steps of 16 images), then
    # the demo's curriculum from it; paired with nocot600_bf16_lr3e4[_sN] and ci600_bf16_lr3e4_from_nocot[_sN]
    **{f"nocot600_bf16_lr3e4_tower_s{seed}": {
        "tower": {"max_steps": 350, "seed": seed},
        "sft": {"reasoning": False, "max_steps": 600, "bf16": True, "learning_rate": 3e-4, "seed": seed}}
       for seed in (0, 1, 2)},
    **{f"ci600_bf16_lr3e4_from_nocot_tower_s{seed}": {
        "init": f"../bench34/nocot600_bf16_lr3e4_tower_s{seed}/ci",
        "sft": {"max_steps": 600, "bf16": True, "learning_rate": 3e-4, "seed": seed}}
       for seed in (0, 1, 2)},
    # stop 34: does the no-CoT student read more of its tokens with twice the steps? (frozen and warmed tower)
    **{f"nocot1200_bf16_lr3e4{tag}_s{seed}": {
        **({"init": f"../bench34/nocot600_bf16_lr3e4_tower_s{seed}/tower"} if tag else {}),
        "sft": {"reasoning": False, "max_steps": 1200, "bf16": True, "learning_rate": 3e-4, "seed": seed}}
       for seed in (0, 1) for tag in ("", "_tower")},
}


def _decisions(weight: float) -> dict[str, float]:
    from qponder.teachers.attribute import ANSWER_PATTERN, DIAGNOSIS_PATTERN, VERDICT_PATTERN

    return {DIAGNOSIS_PATTERN: weight, VERDICT_PATTERN: weight, ANSWER_PATTERN: weight}


KEYS = ("n", "srcc", "plcc", "family_acc", "severity_acc", "parse_fail_rate", "mean_tokens", "consistency_rate",
        "distinct_scores")


def main() -> None:
    import torch

    from qponder.data.records import load_records
    from qponder.eval.evaluate import evaluate
    from qponder.judge import TextJudge
    from qponder.models.build import init_model
    from qponder.score import Scorer, VLMPredictor
    from qponder.teachers.distill import DistillRecipe, distill
    from qponder.train.sft import SFTRecipe, train
    from qponder.train.tower import TowerRecipe, warm_up

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--arms", default="direct")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/ci_variants"))
    ap.add_argument("--results", type=Path, default=Path("benchmarks/results/ci_variants.json"))
    a = ap.parse_args()
    results = json.loads(a.results.read_text()) if a.results.exists() else {}
    judge = TextJudge.load(next((a.run / "judge").glob("*.json")))
    meta = a.run / "synth" / "metas"
    splits = {s: load_records(meta / f"{s}.json")[::4 if s == "test" else 1]
              for s in ("test", "test_xtype", "test_compound")}
    for arm in a.arms.split(","):
        spec, out = ARMS[arm], a.out / arm
        res = {"overrides": spec, "threads": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"),
               "sft_seconds": None, "think": {}, "no_think": {}}
        # "sft_no_reasoning": the no-CoT-then-CoT curriculum; "../bench29/ARM/ci": another arm's model
        student = a.run / spec.get("init", "student")
        if spec.get("student"):
            student = out / "student"
            if not (student / "model.safetensors").exists():
                init_model("default", student, **spec["student"])
        if spec.get("tower"):  # the student's tower warmed up on the train split's labels first
            warm_up(TowerRecipe(model=str(student), data=str(meta / "train.json"), out=str(out / "tower"),
                                **spec["tower"]), progress=False)
            student = out / "tower"
            res["tower_seconds"] = json.loads((student / "tower.json").read_text())["seconds"]
        data = a.run / "distill" / "train.jsonl"
        if spec.get("distill"):  # the demo's distillation with other teacher settings
            data = out / "distill" / "train.jsonl"
            if not (data.parent / "done").exists():
                distill(DistillRecipe(data=str(meta / "train.json"), out=str(data), **spec["distill"]), progress=False)
                (data.parent / "done").touch()
        sft = dict(spec["sft"])
        if isinstance(sft.get("loss_weights"), str):  # "decisions:W", kept short in the results file
            sft["loss_weights"] = _decisions(float(sft["loss_weights"].split(":")[1]))
        model = out / "ci"
        if not (model / "model.safetensors").exists():
            t0 = time.time()
            train(SFTRecipe(model=str(student), data=str(data), out=str(model),
                            report_to="none", logging_steps=50, save_steps=100, **sft))
            res["sft_seconds"] = round(time.time() - t0, 1)
        modes = [("think", True)] + ([("no_think", False)] if spec["sft"].get("direct_answers") else [])
        if spec["sft"].get("reasoning") is False:
            modes = [("no_think", False)]
        for mode, think in modes:
            pred = VLMPredictor(Scorer.from_pretrained(model, max_new_tokens=256), think=think)
            for split, recs in splits.items():
                s = evaluate(pred, meta / f"{split}.json", out / "eval" / mode / split, records=recs,
                             progress=False, judge=judge if think else None)
                scores = [json.loads(line).get("score") for line in
                          (out / "eval" / mode / split / "predictions.jsonl").read_text().splitlines()]
                s["distinct_scores"] = len({x for x in scores if x is not None})
                res[mode][split] = {k: s.get(k) for k in KEYS}
                print(arm, mode, split, res[mode][split], flush=True)
        results[arm] = res
        a.results.parent.mkdir(parents=True, exist_ok=True)
        a.results.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
