"""A few bf16 SFT and GRPO steps of the default student on one GPU: tokens/s and peak GPU memory.

    python benchmarks/gpu_smoke.py --work DIR [--sft-steps 20] [--grpo-steps 4] [--dry-run]

Called by benchmarks/gpu_smoke.sh. Without a GPU it stops with a clear error; --dry-run checks the arguments
and imports only (CPU-safe), so the script can be checked where no GPU is.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def tokens_of(log: list[dict]) -> float:
    return max((h["num_tokens"] for h in log if "num_tokens" in h), default=0.0)


def stage(name: str, fn) -> dict:
    import torch

    torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    out = fn()
    dt = time.perf_counter() - t
    log = json.loads((out / "trainer_state.json").read_text())
    tokens = tokens_of(log)
    r = {"stage": name, "seconds": round(dt, 1), "tokens": tokens, "tokens_per_second": round(tokens / dt, 1),
         "peak_gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2),
         "bf16_weights_saved": (out / "model.safetensors").exists()}
    print(json.dumps(r), flush=True)
    return r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="folder with student/ and synth/ (from gpu_smoke.sh)")
    ap.add_argument("--sft-steps", type=int, default=20)
    ap.add_argument("--grpo-steps", type=int, default=4)
    ap.add_argument("--dry-run", action="store_true", help="parse arguments and import, then stop (CPU-safe)")
    a = ap.parse_args(argv)
    import torch

    from qponder.train.grpo import GRPORecipe, train as grpo
    from qponder.train.sft import SFTRecipe, train as sft

    if a.dry_run:
        print(f"dry run: arguments and imports fine; CUDA available: {torch.cuda.is_available()}")
        return 0
    if not torch.cuda.is_available():
        print("error: no CUDA GPU visible (torch.cuda.is_available() is False); this smoke test needs one",
              file=sys.stderr)
        return 2
    meta = a.work / "synth" / "metas" / "train.json"
    common = dict(data=str(meta), bf16=True, report_to="none", logging_steps=1, save_steps=10_000)
    print(f"GPU: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    results = [stage("sft", lambda: sft(SFTRecipe(model=str(a.work / "student"), reasoning=False,
                                                   out=str(a.work / "sft"), max_steps=a.sft_steps,
                                                   per_device_train_batch_size=8, **common)))]
    results.append(stage("grpo", lambda: grpo(GRPORecipe(model=str(a.work / "sft"), out=str(a.work / "grpo"),
                                                          max_steps=a.grpo_steps, per_device_train_batch_size=8,
                                                          num_generations=8, max_completion_length=64, **common))))
    (a.work / "gpu_smoke.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
