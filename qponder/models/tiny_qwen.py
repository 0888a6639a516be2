"""A tiny random Qwen2.5-VL, built offline in well under a second, for tests.

It is the real model family (``Qwen2_5_VLForConditionalGeneration`` + ``Qwen2_5_VLProcessor`` with the stock
chat template), only small and untrained, so everything that works on it (the generic loader, TRL's SFT and
GRPO trainers, the assistant-only loss) works the same way on a real Qwen2.5-VL checkpoint.
Sizes follow shared/research/stack.md, section 6.
"""

from __future__ import annotations

import importlib.util
import json
import random
from pathlib import Path

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
VOCAB_SIZE = 2048
PAD_ID, IM_START_ID, EOS_ID, VISION_START_ID, VISION_END_ID = 0, 1, 2, 3, 4
IMAGE_PAD_ID, VIDEO_PAD_ID = 6, 7

# The stock Qwen2.5-VL template, byte for byte. TRL recognises it by exact text (to swap in its training
# variant with generation markers for the assistant-only loss), so it must not be reformatted. Used only
# when the installed TRL does not ship trl/chat_templates/qwen2_5_vl.jinja.
QWEN25_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content "
    "%}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

# Words the tokenizer should know as whole tokens: the answer contract, IQA vocabulary, chat roles.
_WORDS = """
think answer image photo picture quality score rating overall assess assessment evaluate evaluation
the a an of and or but with without in on at to from by for is are was were be been this that these those
it its there here very slightly moderately heavily strongly severe severely mild mildly noticeable visible
blur blurry blurred sharp sharpness focus focused defocus motion gaussian noise noisy grain grainy speckle
jpeg compression artifact artifacts blocking blocky ringing banding quantization jpeg2000 wavelet
contrast bright brightness dark darkness exposure overexposed underexposed saturation saturated color colour
colors hue shift tint white balance washed vivid dull faded fine detail details texture textures edge edges
smooth clean clear crisp soft harsh pixel pixels pixelated resolution low high medium level levels
distortion distortions distorted degraded degradation corruption corrupted damage damaged subtle obvious
good bad poor fair excellent acceptable unacceptable perfect reasonable mediocre terrible pleasant
sky tree trees building buildings face faces person people animal animals road water grass flower flowers
car street city landscape portrait indoor outdoor scene scenes object objects background foreground
region regions area areas center corner corners top bottom left right whole entire part parts
because therefore so however although since while overall mostly partly largely hardly almost
shows show showing appears appear seems seem looks look contains contain has have reduce reduces reduced
preserved preserve lost loses lose remains remain affect affects affected visible invisible strong weak
user assistant system you are helpful describe rate give provide between one two three four five
first second final reasoning step steps consider considering given based judge judging estimate
camera lens sensor shot shots scan scanned print printed screen display photograph photographs photography
lighting light lights shadow shadows highlight highlights glare reflection reflections haze hazy fog foggy
sunset sunrise night daylight cloud clouds cloudy mountain mountains river beach ocean forest field garden
window windows wall walls door floor table chair room house bridge tower sign text letters logo
natural artificial synthetic realistic unrealistic authentic original reference pristine distorted version
stripe stripes pattern patterns line lines curve curves shape shapes outline outlines silhouette contour
uniform uneven irregular consistent inconsistent random periodic spatial temporal global local
increase increased decrease decreased amount amounts degree degrees extent severity intensity strength
rather quite fairly extremely barely somewhat relatively noticeably clearly evidently likely unlikely
impression perception perceived perceptual human viewer viewers observer observers eye eyes attention
compare compared comparison relative absolute lower higher lowest highest better worse best worst
colour saturation desaturated oversaturated chromatic aberration vignetting lens flare distortion barrel
interpolation upscaled downscaled resized resampled aliasing jagged staircase moire halo halos
sharpened oversharpened denoised smoothed filtered enhanced restored processed unprocessed raw
"""
_WORDS = list(dict.fromkeys(_WORDS.split()))


