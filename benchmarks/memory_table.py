"""GPU memory and step time of the Qwen2.5-VL recipes, from first principles (pure arithmetic, no GPU).

    python benchmarks/memory_table.py          # prints markdown, writes benchmarks/results/memory_table.json

Every number is an estimate from the formulas in docs/scaling.md; the assumptions are the constants below.
Model shapes are the published config.json values of Qwen/Qwen2.5-VL-3B-Instruct and -7B-Instruct.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

GB = 1e9
GPU_GB = 80.0
USABLE = 0.90  # allocator fragmentation, NCCL buffers: plan on 90 % of the card
CUDA_CONTEXT_GB = 1.5
H100_BF16 = 989e12  # dense bf16 FLOP/s (SXM datasheet); an A100 has 312e12
MFU_TRAIN, MFU_GENERATE = 0.35, 0.10  # assumed: training kernels vs. memory-bound decoding


@dataclass(frozen=True)
class Shape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    v_depth: int = 32  # the vision tower is the same 675 M ViT in both sizes
    v_hidden: int = 1280
    v_intermediate: int = 3420
    v_merge: int = 2

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


QWEN = {
    "3B": Shape("Qwen2.5-VL-3B", hidden=2048, intermediate=11008, layers=36, heads=16, kv_heads=2, vocab=151936,
                tied=True),
    "7B": Shape("Qwen2.5-VL-7B", hidden=3584, intermediate=18944, layers=28, heads=28, kv_heads=4, vocab=152064,
                tied=False),
}


def lm_linears(s: Shape) -> list[tuple[int, int]]:
    """(in, out) of every linear layer of one decoder layer: q, k, v, o, gate, up, down."""
    kv = s.kv_heads * s.head_dim
    h, i = s.hidden, s.intermediate
    return [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]


def vit_linears(s: Shape) -> list[tuple[int, int]]:
    h, i = s.v_hidden, s.v_intermediate
    return [(h, 3 * h), (h, h), (h, i), (h, i), (i, h)]


def params(s: Shape) -> dict[str, int]:
    """Parameter counts; biases as in the checkpoint (q/k/v in the LM, every ViT linear)."""
    kv = s.kv_heads * s.head_dim
    layer = sum(a * b for a, b in lm_linears(s)) + (s.hidden + 2 * kv) + 2 * s.hidden
    lm = s.layers * layer + s.vocab * s.hidden * (1 if s.tied else 2) + s.hidden
    block = sum(a * b + b for a, b in vit_linears(s)) + 2 * s.v_hidden
    merged = s.v_hidden * s.v_merge ** 2
    vit = (s.v_depth * block + 3 * 2 * 14 * 14 * s.v_hidden  # Conv3d patch embedding, no bias
           + s.v_hidden + merged * merged + merged + merged * s.hidden + s.hidden)  # merger: norm + 2-layer MLP
    return {"lm": lm, "vision": vit, "total": lm + vit}


def lora_params(s: Shape, r: int) -> int:
    """PEFT all-linear: every linear but the LM head, the vision tower's included: r x (in + out) each."""
    return r * (s.layers * sum(a + b for a, b in lm_linears(s)) + s.v_depth * sum(a + b for a, b in vit_linears(s)))


def kv_bytes_per_token(s: Shape) -> int:
    return 2 * s.layers * s.kv_heads * s.head_dim * 2  # K and V, bf16


