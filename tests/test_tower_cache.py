"""The frozen-tower feature cache: the same features as the tower, reused only where they cannot differ."""

import json

import pytest
import torch
from PIL import Image

from qponder.models import load
from qponder.models.build import init_model
from qponder.models.tower_cache import FeatureCache, cache_frozen_tower


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tower_cache")
    init_model("tiny", root / "tiny")
    return root / "tiny"


def _pixels(proc, n: int, offset: int = 0):
    images = [Image.new("RGB", (64, 48), (20 * (i + offset), 255 - 20 * (i + offset), 90)) for i in range(n)]
    return proc.image_processor(images=images, return_tensors="pt")["pixel_values"]


def _features(model, pixels):
    inner = model.model
    with torch.no_grad():
        return inner.get_image_features(pixel_values=pixels, vision_feature_layer=model.config.vision_feature_layer,
                                        vision_feature_select_strategy=model.config.vision_feature_select_strategy
                                        ).pooler_output


def _frozen(path):
    model, proc = load(str(path))
    for p in model.model.vision_tower.parameters():
        p.requires_grad_(False)
    return model, proc


def test_cached_features_are_the_towers_own(tiny):
    model, proc = _frozen(tiny)
    pixels = _pixels(proc, 5)
    plain = _features(model, pixels)
    cache = FeatureCache(1 << 30)
    assert cache_frozen_tower(model, cache)
    first = _features(model, pixels)
    assert (cache.misses, cache.hits, len(cache)) == (5, 0, 5)
    # a batch mixing stored and new images, in another order
    mixed = torch.cat([pixels[[3, 0]], _pixels(proc, 2, offset=7)])
    again = _features(model, mixed)
    assert (cache.misses, cache.hits) == (7, 2)
    _features(model, _pixels(proc, 1, offset=11).repeat(4, 1, 1, 1))  # one new image four times, as GRPO's rollouts
    assert (cache.misses, cache.hits) == (8, 2)  # computed once
    torch.testing.assert_close(first, plain, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again[:2], plain[[3, 0]], rtol=1e-5, atol=1e-6)
    # and the whole model's output (the LM reads the cached tokens) is unchanged
    text = proc.apply_chat_template([{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "q"}]}],
                                    add_generation_prompt=True, tokenize=False)
    image = Image.new("RGB", (64, 48), (40, 215, 90))
    inputs = proc(images=[image], text=[text], return_tensors="pt")
    with torch.no_grad():
        cached = model(**inputs).logits
        uncached = load(str(tiny))[0].eval()(**inputs).logits
    torch.testing.assert_close(cached, uncached, rtol=1e-5, atol=1e-5)


def test_models_share_a_tower_only_when_its_weights_are_the_same(tiny):
    cache = FeatureCache(1 << 30)
    a, proc = _frozen(tiny)
    b, _ = _frozen(tiny)
    pixels = _pixels(proc, 3)
    cache_frozen_tower(a, cache)
    cache_frozen_tower(b, cache)
    _features(a, pixels)
    _features(b, pixels)
    assert (cache.misses, cache.hits) == (3, 3)  # the second model read the first one's features
    # other tower weights: another key, so the features follow the weights, not the cache
    with torch.no_grad():
        for p in b.model.vision_tower.parameters():
            p.mul_(0.5)  # in place, as load_state_dict writes a checkpoint
    changed = _features(b, pixels)
    assert cache.misses == 6
    fresh, _ = _frozen(tiny)
    with torch.no_grad():
        for p in fresh.model.vision_tower.parameters():
            p.mul_(0.5)
    torch.testing.assert_close(changed, _features(fresh, pixels), rtol=1e-5, atol=1e-6)
    assert not torch.allclose(changed, _features(a, pixels))


def test_a_trainable_tower_keeps_its_gradient_and_adapters_are_left_alone(tiny):
    cache = FeatureCache(1 << 30)
    model, proc = load(str(tiny))  # every weight trainable
    assert cache_frozen_tower(model, cache)
    pixels = _pixels(proc, 2)
    out = model.model.get_image_features(pixel_values=pixels, vision_feature_layer=model.config.vision_feature_layer,
                                         vision_feature_select_strategy="default").pooler_output
    out.sum().backward()
    grads = [p.grad for n, p in model.model.vision_tower.named_parameters() if "layer.0." in n]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)  # the gradient reached the tower
    assert cache.misses == 0 and len(cache) == 0  # with autograd on, the tower ran itself
    _features(model, pixels)  # inference (no autograd) may use the cache even for a trainable tower
    assert cache.misses == 2

    from peft import LoraConfig, get_peft_model

    lora, _ = load(str(tiny))
    lora = get_peft_model(lora, LoraConfig(r=2, target_modules=["q_proj"]))  # the tower's attention too
    assert any("lora_" in n for n, _ in lora.base_model.model.model.vision_tower.named_parameters())
    assert not cache_frozen_tower(lora, cache)  # its adapters can be switched off, so its features can change
    plain, _ = _frozen(tiny)
    wrapped = get_peft_model(plain, LoraConfig(r=2, target_modules=r".*language_model.*q_proj"))  # the LM only
    assert cache_frozen_tower(wrapped, cache)


def test_the_cache_holds_at_most_its_budget_oldest_out_first():
    cache = FeatureCache(3 * 400)  # three 100-float entries
    for i in range(5):
        cache.put(i, (torch.zeros(100),))
    assert len(cache) == 3 and cache.bytes == 1200
    assert cache.get(0) is None and cache.get(2) is not None
    cache.put(5, (torch.zeros(100),))  # 2 was just read, so 3 goes
    assert cache.get(3) is None and cache.get(2) is not None
    cache.put("big", (torch.zeros(1000),))  # larger than the whole budget: not stored
    assert cache.get("big") is None and len(cache) == 3


