"""Training and inference speed of the demo's student on this machine, in one run.

Measures (1) fp32 and bf16 matmul FLOP/s, (2) SFT samples/s and tokens/s, (3) GRPO step time split into
generation / reward / log-probs / update, (4) the share of the matmul peak that SFT reaches, and
(5) Scorer images/s with and without reasoning, all in the precision the pipeline picks here
(``--precision``; bf16 where the CPU has it natively). Writes ``benchmarks/results/speed.json`` and prints a
markdown table. Artefacts (quick synth, student, distilled traces) are built once under --work and reused.
SFT and GRPO run as the pipeline runs them, with the frozen tower's features cached per image
(``qponder.models.tower_cache``): the FLOP count includes the tower only for the images it really computed. The
Scorer is timed as a user gets it: without the cache (``Scorer(tower_cache=False)``, the default).

    .venv/bin/python benchmarks/speed.py                  # full run (~10 min on 2 cores)
    .venv/bin/python benchmarks/speed.py --quick          # smoke test: few steps, few images
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

from qponder.demo import DemoRecipe

QPONDER = str(Path(sys.executable).with_name("qponder"))
WARMUP = 3  # steps / batches excluded from every timing: first calls pay allocation and lazy-init costs


def matmul_flops(sizes: list[int], repeats: int, dtype: str = "float32") -> dict:
    """Square matmul FLOP/s (2 n^3 per product): the ceiling the training numbers are compared to."""
    import torch

    out = {}
    for n in sizes:
        a, b = (torch.randn(n, n, dtype=getattr(torch, dtype)) for _ in range(2))
        a @ b  # warm-up
        rates = []
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            rates.append(2 * n ** 3 / (time.perf_counter() - t))
        out[str(n)] = {"best_gflops": round(max(rates) / 1e9, 1), "median_gflops": round(statistics.median(rates) / 1e9, 1)}
    return out


def build(work: Path, preset: str) -> dict:
    """Quick synth, the student and distilled traces, each skipped when already there."""
    steps = [(work / "synth/metas/train.json", ["data", "build", "--quick", "--out", work / "synth"]),
             (work / "student/config.json", ["model", "init", "--preset", preset, "--out", work / "student"]),
             (work / "distill.jsonl", ["distill", "--config", "recipes/distill.yaml", "--data",
                                       work / "synth/metas/train.json", "--out", work / "distill.jsonl"])]
    seconds = {}
    for done, cmd in steps:
        if not done.exists():
            t = time.time()
            subprocess.run([QPONDER, *map(str, cmd)], check=True, stdout=subprocess.DEVNULL)
            seconds[cmd[0] + " " + cmd[1]] = round(time.time() - t, 1)
    return seconds


def hook_trainer(hook):
    """Let ``hook(trainer)`` instrument the trainer that qponder's train() builds, without editing qponder."""
    import qponder.train.common as common

    original = common.run

    def run(trainer, *a, **k):
        common.run = original  # one-shot: the next stage installs its own hook
        hook(trainer)
        return original(trainer, *a, **k)

    common.run = run  # sft.train / grpo.train import `run` at call time, so they pick this up


def step_clock(trainer, then=None) -> list:
    """Timestamps of every optimizer-step end (gaps include data loading, as real training does)."""
    from transformers import TrainerCallback

    ends: list[float] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            ends.append(time.perf_counter())
            then and then(ends[-1])

    trainer.add_callback(Clock())
    return ends


def param_counts(model) -> dict:
    """Parameters by the role they play in the FLOP estimate (input embeddings are lookups, not matmuls)."""
    from qponder.train.common import vision_modules

    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    inner = model.model
    lm = n(inner.language_model) - model.get_input_embeddings().weight.numel() + model.lm_head.weight.numel()
    return {"vision_frozen": n(vision_modules(model)), "projector": n(inner.multi_modal_projector),
            "lm_matmul": lm, "total": n(model)}


