"""bf16 where the hardware runs it natively, fp32 elsewhere.

On the 2-core build machine (AMD EPYC with AVX512-BF16) a bf16 matmul runs 4.3x faster than fp32
(~900 against ~210 GFLOP/s) and the demo's SFT steps 2.1x faster under autocast (docs/results.md, stop 14).
A CPU without bf16 instructions emulates it and gets slower, so ``None`` ("auto") asks the hardware first.
The flag is not enough: on a 2-core Intel Xeon with AVX512-BF16 but no AMX, torch's bf16 matmul ran at half the
fp32 speed (~160 against ~300 GFLOP/s) and the demo's SFT took 2.7x longer than on the AMD machine
(docs/results.md, stop 22). So "auto" also times one small matmul both ways and takes bf16 only where it wins.
Autocast keeps the weights, the optimizer and the saved checkpoints in fp32; only matmul inputs are cast.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo flags of x86 CPUs with bf16 dot products


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether this CPU (or the ``/proc/cpuinfo`` text given) has bf16 dot-product instructions."""
    if cpuinfo is None:
        cpuinfo = _cpuinfo()
    flags = next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
    return any(f in flags for f in CPU_BF16_FLAGS)


def cpu_model() -> str:
    """This CPU's model name from ``/proc/cpuinfo`` (results files of machine-dependent benchmarks carry it)."""
    import platform

    return next((ln.split(":", 1)[1].strip() for ln in _cpuinfo().splitlines() if ln.startswith("model name")),
                platform.processor() or "unknown")


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, and emulated bf16 would be a slowdown
        return ""


# bf16 must beat fp32 by this much in the probe: a wide enough margin that timing noise cannot flip the choice
# (the machines measured so far sit at 4.3x and 0.5x)
MIN_CPU_SPEEDUP = 1.2


@functools.cache
def cpu_bf16_speedup(n: int = 512, reps: int = 8) -> float:
    """fp32 matmul time over bf16 matmul time on this CPU, with torch's current threads (best of 3; ~0.1 s)."""
    import time

    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, y = a.to(dtype), b.to(dtype)
        x @ y  # oneDNN picks and caches its kernel on the first call
        times = []
        for _ in range(3):
            t = time.perf_counter()
            for _ in range(reps):
                x @ y
            times.append(time.perf_counter() - t)
        best[dtype] = min(times)
    return best[torch.float32] / max(best[torch.bfloat16], 1e-9)


def use_bf16(setting: bool | None) -> bool:
    """A recipe's ``bf16`` resolved: True / False as given; None = wherever the device runs bf16 faster than fp32."""
    if setting is not None:
        return bool(setting)
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16() and cpu_bf16_speedup() >= MIN_CPU_SPEEDUP


def autocast(model, enabled: bool):
    """bf16 autocast on the model's device, or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=model.device.type, dtype=torch.bfloat16)


# torch's fused CPU attention (SDPA) is slow for a single bf16 query: 1.4 ms for 16 sequences x 6 heads x 350
# cached positions, where two bf16 matmuls and a softmax take 0.3 ms (0.19 ms for fp32 SDPA). Generation asks
# exactly that once per layer per new token, so it dominated the decode loop (docs/results.md, stop 15).
# Longer queries (prefill, training) stay on SDPA, which is the faster of the two there.
DECODE_ATTENTION = "qponder_cpu_decode"


def _decode_attention(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None, **kw):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    unusual = any(kw.get(k) is not None for k in ("softcap", "position_bias", "s_aux", "sliding_window"))
    if (query.shape[2] != 1 or query.device.type != "cpu" or query.dtype != torch.bfloat16 or unusual
            or (dropout and module.training)):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kw)
    groups = query.shape[1] // key.shape[1]
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        key, value = key.repeat_interleave(groups, 1), value.repeat_interleave(groups, 1)
    scores = torch.matmul(query, key.transpose(2, 3)) * (scaling if scaling is not None else query.shape[-1] ** -0.5)
    if attention_mask is not None:
        mask = attention_mask[..., : key.shape[-2]]
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    probs = torch.softmax(scores, dim=-1, dtype=torch.float32).to(value.dtype)
    return torch.matmul(probs, value).transpose(1, 2).contiguous(), None


def fast_cpu_decode(model) -> bool:
    """Route the language model's single-token bf16 attention on a CPU around SDPA (see above); True when set.

    Only a model on SDPA is switched, and only its language model (the vision tower never decodes). The setting
    lives in the loaded model, not in its config file: a saved checkpoint still says nothing about it."""
    from transformers import AttentionInterface

    if hasattr(model, "get_base_model"):  # PEFT
        model = model.get_base_model()
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "set_attn_implementation") or model.device.type != "cpu":
        return False
    key = "text_config" if "text_config" in getattr(config, "sub_configs", {}) else ""
    target = getattr(config, key) if key else config
    if getattr(target, "_attn_implementation", None) != "sdpa":
        return False
    AttentionInterface.register(DECODE_ATTENTION, _decode_attention)
    model.set_attn_implementation({key: DECODE_ATTENTION} if key else DECODE_ATTENTION)
    return getattr(target, "_attn_implementation", None) == DECODE_ATTENTION


# transformers' default DynamicCache grows every layer's keys and values with torch.cat at every new token, so a
# CPU decode step copies the whole cache 2 x layers times: 26 % of the demo's fp32 Scorer time on the 2-core
# Intel machine. A static cache is allocated once and written in place: the same tokens in fp32, the Scorer
# 1.16x and GRPO's rollouts 1.32x faster (docs/results.md, stop 23). In bf16 it gained 1.05x there but changed
# the rounding of 63 of 64 greedy completions, so "auto" leaves bf16 (the AMD machines' path) as it was.
def use_static_cache(setting: bool | None, device_type: str, bf16: bool) -> bool:
    """A ``static_cache`` setting resolved: True / False as given; None = on a CPU generating in fp32."""
    if setting is not None:
        return bool(setting)
    return device_type == "cpu" and not bf16
