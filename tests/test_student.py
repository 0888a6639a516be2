"""The student models: presets, the one loader, the Scorer, evaluation of a VLM, and SFT on the tiny preset."""

import json
import subprocess
import sys

import pytest
import torch
from PIL import Image

from qponder.models import load
from qponder.models.build import init_model
from qponder.score import Scorer


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny")
    card = init_model("tiny", out)
    assert card["image_tokens"] == 16 and card["parameters"] < 2_000_000
    return out


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    d = tmp_path_factory.mktemp("imgs")
    paths = []
    for i, c in enumerate([(200, 30, 30), (20, 200, 40), (90, 90, 250)]):
        p = d / f"{i}.png"
        Image.new("RGB", (96 + 32 * i, 80), c).save(p)
        paths.append(p)
    return paths


def test_tiny_is_a_standard_hf_folder(tiny):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    model = AutoModelForImageTextToText.from_pretrained(tiny)
    proc = AutoProcessor.from_pretrained(tiny)
    assert type(model).__name__ == "AyaVisionForConditionalGeneration"
    assert type(proc).__name__ == "LlavaProcessor" and type(proc.image_processor).__name__ == "BitImageProcessorPil"
    m2, p2 = load(str(tiny))
    assert type(m2) is type(model) and type(p2) is type(proc)
    # the answer tags are single tokens, digits one per token
    toks = proc.tokenizer.tokenize("<think>x</think><answer>3.47</answer>")
    assert toks[0] == "<think>" and toks[-5:] == ["3", ".", "4", "7", "</answer>"]


def test_projector_width_is_a_spec_field_that_survives_save_and_load(tiny, tmp_path):
    narrow = load(str(tiny))[0].model.multi_modal_projector
    assert narrow.linear_1.out_features == 64  # None: the LM's hidden size, transformers' own default
    init_model("tiny", tmp_path / "wide", projector_intermediate=512)
    wide = load(str(tmp_path / "wide"))[0].model.multi_modal_projector
    assert (wide.linear_1.out_features, wide.linear_2.in_features) == (512, 256)
    card = json.loads((tmp_path / "wide" / "qponder_student.json").read_text())
    assert card["spec"]["projector_intermediate"] == 512


def test_default_preset_builds_offline_with_ported_vision(tmp_path):
    from qponder.models.dinov2 import port_state_dict

    card = init_model("default", tmp_path / "d")
    assert card["image_tokens"] == 64 and card["spec"]["vision_layers"] == 4
    model, proc = load(str(tmp_path / "d"))
    ported = port_state_dict()
    tower = model.model.vision_tower.state_dict()
    for k in ("embeddings.patch_embeddings.projection.weight", "encoder.layer.3.mlp.fc2.weight"):
        assert torch.equal(tower[k], ported[k])
    inputs = proc(images=[Image.new("RGB", (320, 240))], text=["<image>hi"], return_tensors="pt")
    assert inputs["pixel_values"].shape[-2:] == (224, 224)
    assert int((inputs["input_ids"] == model.config.image_token_index).sum()) == 64
    with torch.no_grad():
        assert model(**inputs).logits.shape[1] == inputs["input_ids"].shape[1]


def test_scorer_is_deterministic_and_samples(tiny, images):
    scorer = Scorer.from_pretrained(tiny, max_new_tokens=12)
    a = scorer.score(images)
    b = scorer.score(list(reversed(images)))[::-1]  # batch composition must not change greedy answers
    assert [r.text for r in a] == [r.text for r in b]
    s1 = scorer.score(images[:1], samples=3, seed=7)[0]
    s2 = scorer.score(images[:1], samples=3, seed=7)[0]
    assert s1.text == s2.text


def test_static_cache_gives_the_same_tokens(tiny, images):
    model, proc = load(str(tiny))
    static = Scorer(model, proc, max_new_tokens=24, bf16=False, static_cache=True)
    dynamic = Scorer(model, proc, max_new_tokens=24, bf16=False, static_cache=False)
    assert Scorer(model, proc, bf16=False).static_cache == (model.device.type == "cpu")  # the default
    pics = [Image.open(p).convert("RGB") for p in images]
    asked = []  # what each Scorer really passes to generate: equal outputs alone would not show a static cache ran
    generate = model.generate
    model.generate = lambda *a, **k: asked.append(k.get("cache_implementation")) or generate(*a, **k)
    for do_sample in (False, True):
        a = static.generate(pics, do_sample=do_sample, seed=3)
        b = dynamic.generate(pics, do_sample=do_sample, seed=3)
        assert [t for t, _, _ in a] == [t for t, _, _ in b] and all(n > 0 for _, n, _ in a)
    assert asked == ["static", None, "static", None]


def test_score_cli_json_twice_identical(tiny, images):
    cmd = [sys.executable, "-m", "qponder.cli", "score", "--model", str(tiny), "--json", "--max-new-tokens", "10",
           *map(str, images)]
    runs = [subprocess.run(cmd, capture_output=True, text=True, timeout=300) for _ in range(2)]
    assert all(r.returncode == 0 for r in runs), runs[0].stderr
    assert runs[0].stdout == runs[1].stdout
    lines = [json.loads(x) for x in runs[0].stdout.splitlines()]
    assert [x["image"] for x in lines] == list(map(str, images))
    assert {"score", "reasoning", "text", "ok", "reason", "tokens"} <= set(lines[0])


def test_eval_untrained_vlm_reports_parse_failures(tiny, images, tmp_path):
    from qponder.data.records import Record, write_csv
    from qponder.eval.evaluate import evaluate, make_predictor

    csv = write_csv([Record(p.name, 1.5 + i) for i, p in enumerate(images)], images[0].parent / "labels.csv")
    s = evaluate(make_predictor(str(tiny), max_new_tokens=8), csv, tmp_path / "ev", progress=False)
    assert s["n"] == 3 and s["parse_fail_rate"] is not None and s["mean_tokens"] > 0
    rows = [json.loads(x) for x in (tmp_path / "ev" / "predictions.jsonl").read_text().splitlines()]
    assert all(r["text"] is not None for r in rows)
    assert all((r["reason"] is None) == r["ok"] for r in rows)


def test_same_loader_and_scorer_take_a_qwen25vl_folder(tmp_path, images):
    from qponder.models.tiny_qwen import build_tiny_qwen25vl

    folder = build_tiny_qwen25vl(tmp_path / "qwen")
    model, _ = load(str(folder))
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    r = Scorer(model, _, max_new_tokens=6).score(images[:2])
    assert len(r) == 2 and all(x.tokens > 0 for x in r)
    # its 3-D rotary positions survive the static cache that fp32 CPU decoding uses by default
    dynamic = Scorer(model, _, max_new_tokens=6, static_cache=False).score(images[:2])
    assert [x.text for x in r] == [x.text for x in dynamic]


def test_scorer_bf16(tiny, images):
    import torch

    loaded = Scorer.from_pretrained(tiny, max_new_tokens=8, bf16=True)
    assert {p.dtype for p in loaded.model.parameters()} == {torch.bfloat16}  # served in bf16, as vLLM would
    model, proc = load(str(tiny))
    given = Scorer(model, proc, max_new_tokens=8, bf16=True)  # autocast: the caller's model is left as it was
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    for scorer in (loaded, given):
        r = scorer.score(images[:2])
        assert len(r) == 2 and all(x.tokens > 0 for x in r)
    assert Scorer.from_pretrained(tiny, bf16=False).model.dtype == torch.float32