def bench_sft(work: Path, steps: int, bf16: bool) -> dict:
    from qponder.models.tower_cache import shared_cache
    from qponder.train.sft import SFTRecipe, train

    state: dict = {}

    def hook(trainer):
        batches = state["batches"] = []
        collate = trainer.data_collator
        image_id = trainer.model.config.image_token_id
        patch = trainer.model.config.vision_config.patch_size

        def counting(examples):  # the collated batch is what the model really sees: count its tokens
            b = collate(examples)
            batches.append({"tokens": int(b["attention_mask"].sum()), "loss_tokens": int((b["labels"] != -100).sum()),
                            "image_tokens": int((b["input_ids"] == image_id).sum()), "samples": len(examples),
                            "patches": (b["pixel_values"].shape[-1] // patch) ** 2 + 1})  # + CLS token
            return b

        trainer.data_collator = counting
        cache = shared_cache()
        misses = state["misses"] = []
        state["ends"] = step_clock(trainer, then=lambda t: misses.append(cache.misses if cache else None))
        state["params"] = param_counts(trainer.model)

    hook_trainer(hook)
    t = time.time()
    train(SFTRecipe(model=str(work / "student"), data=str(work / "distill.jsonl"), out=str(work / "sft"),
                    max_steps=steps + WARMUP, logging_steps=10 ** 6, save_steps=10 ** 6, report_to="none", bf16=bf16))
    gaps = [b - a for a, b in zip(state["ends"][WARMUP - 1:], state["ends"][WARMUP:])]
    per = {k: statistics.fmean(b[k] for b in state["batches"]) for k in state["batches"][0]}
    sec = statistics.fmean(gaps)
    timed_samples = per["samples"] * len(gaps)
    m = state["misses"]
    # tower runs per sample in the timed steps: 1 without the cache, less once images come round again
    tower = 1.0 if m[0] is None else (m[-1] - m[WARMUP - 1]) / timed_samples
    return {"steps_timed": len(gaps), "batch": SFTRecipe.per_device_train_batch_size,
            "mean_samples_per_batch": round(per["samples"], 2), "seconds_per_step": round(sec, 3),
            "fastest_step_seconds": round(min(gaps), 3),  # the least disturbed step, when the machine is shared
            "samples_per_second": round(per["samples"] / sec, 2), "tokens_per_second": round(per["tokens"] / sec),
            "loss_tokens_per_second": round(per["loss_tokens"] / sec), "mean_tokens_per_sample": round(per["tokens"] / per["samples"], 1),
            "token_count": "collated batches: attention_mask sum (prompt + 64 image tokens + target), averaged over all batches",
            "params": state["params"], "vision_patches_per_image": per["patches"],
            "tower_runs_per_sample": round(tower, 3),
            "image_tokens_per_sample": per["image_tokens"] / per["samples"], "wall_seconds": round(time.time() - t, 1)}


def flop_share(sft: dict, peak_gflops: float) -> dict:
    """Model FLOP/s of SFT over the matmul peak: trained parts cost 6 N per token (fwd + bwd), the frozen
    vision tower 2 N per patch (forward only: no trainable parameter sits before it), counted for the images it
    computed rather than read from the cache. Attention scores ignored."""
    p, sps = sft["params"], sft["samples_per_second"]
    per_sample = (6 * p["lm_matmul"] * sft["mean_tokens_per_sample"] + 6 * p["projector"] * sft["image_tokens_per_sample"]
                  + 2 * p["vision_frozen"] * sft["vision_patches_per_image"] * sft["tower_runs_per_sample"])
    achieved = per_sample * sps / 1e9
    return {"formula": "(6*N_lm*T_lm + 6*N_proj*T_img + 2*N_vision*P*R) * samples/s / matmul peak; N_lm = LM without "
                       "input embeddings + lm_head, T_lm = tokens/sample, T_img = image tokens/sample, P = patches/image, "
                       "R = tower runs per sample (the rest read from the cache)",
            "gflop_per_sample": round(per_sample / 1e9, 2), "achieved_gflops": round(achieved, 1),
            "peak_gflops": peak_gflops, "share_of_peak": round(achieved / peak_gflops, 3)}


def bench_grpo(work: Path, model: str, steps: int, bf16: bool) -> dict:
    from qponder.rewards import PRESETS
    from qponder.train.grpo import GRPORecipe, train

    parts = {"generate": 0.0, "reward": 0.0, "prepare": 0.0}
    snaps, gen_tokens = [], []

    def timed(trainer, name, key, after=None):
        fn = getattr(trainer, name)

        def wrapper(*a, **k):
            t = time.perf_counter()
            r = fn(*a, **k)
            parts[key] += time.perf_counter() - t
            after and after(r)
            return r

        setattr(trainer, name, wrapper)  # instance attribute shadows the method; TRL calls self.<name>

    def hook(trainer):
        timed(trainer, "_generate", "generate", lambda r: gen_tokens.append(sum(len(c) for c in r[1])))
        timed(trainer, "_calculate_rewards", "reward")
        # everything between a batch and its loss: generation, rewards, old/ref log-probs, padding
        timed(trainer, "_generate_and_score_completions", "prepare")
        step_clock(trainer, then=lambda t: snaps.append((t, dict(parts))))

    from qponder.models.tower_cache import shared_cache

    cache = shared_cache()
    before = (cache.hits, cache.misses) if cache else None
    hook_trainer(hook)
    recipe = GRPORecipe(model=model, data=str(work / "synth/metas/train.json"), out=str(work / "grpo"),
                        max_steps=steps + 1, per_device_train_batch_size=8, num_generations=8,
                        max_completion_length=192, logging_steps=10 ** 6, save_steps=10 ** 6, report_to="none", bf16=bf16)
    train(recipe)
    rows = []
    for (t0, p0), (t1, p1) in zip(snaps, snaps[1:]):  # step 1 is warm-up: per-step deltas of steps 2..
        d = {k: p1[k] - p0[k] for k in parts}
        rows.append({"step": t1 - t0, "generate": d["generate"], "reward": d["reward"],
                     "logps_other": d["prepare"] - d["generate"] - d["reward"], "update": t1 - t0 - d["prepare"]})
    mean = {k: round(statistics.fmean(r[k] for r in rows), 3) for k in rows[0]}
    toks = statistics.fmean(gen_tokens[1:])
    shape = {k: getattr(recipe, k) for k in ("per_device_train_batch_size", "num_generations", "max_completion_length")}
    return {"steps_timed": len(rows), **shape, "rewards": PRESETS.get(recipe.rewards, recipe.rewards) if isinstance(recipe.rewards, str) else recipe.rewards,
            "seconds": mean,
            "share": {k: round(v / mean["step"], 3) for k, v in mean.items()},
            "mean_completion_tokens": round(toks / recipe.per_device_train_batch_size, 1),
            "generated_tokens_per_second": round(toks / mean["generate"], 1),
            "tower_cache": None if cache is None else {"hits": cache.hits - before[0], "misses": cache.misses - before[1]},
            "update": "step gap minus _generate_and_score_completions: forward/backward/optimizer + batch fetch",
            "logps_other": "_generate_and_score_completions minus generation and rewards: old/ref log-probs, padding"}


def bench_scorer(work: Path, model: str, n: int, batch: int, bf16: bool) -> dict:
    from qponder.data.records import read_meta
    from qponder.eval.evaluate import default_image_root
    from qponder.score import Scorer

    meta = work / "synth/metas/test.json"
    recs = read_meta(meta)[:n]
    files = [r.path(default_image_root(meta, recs)) for r in recs]
    scorer = Scorer.from_pretrained(model, batch_size=batch, max_new_tokens=256, bf16=bf16)  # no tower cache, as a user's
    out = {}
    for think in (True, False):
        scorer.score(files[:batch], think=think)  # warm-up batch
        t = time.perf_counter()
        res = scorer.score(files, think=think)
        dt = time.perf_counter() - t
        out["think" if think else "no_think"] = {
            "images": len(files), "batch": batch, "images_per_second": round(len(files) / dt, 2),
            "mean_generated_tokens": round(statistics.fmean(r.tokens for r in res), 1),
            "tokens_per_second": round(sum(r.tokens for r in res) / dt, 1), "parse_ok": sum(r.ok for r in res) / len(res)}
    return out


def table(r: dict) -> str:
    mm, s, g, f, sc = r["matmul"], r["sft"], r["grpo"], r["flops"], r["scorer"]
    big = mm[max(mm, key=int)]
    gs = g["seconds"]
    rows = [("fp32 matmul", f"{big['best_gflops']} GFLOP/s best, {big['median_gflops']} median "
                            f"(n={max(mm, key=int)}, {r['threads']} threads)"),
            *[("bf16 matmul", f"{b['best_gflops']} GFLOP/s best, {b['median_gflops']} median (n={max(mb, key=int)})")
              for mb in [r.get("matmul_bf16")] if mb for b in [mb[max(mb, key=int)]]],
            ("training and Scorer precision", "bf16 (autocast; Scorer: bf16 weights)" if r.get("bf16") else "fp32"),
            ("SFT", f"{s['samples_per_second']} samples/s, {s['tokens_per_second']} tokens/s "
                    f"({s['seconds_per_step']} s/step, fastest {s['fastest_step_seconds']}, batch {s['batch']}, {s['steps_timed']} steps; "
                    f"tower run for {s.get('tower_runs_per_sample', 1.0):.0%} of samples, the rest cached)"),
            ("SFT share of matmul peak", f"{f['share_of_peak']:.0%} ({f['achieved_gflops']} of {f['peak_gflops']} GFLOP/s, "
                                         f"{f['gflop_per_sample']} GFLOP/sample)"),
            ("GRPO step", f"{gs['step']} s = generate {gs['generate']} + reward {gs['reward']} + log-probs "
                          f"{gs['logps_other']} + update {gs['update']} ({g['steps_timed']} steps, {g['per_device_train_batch_size']} completions "
                          f"of {g['num_generations']} per prompt, "
                          f"{g['mean_completion_tokens']} tokens/completion)"),
            *[(f"Scorer, {k.replace('_', '-')}", f"{v['images_per_second']} images/s, {v['mean_generated_tokens']} "
                                                  f"tokens/image (batch {v['batch']}, greedy)") for k, v in sc.items()]]
    return "| measure | result |\n|---|---|\n" + "\n".join(f"| {a} | {b} |" for a, b in rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, help="where the quick synth, student and traces are built (default: "
                    "/tmp/qponder-speed-PRESET)")
    ap.add_argument("--preset", default=DemoRecipe.preset, help="student preset (default: the demo's, %(default)s)")
    ap.add_argument("--sft-steps", type=int, default=20, help="timed SFT steps (plus %d warm-up)" % WARMUP)
    ap.add_argument("--grpo-steps", type=int, default=5, help="timed GRPO steps (plus 1 warm-up)")
    ap.add_argument("--images", type=int, default=32, help="test images for the Scorer")
    ap.add_argument("--trained-model", help="an SFT output for GRPO and the Scorer (default: this run's short SFT, "
                    "which is undertrained: its completions run to the length cap and never parse)")
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core); on a busy "
                    "machine 1 thread avoids OpenMP threads waiting on each other")
    ap.add_argument("--quick", action="store_true", help="smoke test: 4 SFT, 2 GRPO steps, 8 images")
    ap.add_argument("--out", type=Path, help="default: benchmarks/results/speed.json (--quick: WORK/speed-quick.json)")
    ap.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                    help="auto: what the pipeline does here (bf16 where the CPU has it natively)")
    a = ap.parse_args()
    a.work = a.work or Path(f"/tmp/qponder-speed-{a.preset}")
    if a.quick:
        a.sft_steps, a.grpo_steps, a.images = 4, 2, 8
    a.out = a.out or (a.work / "speed-quick.json" if a.quick else Path("benchmarks/results/speed.json"))
    os.nice(max(0, 5 - os.nice(0)))  # other jobs share the cores: be the polite one (children inherit it)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    r = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
         "threads": torch.get_num_threads(), "torch": torch.__version__, "nice": os.nice(0),
         "loadavg_at_start": [round(x, 2) for x in os.getloadavg()], "quick": a.quick}
    r["matmul"] = matmul_flops([1024] if a.quick else [1024, 2048], 3 if a.quick else 5)
    r["matmul_bf16"] = matmul_flops([1024] if a.quick else [1024, 2048], 3 if a.quick else 5, "bfloat16")
    print("matmul", r["matmul"], "bf16", r["matmul_bf16"], flush=True)
    from qponder.models.precision import use_bf16

    bf16 = r["bf16"] = use_bf16({"auto": None, "bf16": True, "fp32": False}[a.precision])
    r["preset"] = a.preset
    r["build_seconds"] = build(a.work, a.preset)
    r["sft"] = bench_sft(a.work, a.sft_steps, bf16)
    print("sft", r["sft"], flush=True)
    # the share is of the peak of the precision the matmuls ran in; the fp32 share is kept beside it
    peak = max(v["best_gflops"] for v in r["matmul_bf16" if bf16 else "matmul"].values())
    r["flops"] = flop_share(r["sft"], peak)
    r["flops"]["share_of_fp32_peak"] = round(r["flops"]["achieved_gflops"] / max(
        v["best_gflops"] for v in r["matmul"].values()), 3)
    model = a.trained_model or str(a.work / "sft")
    r["grpo"] = bench_grpo(a.work, model, a.grpo_steps, bf16)
    print("grpo", r["grpo"], flush=True)
    r["scorer"] = bench_scorer(a.work, model, a.images, 8, bf16)
    r["model_for_grpo_and_scorer"] = model
    r["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    r["matmul_at_end"] = matmul_flops([1024], 5)  # a drop from the start means the machine got busier
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(r, indent=1))
    print(table(r))


if __name__ == "__main__":
    main()
