"""Does bf16 pay on this CPU? fp32 and bf16 matmul speed, and what ``bf16: null`` ("auto") decides here.

The CPU flags say whether bf16 dot products exist, not whether torch runs them faster: the AMD build machine
(AVX512-BF16) ran a bf16 matmul 4.3x faster than fp32, an Intel Xeon with AVX512-BF16 and no AMX at half the
fp32 speed. ``qponder.models.precision`` therefore times one small matmul both ways before it picks bf16; this
script measures the same at the sizes the students use and records the machine beside it.

    .venv/bin/python benchmarks/precision_probe.py     # -> benchmarks/results/precision_probe_<cpu>.json
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path


def gflops(fn, flop: float, seconds: float = 0.5) -> float:
    fn()  # oneDNN picks and caches its kernel on the first call
    best = 0.0
    for _ in range(3):
        t, k = time.perf_counter(), 0
        while time.perf_counter() - t < seconds / 3:
            fn()
            k += 1
        best = max(best, flop * k / (time.perf_counter() - t) / 1e9)
    return round(best, 1)


def main() -> None:
    import torch

    from qponder.models import precision

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    info = precision._cpuinfo()
    model = precision.cpu_model()
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    rows = []
    for n in (384, 1024, 2048):
        x, y = torch.randn(n, n), torch.randn(n, n)
        xb, yb = x.bfloat16(), y.bfloat16()
        rows.append({"case": f"matmul n={n}", "fp32": gflops(lambda: x @ y, 2 * n**3),
                     "bf16": gflops(lambda: xb @ yb, 2 * n**3)})
    # one MLP projection of the 384-wide student on a batch of 8 x 64 tokens, under autocast as training runs it
    lin, h = torch.nn.Linear(384, 1536), torch.randn(512, 384)
    flop = 2 * 512 * 384 * 1536

    def autocast_linear():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lin(h)

    rows.append({"case": "linear 384 -> 1536, 512 tokens (autocast)", "fp32": gflops(lambda: lin(h), flop),
                 "bf16": gflops(autocast_linear, flop)})
    for r in rows:
        r["bf16_over_fp32"] = round(r["bf16"] / r["fp32"], 2)
    res = {"cpu": model, "threads": torch.get_num_threads(), "torch": torch.__version__,
           "bf16_flags": [f for f in flags if f in precision.CPU_BF16_FLAGS],
           "amx_flags": [f for f in flags if f.startswith("amx")], "rows": rows,
           "probe_speedup": round(precision.cpu_bf16_speedup(), 2),
           "auto_chooses_bf16": precision.use_bf16(None)}
    out = a.out or Path(__file__).parent / "results" / f"precision_probe_{re.sub(r'[^a-z0-9]+', '_', model.lower())}.json"
    out.write_text(json.dumps(res, indent=1))
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
