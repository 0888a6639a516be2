"""Generation speed on a bf16 CPU, each way: GRPO steps with TRL's rollouts against the bf16 copy
(``bf16_rollouts``), and the Scorer with SDPA against ``fast_cpu_decode``, from one run's Q-Ponder-CI.

    python benchmarks/rollout_speed.py --run runs/demo --out benchmarks/results/rollout_speed.json

GRPO: the demo's reward and 4 x 4 batch, ``--steps`` steps per way (same seed), with ``_generate`` timed as
``benchmarks/speed.py`` times it. Scorer: bf16 weights, greedy, 192 new tokens, the first test images.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


def grpo(run: Path, steps: int, rollouts: bool, work: Path) -> dict:
    from speed import hook_trainer

    from qponder.demo import grpo_reward_kwargs
    from qponder.train.grpo import GRPORecipe, train

    generate = [0.0]

    def hook(trainer):
        fn = trainer._generate

        def timed(*a, **k):
            t = time.perf_counter()
            r = fn(*a, **k)
            generate[0] += time.perf_counter() - t
            return r

        trainer._generate = timed

    hook_trainer(hook)
    r = dict(model=str(run / "ci"), data=str(run / "synth/metas/train.json"), out=str(work / f"grpo_{rollouts}"),
             rewards="qponder", max_steps=steps, per_device_train_batch_size=16, num_generations=4,
             max_completion_length=192, learning_rate=2e-5, beta=0.04, logging_steps=1, save_steps=10 ** 6,
             report_to="none", seed=0, bf16=True, bf16_rollouts=rollouts)
    r["reward_kwargs"] = grpo_reward_kwargs(r, run / "judge" / "judge.json")
    train(GRPORecipe(**r))
    log = [h for h in json.loads((work / f"grpo_{rollouts}" / "trainer_state.json").read_text()) if "step_time" in h]
    step = statistics.fmean(float(h["step_time"]) for h in log)
    return {"steps": len(log), "seconds_per_step": round(step, 3), "generate_per_step": round(generate[0] / len(log), 3),
            "mean_completion_tokens": round(statistics.fmean(float(h["completions/mean_length"]) for h in log), 1)}


def scorer(run: Path, batches: list[int]) -> dict:
    import torch
    from PIL import Image

    import qponder.models.precision as precision
    from qponder.models import load
    from qponder.score import Scorer

    names = [r["image"] for r in json.loads((run / "synth/metas/test.json").read_text())][: max(batches)]
    images = [Image.open(run / "synth/images" / n).convert("RGB") for n in names]
    out, texts = {}, {}
    for way in ("sdpa", "fast_cpu_decode"):
        model, processor = load(str(run / "ci"), dtype=torch.bfloat16)
        switch = precision.fast_cpu_decode
        if way == "sdpa":
            precision.fast_cpu_decode = lambda m: False  # what the Scorer did before stop 15
        try:
            s = Scorer(model, processor, max_new_tokens=192, bf16=True)
        finally:
            precision.fast_cpu_decode = switch
        s.generate(images[:4])  # warm-up
        for b in batches:
            t = time.perf_counter()
            res = s.generate(images[:b])
            out[f"{way}_batch{b}_seconds"] = round(time.perf_counter() - t, 3)
            texts[(way, b)] = [r[0] for r in res]
    b = max(batches)
    out[f"identical_completions_batch{b}"] = sum(x == y for x, y in zip(texts[("sdpa", b)], texts[("fast_cpu_decode", b)]))
    return out


def attention(repeats: int = 200) -> dict:
    """One decode step's attention (16 sequences x 6 heads x 350 cached positions, head 64), in ms: SDPA in fp32
    and bf16, and the matmul path ``fast_cpu_decode`` takes for bf16."""
    from types import SimpleNamespace

    import torch

    from qponder.models.precision import _decode_attention

    def ms(f) -> float:
        for _ in range(10):
            f()
        t = time.perf_counter()
        for _ in range(repeats):
            f()
        return round((time.perf_counter() - t) / repeats * 1e3, 3)

    module = SimpleNamespace(training=False, is_causal=True, num_key_value_groups=1)
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        q, k, v = torch.randn(16, 6, 1, 64, dtype=dtype), torch.randn(16, 6, 350, 64, dtype=dtype), torch.randn(16, 6, 350, 64, dtype=dtype)
        mask = torch.zeros(16, 1, 1, 350, dtype=dtype)
        with torch.no_grad():
            out[f"sdpa_{name}_ms"] = ms(lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask))
            if dtype == torch.bfloat16:
                out["matmul_path_bf16_ms"] = ms(lambda: _decode_attention(module, q, k, v, mask))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("runs/demo"))
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/rollout_speed.json"))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        res = {"run": str(a.run), "grpo": {"trl_rollouts": grpo(a.run, a.steps, False, Path(tmp)),
                                           "bf16_copy": grpo(a.run, a.steps, True, Path(tmp))},
               "scorer": scorer(a.run, [16, 32]), "attention": attention()}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
