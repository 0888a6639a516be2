"""bf16 where the hardware has it: the auto setting (the Scorer and SFT under bf16: test_student.py, test_sft.py)."""

import torch

from qponder.models import precision
from qponder.models.precision import cpu_has_bf16, use_bf16, use_static_cache

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
        monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda: 4.3)
        assert use_bf16(None) is has


def test_auto_takes_bf16_only_where_it_measures_faster(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: True)
    for speedup, chosen in [(4.3, True), (1.25, True), (1.1, False), (0.52, False)]:
        monkeypatch.setattr(precision, "cpu_bf16_speedup", lambda s=speedup: s)
        assert use_bf16(None) is chosen
    assert use_bf16(True)  # an explicit setting is never second-guessed


def test_the_probe_measures_this_cpu():
    ratio = precision.cpu_bf16_speedup(n=64, reps=2)
    assert 0.01 < ratio < 100  # a real timing ratio, whatever the machine
    assert precision.cpu_bf16_speedup(n=64, reps=2) == ratio  # measured once per process


def _attention_inputs(heads=4, kv_heads=4, q_len=1, kv_len=37, dtype=torch.bfloat16, bool_mask=False):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, heads, q_len, 16, generator=g).to(dtype)
    k = torch.randn(3, kv_heads, kv_len, 16, generator=g).to(dtype)
    v = torch.randn(3, kv_heads, kv_len, 16, generator=g).to(dtype)
    keep = torch.ones(3, 1, q_len, kv_len, dtype=torch.bool)
    keep[0, ..., :5] = False  # a left-padded row, as batched generation makes
    mask = keep if bool_mask else torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)
    return q, k, v, mask


def test_static_cache_auto_is_for_fp32_on_a_cpu():
    assert use_static_cache(None, "cpu", bf16=False)
    assert not use_static_cache(None, "cpu", bf16=True)  # bf16 rounds differently with it; left as it was
    assert not use_static_cache(None, "cuda", bf16=False)
    assert use_static_cache(True, "cuda", bf16=True) and not use_static_cache(False, "cpu", bf16=False)


def test_decode_attention_matches_sdpa():
    from types import SimpleNamespace

    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    from qponder.models.precision import _decode_attention

    module = SimpleNamespace(training=False, is_causal=True, num_key_value_groups=2)
    for kv_heads, bool_mask in ((4, False), (4, True), (2, False)):
        module.num_key_value_groups = 4 // kv_heads
        q, k, v, mask = _attention_inputs(kv_heads=kv_heads, bool_mask=bool_mask)
        out, _ = _decode_attention(module, q, k, v, mask, scaling=0.25)
        # the reference: fp32 SDPA on the same (bf16-rounded) inputs
        m32 = mask if bool_mask else mask.float()
        ref, _ = sdpa_attention_forward(module, q.float(), k.float(), v.float(), m32, scaling=0.25)
        assert out.dtype == torch.bfloat16 and out.shape == ref.shape == (3, 1, 4, 16)
        assert torch.allclose(out.float(), ref, atol=2e-2), (kv_heads, bool_mask)
    # longer queries (prefill, training) and fp32 go to SDPA itself, bit for bit
    for q_len, dtype in ((5, torch.bfloat16), (1, torch.float32)):
        q, k, v, mask = _attention_inputs(q_len=q_len, dtype=dtype)
        module.num_key_value_groups = 1
        assert torch.equal(_decode_attention(module, q, k, v, mask)[0], sdpa_attention_forward(module, q, k, v, mask)[0])


def test_fast_cpu_decode_switches_only_the_language_model(tmp_path):
    from qponder.models import load
    from qponder.models.build import init_model
    from qponder.models.precision import DECODE_ATTENTION, fast_cpu_decode

    init_model("tiny", tmp_path / "tiny")
    model, _ = load(str(tmp_path / "tiny"), dtype=torch.bfloat16)
    assert fast_cpu_decode(model)
    assert model.config.text_config._attn_implementation == DECODE_ATTENTION
    assert model.config.vision_config._attn_implementation == "sdpa"
    model.save_pretrained(tmp_path / "saved")
    assert DECODE_ATTENTION not in (tmp_path / "saved" / "config.json").read_text()  # a loaded model's setting only
    ids = torch.tensor([[5, 6, 7, 8, 9, 10]])
    plain, _ = load(str(tmp_path / "tiny"), dtype=torch.bfloat16)
    with torch.no_grad():
        a = model.generate(input_ids=ids, max_new_tokens=8, do_sample=False, output_logits=True, return_dict_in_generate=True)
        b = plain.generate(input_ids=ids, max_new_tokens=8, do_sample=False, output_logits=True, return_dict_in_generate=True)
    for la, lb in zip(a.logits, b.logits):
        assert torch.allclose(la.float(), lb.float(), atol=0.05, rtol=0.02)
    assert not fast_cpu_decode(model)  # already switched: nothing to do
