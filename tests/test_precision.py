"""bf16 where the hardware has it: the auto setting (the Scorer and SFT under bf16: test_student.py, test_sft.py)."""

import torch

from qponder.models import precision
from qponder.models.precision import cpu_has_bf16, use_bf16

ZEN4 = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n"
SKYLAKE = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\nbugs\t\t: avx512_bf16\n"


def test_cpu_flags():
    assert cpu_has_bf16(ZEN4)
    assert cpu_has_bf16("flags : sse2 amx_bf16 amx_tile")
    assert not cpu_has_bf16(SKYLAKE)  # the flag must be on the flags line, not anywhere in the text
    assert not cpu_has_bf16("")


def test_auto_follows_the_hardware(monkeypatch):
    assert use_bf16(True) and not use_bf16(False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for has in (True, False):
        monkeypatch.setattr(precision, "cpu_has_bf16", lambda has=has: has)
        assert use_bf16(None) is has