def _chat_template() -> str:
    # find_spec locates trl without importing it (importing trl costs seconds).
    spec = importlib.util.find_spec("trl")
    if spec is not None and spec.origin:
        path = Path(spec.origin).parent / "chat_templates" / "qwen2_5_vl.jinja"
        if path.is_file():
            return path.read_text(encoding="utf-8")
    return QWEN25_VL_CHAT_TEMPLATE


def _corpus() -> list[str]:
    # Fixed seed, independent of the weights' seed: every tiny model shares one tokenizer.
    rng = random.Random(1234)
    lines = []
    for _ in range(3000):
        words = rng.choices(_WORDS, k=rng.randint(4, 14))
        score = f"{rng.uniform(1, 5):.2f}"
        lines.append(f"<think>The {' '.join(words)}.</think><answer>{score}</answer>")
        lines.append(" ".join(w.capitalize() if rng.random() < 0.2 else w for w in words) + ", " + score)
    return lines


def build_tokenizer():
    """A byte-level BPE (Qwen2's pre-tokenizer: digits split one by one) with Qwen's special tokens at 0-7."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

    raw = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    raw.normalizer = normalizers.NFC()
    raw.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(_corpus(), trainer=trainer)
    model_json = json.loads(raw.to_str())["model"]
    vocab = model_json["vocab"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model_json["merges"]]

    # Qwen2Tokenizer rebuilds the same pipeline from vocab + merges, so the saved folder names the real
    # Qwen tokenizer class.
    tok = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",  # decoder-only generation pads on the left
        model_max_length=32768,
    )
    tok.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS], special_tokens=True)
    ids = tok.convert_tokens_to_ids(list(SPECIAL_TOKENS))
    if ids != list(range(len(SPECIAL_TOKENS))):
        raise RuntimeError(f"special tokens landed on ids {ids}, expected 0-7")
    if len(tok) > VOCAB_SIZE:
        raise RuntimeError(f"tokenizer has {len(tok)} tokens, more than the model's {VOCAB_SIZE}")
    return tok


def build_tiny_qwen25vl(out_dir, seed: int = 0) -> Path:
    """Build, save and return a folder holding a tiny random Qwen2.5-VL (815,552 parameters) and its processor.

    The folder loads with ``qponder.models.hf.load_hf`` here and with stock transformers where torchvision
    works. ``seed`` fixes the weights; the tokenizer is the same for every seed.
    """
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from qponder.models.hf import ImageOnlyQwen2_5_VLProcessor, save_processor  # type: ignore[attr-defined]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    template = _chat_template()
    tokenizer.chat_template = template

    patch, merge, temporal = 14, 2, 2
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch,
        temporal_patch_size=temporal,
        merge_size=merge,
        min_pixels=56 * 56,
        max_pixels=28 * 28 * 1280,
    )
    processor = ImageOnlyQwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tokenizer, chat_template=template)

    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": VOCAB_SIZE,
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [4, 6, 6]},
            "bos_token_id": PAD_ID,
            "eos_token_id": EOS_ID,
            "pad_token_id": PAD_ID,
            "tie_word_embeddings": True,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_heads": 2,
            "patch_size": patch,
            "spatial_merge_size": merge,
            "temporal_patch_size": temporal,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "out_hidden_size": 128,
        },
        image_token_id=IMAGE_PAD_ID,
        video_token_id=VIDEO_PAD_ID,
        vision_start_token_id=VISION_START_ID,
        vision_end_token_id=VISION_END_ID,
        tie_word_embeddings=True,
    )
    # fork_rng: building a test model must not move the caller's global RNG.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    model.generation_config = GenerationConfig(
        bos_token_id=PAD_ID, eos_token_id=[EOS_ID, PAD_ID], pad_token_id=PAD_ID
    )
    model.save_pretrained(out)
    save_processor(processor, out)
    return out


__all__ = ["QWEN25_VL_CHAT_TEMPLATE", "build_tiny_qwen25vl", "build_tokenizer"]
