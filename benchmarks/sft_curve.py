"""SRCC of the default student along one longer SFT schedule: checkpoints evaluated on every 4th test image.

    .venv/bin/python benchmarks/sft_curve.py 900 runs/bench/ci_900

Writes benchmarks/results/sft_curve_<out name>.json.
"""
import json, sys, time
from pathlib import Path
from qponder.train.sft import SFTRecipe, train
from qponder.eval.evaluate import evaluate
from qponder.score import Scorer, VLMPredictor
from qponder.data.records import read_meta
steps = int(sys.argv[1]); out = Path(sys.argv[2]); extra = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
t = time.time()
train(SFTRecipe(model="runs/bench/student_choice/default/init", data="runs/bench/distill/train.jsonl", out=str(out),
                max_steps=steps, logging_steps=50, save_steps=steps // 3, save_total_limit=5, report_to="none", **extra))
res = {"train_s": round(time.time() - t, 1), "steps": steps, "extra": extra, "curve": {}}
test = read_meta("runs/bench/synth/metas/test.json")[::4]
for ck in sorted((out / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])):
    s = evaluate(VLMPredictor(Scorer.from_pretrained(ck, max_new_tokens=256)), "runs/bench/synth/metas/test.json",
                 out / "eval" / ck.name, records=test, progress=False)
    res["curve"][ck.name] = {k: s.get(k) for k in ("n", "srcc", "plcc", "family_acc", "parse_fail_rate")}
    print(ck.name, res["curve"][ck.name], flush=True)
Path("benchmarks/results").mkdir(exist_ok=True)
Path(f"benchmarks/results/sft_curve_{out.name}.json").write_text(json.dumps(res, indent=1))
