"""Speed of the students on this machine: `model init` time, Scorer images/s (greedy), peak memory.

Each measurement runs in a fresh process so peak memory (max RSS) belongs to that model alone.
Writes ``benchmarks/results/scorer_speed.json``.

    .venv/bin/python benchmarks/scorer_speed.py --images runs/bench/synth/images --trained runs/bench/student_choice/default/sft
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path


def child(kind: str, arg: str, images: str, n: int, batch: int) -> dict:
    import resource

    import torch

    if kind == "init":
        from qponder.models.build import init_model

        t = time.time()
        card = init_model(arg, Path(images) / ".." / f"_speed_{arg}")
        return {"preset": arg, "init_seconds": round(time.time() - t, 2), "parameters": card["parameters"],
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}
    from qponder.score import Scorer

    files = sorted(Path(images).glob("*.png"))[:n]
    scorer = Scorer.from_pretrained(arg, batch_size=batch, max_new_tokens=256)
    scorer.score(files[:batch])  # warm-up: first calls pay one-off costs
    t = time.time()
    res = scorer.score(files)
    dt = time.time() - t
    return {"model": arg, "images": len(files), "batch": batch, "threads": torch.get_num_threads(),
            "images_per_second": round(len(files) / dt, 2), "mean_tokens": sum(r.tokens for r in res) / len(res),
            "parse_ok": sum(r.ok for r in res) / len(res),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", required=True)
    ap.add_argument("--trained", required=True, help="a trained default student (SFT output)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--child", nargs=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/scorer_speed.json"))
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.images, a.n, a.batch)))
        return
    runs = [("init", "tiny"), ("init", "default"), ("score", "preset:tiny"), ("score", a.trained)]
    results = []
    for kind, arg in runs:
        cmd = [sys.executable, __file__, "--images", a.images, "--trained", a.trained, "--n", str(a.n),
               "--batch", str(a.batch), "--child", kind, arg]
        out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
        if out.returncode:
            raise SystemExit(out.stderr[-2000:])
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(results[-1], flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                                 "results": results}, indent=1))


if __name__ == "__main__":
    main()
