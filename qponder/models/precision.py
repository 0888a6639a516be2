"""bf16 where the hardware runs it natively, fp32 elsewhere.

On the 2-core build machine (AMD EPYC with AVX512-BF16) a bf16 matmul runs 4.3x faster than fp32
(~900 against ~210 GFLOP/s) and the demo's SFT steps 2.1x faster under autocast (docs/results.md, stop 14).
A CPU without bf16 instructions emulates it and gets slower, so ``None`` ("auto") asks the hardware first.
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


@functools.cache
def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap way to tell, and emulated bf16 would be a slowdown
        return ""


def use_bf16(setting: bool | None) -> bool:
    """A recipe's ``bf16`` resolved: True / False as given; None = wherever the device does bf16 natively."""
    if setting is not None:
        return bool(setting)
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return cpu_has_bf16()


def autocast(model, enabled: bool):
    """bf16 autocast on the model's device, or nothing."""
    if not enabled:
        return contextlib.nullcontext()
    import torch

    return torch.autocast(device_type=model.device.type, dtype=torch.bfloat16)