def test_off_when_the_budget_is_zero_and_a_bad_budget_is_named(tiny, monkeypatch):
    from qponder.errors import QPonderError
    from qponder.models import tower_cache

    monkeypatch.setenv("QPONDER_TOWER_CACHE_MB", "0")
    assert tower_cache.shared_cache() is None
    model, _ = _frozen(tiny)
    assert not cache_frozen_tower(model)
    monkeypatch.setenv("QPONDER_TOWER_CACHE_MB", "2GB")
    with pytest.raises(QPonderError, match="QPONDER_TOWER_CACHE_MB='2GB'"):
        tower_cache.shared_cache()


def test_bfloat16_towers_are_cached_too(tiny):
    cache = FeatureCache(1 << 30)
    model, proc = _frozen(tiny)
    model = model.to(torch.bfloat16)
    pixels = _pixels(proc, 3).to(torch.bfloat16)
    plain = _features(model, pixels)
    assert cache_frozen_tower(model, cache)
    torch.testing.assert_close(_features(model, pixels), plain)
    torch.testing.assert_close(_features(model, pixels), plain)
    assert (cache.misses, cache.hits) == (3, 3)


def test_features_made_under_autocast_are_not_served_to_an_fp32_pass(tiny):
    cache = FeatureCache(1 << 30)
    model, proc = _frozen(tiny)
    pixels = _pixels(proc, 2)
    plain = _features(model, pixels)
    assert cache_frozen_tower(model, cache)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16 training: the same tower, bf16 features
        assert _features(model, pixels).dtype == torch.bfloat16
    torch.testing.assert_close(_features(model, pixels), plain)  # fp32 again: computed, not read back
    assert (cache.misses, cache.hits) == (4, 0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        _features(model, pixels)
    assert (cache.misses, cache.hits) == (4, 2)


def test_sft_learns_the_same_with_and_without_the_cache(tiny, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    from qponder.data.records import Record, write_meta
    from qponder.train.sft import SFTRecipe, train

    (tmp_path / "images").mkdir()
    recs, lines = [], []
    for i in range(6):  # 6 images, 12 steps of 2: each image is seen four times
        Image.new("RGB", (64, 48), (40 * i, 200 - 30 * i, 80)).save(tmp_path / "images" / f"{i}.png")
        recs.append(Record(f"{i}.png", 1 + 0.7 * i))
        lines.append(json.dumps({"image": f"{i}.png", "path": str(tmp_path / "images" / f"{i}.png"), "mos": 1 + 0.7 * i,
                                 "text": f"<think>flat</think><answer>{1 + 0.7 * i:.2f}</answer>", "kept": True}))
    write_meta(recs, tmp_path / "metas" / "train.json")
    (tmp_path / "d.jsonl").write_text("\n".join(lines) + "\n")
    outs = {}
    for mb in ("0", "64"):
        monkeypatch.setenv("QPONDER_TOWER_CACHE_MB", mb)
        out = train(SFTRecipe(model=str(tiny), data=str(tmp_path / "d.jsonl"), out=str(tmp_path / f"ci{mb}"),
                              max_steps=12, per_device_train_batch_size=2, learning_rate=3e-3, logging_steps=4,
                              save_steps=100, report_to="none"))
        outs[mb] = load_file(out / "model.safetensors")
    from qponder.models import tower_cache

    assert tower_cache.shared_cache().hits >= 12  # the second run read features it had stored
    start = load_file(tiny / "model.safetensors")
    name = "language_model.model.embed_tokens.weight"
    assert not torch.allclose(outs["64"][name], start[name])
    for k in outs["0"]:
        torch.testing.assert_close(outs["64"][k], outs["0"][k], rtol=1e-4, atol=1e-5, msg=k)


def test_the_evaluator_caches_and_a_plain_scorer_does_not(tiny):
    from qponder.eval.evaluate import make_predictor
    from qponder.score import Scorer

    model, proc = _frozen(tiny)
    Scorer(model, proc)  # a user's scorer holds no features: new photos would only fill memory
    assert not getattr(model.model.vision_tower, "_qponder_cached", False)
    predictor = make_predictor(str(tiny))  # several models over the same images: cached
    assert predictor.scorer.model.model.vision_tower._qponder_cached


def test_features_stored_under_inference_mode_can_train_later(tiny):
    # the evaluator runs under torch.inference_mode; a later training step in the same process reads those features
    cache = FeatureCache(1 << 30)
    model, proc = _frozen(tiny)
    cache_frozen_tower(model, cache)
    pixels = _pixels(proc, 2)
    with torch.inference_mode():
        _features(model, pixels)
    out = model.model.get_image_features(pixel_values=pixels, vision_feature_layer=model.config.vision_feature_layer,
                                         vision_feature_select_strategy="default").pooler_output
    assert cache.hits == 2
    out.sum().backward()  # through the projector, which saves its (cached) input for backward
    assert any(p.grad is not None for p in model.model.multi_modal_projector.parameters())


def test_models_reading_other_layers_of_the_same_tower_do_not_share(tiny):
    cache = FeatureCache(1 << 30)
    a, proc = _frozen(tiny)
    b, _ = _frozen(tiny)
    b.config.vision_feature_layer = -2  # the same weights, read one block earlier
    pixels = _pixels(proc, 2)
    plain_b = _features(b, pixels)
    cache_frozen_tower(a, cache)
    cache_frozen_tower(b, cache)
    _features(a, pixels)
    torch.testing.assert_close(_features(b, pixels), plain_b)
    assert cache.misses == 4 and cache.hits == 0
