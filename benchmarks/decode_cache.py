"""A static KV cache against transformers' dynamic one, for the Scorer and for GRPO's rollouts, from one run's CI.

``qponder.models.precision.use_static_cache`` turns the static cache on for fp32 generation on a CPU. This
script measures why, on the machine it runs on: the Scorer (greedy, 192 new tokens, batch 32) in fp32 and in
bf16, each way, with the number of completions that came out identical; and the demo's GRPO step (8 images x 4
rollouts, fp32, its reward: the run's demo.yaml) for a few steps each way, with generation timed apart and the logged completion
lengths and rewards compared step by step.

    .venv/bin/python benchmarks/decode_cache.py --run runs/demo   # ~6 min on 2 cores; -> results/decode_cache_<cpu>.json
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def scorer(run: Path, n: int, repeats: int) -> dict:
    import torch
    from PIL import Image

    from qponder.models import load
    from qponder.score import Scorer

    names = [r["image"] for r in json.loads((run / "synth/metas/test.json").read_text())][:n]
    images = [Image.open(run / "synth/images" / name).convert("RGB") for name in names]
    out = {}
    for precision, dtype in (("fp32", None), ("bf16", torch.bfloat16)):
        model, processor = load(str(run / "ci"), dtype=dtype)
        ways = {way: Scorer(model, processor, batch_size=32, max_new_tokens=192, bf16=dtype is not None,
                            static_cache=way == "static") for way in ("dynamic", "static")}
        ways["dynamic"].generate(images[:4])  # warm-up: allocation and oneDNN's kernel choice
        best, texts = {w: float("inf") for w in ways}, {}
        for _ in range(repeats):  # alternated, so that a busier moment of the machine hits both ways alike
            for way, s in ways.items():
                t = time.perf_counter()
                res = [r for i in range(0, n, 32) for r in s.generate(images[i:i + 32])]
                best[way] = min(best[way], time.perf_counter() - t)
                texts[way] = [r[0] for r in res]
        out[precision] = {"images": n, "dynamic_seconds": round(best["dynamic"], 2),
                          "static_seconds": round(best["static"], 2),
                          "static_speedup": round(best["dynamic"] / best["static"], 3),
                          "identical_completions": sum(a == b for a, b in zip(texts["dynamic"], texts["static"]))}
    return out


def grpo(run: Path, steps: int, static: bool, work: Path) -> dict:
    from speed import hook_trainer

    from qponder.demo import grpo_reward_kwargs
    from qponder.train.grpo import GRPORecipe, train

    generate: list[float] = []

    def hook(trainer):
        fn = trainer._generate

        def timed(*a, **k):
            t = time.perf_counter()
            r = fn(*a, **k)
            generate.append(time.perf_counter() - t)
            return r

        trainer._generate = timed

    hook_trainer(hook)
    g = _demo_grpo(run)  # the run's own GRPO section: its batch, lengths and reward
    keys = ("rewards", "per_device_train_batch_size", "num_generations", "max_completion_length", "learning_rate",
            "beta", "temperature")
    r = dict(model=str(run / "ci"), data=str(run / "synth/metas/train.json"), out=str(work / f"grpo_{static}"),
             **{k: g[k] for k in keys if k in g}, max_steps=steps, logging_steps=1, save_steps=10 ** 6,
             report_to="none", seed=0, bf16=False, static_cache=static)
    r["reward_kwargs"] = grpo_reward_kwargs(r, run / "judge" / "judge.json")
    train(GRPORecipe(**r))
    log = [h for h in json.loads((work / f"grpo_{static}" / "trainer_state.json").read_text()) if "step_time" in h]
    timed = log[1:]  # the first step pays allocation and lazy initialisation
    return {"steps_timed": len(timed), "seconds_per_step": round(statistics.fmean(h["step_time"] for h in timed), 2),
            "generate_per_step": round(statistics.fmean(generate[1:]), 2),
            "per_step": [{k: h[k] for k in ("completions/mean_length", "reward", "kl")} for h in log]}


def _demo_grpo(run: Path) -> dict:
    import yaml

    return yaml.safe_load((run / "demo.yaml").read_text())["grpo"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=Path("runs/demo"), help="a finished demo run (its ci/, synth/, judge/)")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--steps", type=int, default=4, help="GRPO steps each way (the first is not timed)")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    import torch

    from qponder.models.precision import cpu_model

    res = {"cpu": cpu_model(), "threads": torch.get_num_threads(), "torch": torch.__version__, "run": str(a.run),
           "scorer": scorer(a.run, a.images, a.repeats)}
    print(json.dumps(res["scorer"], indent=1), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        res["grpo"] = {way: grpo(a.run, a.steps, way == "static", Path(tmp)) for way in ("dynamic", "static")}
    d, s = res["grpo"]["dynamic"], res["grpo"]["static"]
    res["grpo"]["same_log"] = d["per_step"] == s["per_step"]
    res["grpo"]["generate_speedup"] = round(d["generate_per_step"] / s["generate_per_step"], 3)
    res["grpo"]["step_speedup"] = round(d["seconds_per_step"] / s["seconds_per_step"], 3)
    out = a.out or Path(__file__).parent / "results" / f"decode_cache_{re.sub(r'[^a-z0-9]+', '_', res['cpu'].lower())}.json"
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "scorer"}, indent=1))


if __name__ == "__main__":
    main()