@dataclass(frozen=True)
class Workload:
    """One micro-step on one GPU. Image tokens: a KonIQ 1024x768 image -> 1036x756 px -> 74x54 patches / 4."""

    stage: str  # sft | grpo
    micro_batch: int  # sequences per forward/backward
    prompt_tokens: int = 999 + 120  # image + text prompt
    completion_tokens: int = 256  # GRPO max_completion_length; SFT: trace + answer
    accumulation: int = 2
    generations: int = 8  # GRPO: completions per prompt
    image_patches: int = 74 * 54

    @property
    def seq(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def memory(s: Shape, w: Workload, lora: bool, strategy: str, n_gpus: int, r: int = 64, beta: float = 0.04,
           vllm_share: float = 0.0, gen_batch: int | None = None) -> dict[str, float]:
    """GB per GPU, by component. strategy: ddp | zero2 | zero3 (data parallel over n_gpus)."""
    p = params(s)
    P = p["total"]
    T = lora_params(s, r) if lora else p["lm"]  # full runs freeze the vision tower (freeze_vision: true)
    shard_w = n_gpus if strategy == "zero3" else 1
    shard_g = n_gpus if strategy in ("zero2", "zero3") else 1
    shard_o = n_gpus if strategy in ("zero2", "zero3") else 1
    h, tokens = s.hidden, w.micro_batch * w.seq
    out = {
        "weights": 2 * P / shard_w,  # bf16
        # full: bf16 grads + fp32 master, Adam m and v (mixed precision, 2 + 12 bytes); LoRA params live in fp32
        "grads": (2 if not lora else 4) * T / shard_g,
        "optimizer": (12 if not lora else 8) * T / shard_o,
        "lora_weights": 4 * T if lora else 0.0,
        # beta > 0 keeps a frozen reference: a second copy when full; with LoRA, the adapter-disabled model
        "reference": 2 * P / shard_w if (w.stage == "grpo" and beta > 0 and not lora) else 0.0,
        # gradient checkpointing: each layer's bf16 input, plus one layer recomputed (attention tensors
        # 12 bytes x hidden, SwiGLU 8 bytes x intermediate per token; flash/SDPA attention stores no s^2 scores)
        "activations": tokens * (2 * h * s.layers + 12 * h + 8 * s.intermediate),
        # fp32 logits and their gradient over the trained tokens (TRL keeps only completion logits)
        "logits": w.micro_batch * w.completion_tokens * s.vocab * 4 * 2,
        # frozen ViT under no_grad: one block's working set for the micro-batch's images
        "vision": w.micro_batch * w.image_patches * (12 * s.v_hidden + 8 * s.v_intermediate),
        "context": CUDA_CONTEXT_GB * GB,
    }
    if w.stage == "grpo":
        g = gen_batch or w.micro_batch * w.accumulation  # completions generated together on this GPU
        if vllm_share:
            out["rollout"] = vllm_share * GPU_GB * GB  # vLLM's reservation (its weights + KV cache)
        else:  # transformers generate: KV cache of every completion at full length, plus the gathered weights
            out["rollout"] = g * w.seq * kv_bytes_per_token(s) + (2 * P * (1 - 1 / n_gpus) if strategy == "zero3" else 0)
    gb = {k: round(v / GB, 2) for k, v in out.items()}
    gb["total"] = round(sum(out.values()) / GB, 1)
    return gb


def step_seconds(s: Shape, w: Workload, lora: bool, n_gpus: int, beta: float = 0.04, gpu_flops: float = H100_BF16,
                 mfu_generate: float = MFU_GENERATE) -> dict[str, float]:
    """One optimizer step: tokens x k x params / (GPUs x FLOP/s x MFU).

    k = 6 for a full backward (2 forward + 4 backward), 4 for LoRA (no weight gradients of the frozen base),
    +2 for the forward that gradient checkpointing repeats; GRPO adds 2 per token for the reference pass
    (beta > 0) and 2 per token for generation (prefill + decode) at the lower decoding MFU.
    """
    P = params(s)["total"]
    seqs = w.micro_batch * w.accumulation * n_gpus
    tokens = seqs * w.seq
    k = (4 if lora else 6) + 2
    train = tokens * k * P / (n_gpus * gpu_flops * MFU_TRAIN)
    extra = 0.0
    if w.stage == "grpo":
        extra += (tokens * 2 * P / (n_gpus * gpu_flops * MFU_TRAIN)) if beta > 0 else 0.0
        extra += tokens * 2 * P / (n_gpus * gpu_flops * mfu_generate)
    return {"tokens_per_step": tokens, "sequences_per_step": seqs, "seconds": round(train + extra, 1)}


SETUPS = [(1, "ddp"), (4, "zero2"), (4, "zero3"), (8, "zero2"), (8, "zero3")]


def rows() -> list[dict]:
    out = []
    for key, s in QWEN.items():
        for lora in (True, False):
            for stage in ("sft", "grpo"):
                # the recipes' micro-batches: SFT 4 (LoRA) / 2 (full) traces of ~300 tokens; GRPO 8 completions
                w = (Workload("sft", micro_batch=4 if lora else 2, completion_tokens=300, accumulation=4 if lora else 8)
                     if stage == "sft" else Workload("grpo", micro_batch=8))
                for n, strategy in SETUPS:
                    vllm = (0.35 if lora else 0.3) if stage == "grpo" else 0.0
                    m = memory(s, w, lora, strategy, n, vllm_share=vllm)
                    t = step_seconds(s, w, lora, n)
                    out.append({"model": s.name, "method": "LoRA r=64" if lora else "full", "stage": stage,
                                "gpus": n, "strategy": strategy, "vllm_colocate": bool(vllm),
                                "fits_80gb": m["total"] <= GPU_GB * USABLE, **m, **t})
    return out


def single_24gb() -> dict:
    """recipes/qwen2.5-vl-3b/grpo_lora_24gb.yaml: 3B, LoRA r=32, micro-batch 4, 16 completions generated at once."""
    s = QWEN["3B"]
    w = Workload("grpo", micro_batch=4, accumulation=4)
    m = memory(s, w, True, "ddp", 1, r=32, gen_batch=16)
    t = step_seconds(s, w, True, 1, gpu_flops=165e12, mfu_generate=0.05)  # RTX 4090 dense bf16, HF generate
    return {"recipe": "qwen2.5-vl-3b/grpo_lora_24gb.yaml", "gpu_gb": 24, "fits_24gb": m["total"] <= 24 * USABLE,
            **m, **t}


def markdown(table: list[dict], small: dict) -> str:
    lines = ["| model | method | stage | GPUs | strategy | weights | grads+optim | ref | activ.+logits | rollout | "
             "total GB/GPU | fits 80 GB | seqs/step | s/step (H100) |", "|" + "---|" * 14]
    for r in table:
        lines.append(f"| {r['model']} | {r['method']} | {r['stage']} | {r['gpus']} | {r['strategy']} | "
                     f"{r['weights']:.1f} | {r['grads'] + r['optimizer'] + r['lora_weights']:.1f} | "
                     f"{r['reference']:.1f} | {r['activations'] + r['logits'] + r['vision']:.1f} | "
                     f"{r.get('rollout', 0):.1f} | **{r['total']}** | {'yes' if r['fits_80gb'] else 'no'} | "
                     f"{r['sequences_per_step']} | {r['seconds']} |")
    lines += ["", f"24 GB single GPU ({small['recipe']}): weights {small['weights']} + LoRA states "
              f"{small['grads'] + small['optimizer'] + small['lora_weights']:.2f} + activations/logits "
              f"{small['activations'] + small['logits'] + small['vision']:.2f} + KV cache {small['rollout']} + "
              f"context {small['context']} = **{small['total']} GB** "
              f"({'fits' if small['fits_24gb'] else 'does not fit'}); about {small['seconds']} s/step on an RTX 4090."]
    return "\n".join(lines)


def main() -> None:
    table, small = rows(), single_24gb()
    shapes = {k: {**asdict(s), "params": params(s), "lora_r64": lora_params(s, 64),
                  "kv_bytes_per_token": kv_bytes_per_token(s)} for k, s in QWEN.items()}
    out = Path(__file__).parent / "results" / "memory_table.json"
    out.parent.mkdir(exist_ok=True)
    assumptions = {"gpu_gb": GPU_GB, "usable_share": USABLE, "cuda_context_gb": CUDA_CONTEXT_GB,
                   "gpu_bf16_flops": H100_BF16, "mfu_train": MFU_TRAIN, "mfu_generate": MFU_GENERATE}
    out.write_text(json.dumps({"assumptions": assumptions, "shapes": shapes, "rows": table, "single_24gb": small},
                              indent=1))
    for k, v in shapes.items():
        p = v["params"]
        print(f"{k}: {p['total'] / 1e9:.2f} B params (LM {p['lm'] / 1e9:.2f} B, vision {p['vision'] / 1e6:.0f} M), "
              f"LoRA r=64 {v['lora_r64'] / 1e6:.0f} M, KV cache {v['kv_bytes_per_token'] / 1024:.0f} KiB/token")
    print()
    print(markdown(table, small))


if __name__ == "__main__":
    main()
