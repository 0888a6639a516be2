"""The generic HF loader on the real Qwen2.5-VL family (tiny, random, built offline), without torchvision."""

from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from qponder.errors import QPonderError
from qponder.models import hf
from qponder.models.hf import is_torchvision_available, load_hf, save_processor
from qponder.models.tiny_qwen import QWEN25_VL_CHAT_TEMPLATE, SPECIAL_TOKENS, VOCAB_SIZE, build_tiny_qwen25vl

_EVIL = (
    "import pathlib\n"
    "pathlib.Path(__file__).with_name('EXECUTED').write_text('remote code ran')\n"
    "raise RuntimeError('remote code ran')\n"
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_qwen25vl(tmp_path_factory.mktemp("tiny") / "qwen25vl", seed=0)


@pytest.fixture(scope="module")
def loaded(tiny):
    return load_hf(str(tiny))


def _chat(text: str = "Rate the quality of this image."):
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((224, 224, 3)) * 255).astype("uint8"))
    return [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": text}]}]


def _inputs(processor):
    return processor.apply_chat_template(
        _chat(), add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


def _copy_model_folder(model, processor, out: Path) -> Path:
    model.save_pretrained(out)
    save_processor(processor, out)
    return out


def test_tiny_build_is_the_documented_model(tiny, tmp_path):
    again = build_tiny_qwen25vl(tmp_path / "again", seed=0)
    names = {p.name for p in tiny.iterdir()}
    assert {"config.json", "model.safetensors", "processor_config.json", "tokenizer.json",
            "tokenizer_config.json", "chat_template.jinja", "generation_config.json"} <= names
    # Same seed, same weights: tests can rebuild instead of sharing folders.
    assert (again / "model.safetensors").read_bytes() == (tiny / "model.safetensors").read_bytes()
    config = json.loads((tiny / "config.json").read_text())
    assert config["model_type"] == "qwen2_5_vl"
    assert config["text_config"]["rope_parameters"]["mrope_section"] == [4, 6, 6]


def test_chat_template_is_trls_stock_qwen25vl_text(loaded):
    _, processor = loaded
    trl_utils = pytest.importorskip("trl.chat_template_utils")
    # TRL swaps in its assistant-mask template only on an exact match.
    assert processor.chat_template == trl_utils.qwen2_5_vl_chat_template
    assert QWEN25_VL_CHAT_TEMPLATE == trl_utils.qwen2_5_vl_chat_template
    assert trl_utils.get_training_chat_template(processor) == trl_utils.qwen2_5_vl_training_chat_template


def test_load_hf_gives_qwen25vl_and_an_image_processor_without_torchvision(loaded):
    model, processor = loaded
    assert type(model).__name__ == "Qwen2_5_VLForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) == 815_552
    assert not model.training
    assert isinstance(processor, __import__("transformers").Qwen2_5_VLProcessor)
    if not is_torchvision_available():
        assert type(processor).__name__ == "ImageOnlyQwen2_5_VLProcessor"
        assert type(processor.image_processor).__name__ == "Qwen2VLImageProcessorPil"
    tok = processor.tokenizer
    assert len(tok) == VOCAB_SIZE
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(8))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.padding_side == "left"
    assert tok.tokenize("3.47") == ["3", ".", "4", "7"]  # digits split, as in Qwen


def test_chat_to_inputs_and_deterministic_generate(loaded):
    model, processor = loaded
    inputs = _inputs(processor)
    assert {"input_ids", "pixel_values", "image_grid_thw"} <= set(inputs)
    assert inputs["image_grid_thw"].tolist() == [[1, 16, 16]]
    image_tokens = int((inputs["input_ids"] == model.config.image_token_id).sum())
    assert image_tokens == 64  # 224 px -> 16x16 patches -> 2x2 merge
    text = processor.decode(inputs["input_ids"][0])
    assert text.endswith("<|im_start|>assistant\n")
    with torch.no_grad():
        first = model.generate(**inputs, max_new_tokens=8, do_sample=False)
        second = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert first.shape[1] > inputs["input_ids"].shape[1]
    assert torch.equal(first, second)


def test_save_processor_names_public_class_and_reloads(loaded, tmp_path):
    model, processor = loaded
    out = _copy_model_folder(model, processor, tmp_path / "saved")
    proc_cfg = json.loads((out / "processor_config.json").read_text())
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert proc_cfg["processor_class"] == "Qwen2_5_VLProcessor"
    assert tok_cfg["processor_class"] == "Qwen2_5_VLProcessor"
    video = proc_cfg["video_processor"]
    assert video["video_processor_type"] == "Qwen2VLVideoProcessor"
    assert (video["patch_size"], video["temporal_patch_size"], video["merge_size"]) == (14, 2, 2)
    assert (out / "chat_template.jinja").read_text() == processor.chat_template
    # The live tokenizer must not keep the subclass name for later saves either.
    assert processor.tokenizer.init_kwargs.get("processor_class") == "Qwen2_5_VLProcessor"

    model2, processor2 = load_hf(out)
    before, after = _inputs(processor), _inputs(processor2)
    assert torch.equal(before["input_ids"], after["input_ids"])
    assert torch.equal(before["pixel_values"], after["pixel_values"])
    assert processor2.chat_template == processor.chat_template
    assert pickle.loads(pickle.dumps(processor2)).chat_template == processor.chat_template


def test_stock_autoprocessor_resolves_the_full_processor_from_a_saved_folder(loaded, tmp_path):
    from transformers import AutoProcessor

    model, processor = loaded
    good = _copy_model_folder(model, processor, tmp_path / "good")
    if is_torchvision_available():
        assert type(AutoProcessor.from_pretrained(good, local_files_only=True)).__name__ == "Qwen2_5_VLProcessor"
        return
    # Here the full processor fails on its video half; that it gets that far shows the class resolved.
    with pytest.raises(Exception, match="(?i)torchvision|video"):
        AutoProcessor.from_pretrained(good, local_files_only=True)

    # Why the caveats exist: a folder naming the subclass loads as a bare tokenizer, silently.
    bad = _copy_model_folder(model, processor, tmp_path / "bad")
    for name in ("processor_config.json", "tokenizer_config.json"):
        d = json.loads((bad / name).read_text())
        d["processor_class"] = "ImageOnlyQwen2_5_VLProcessor"
        (bad / name).write_text(json.dumps(d))
    assert type(AutoProcessor.from_pretrained(bad, local_files_only=True)).__name__ == "Qwen2Tokenizer"
    _, recovered = load_hf(bad)  # the loader still finds the real processor
    assert hasattr(recovered, "image_processor")


def test_hub_style_folder_loads(loaded, tmp_path):
    """The layout of Qwen/Qwen2.5-VL-*-Instruct: preprocessor_config.json + chat_template.json, no processor_config."""
    model, processor = loaded
    out = _copy_model_folder(model, processor, tmp_path / "hub")
    (out / "processor_config.json").unlink()
    template = (out / "chat_template.jinja").read_text()
    (out / "chat_template.jinja").unlink()
    (out / "chat_template.json").write_text(json.dumps({"chat_template": template}))
    (out / "preprocessor_config.json").write_text(json.dumps({
        "min_pixels": 3136, "max_pixels": 12845056, "patch_size": 14, "temporal_patch_size": 2, "merge_size": 2,
        "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711],
        "image_processor_type": "Qwen2VLImageProcessor", "processor_class": "Qwen2_5_VLProcessor",
    }))
    _, hub_processor = load_hf(out)
    assert hub_processor.chat_template == template
    assert torch.equal(_inputs(hub_processor)["pixel_values"], _inputs(processor)["pixel_values"])


def test_dtype_and_device(tiny):
    model, _ = load_hf(tiny, dtype=torch.bfloat16, device="cpu")
    assert model.dtype == torch.bfloat16 and model.device.type == "cpu"


@pytest.mark.parametrize("make", ["missing", "relative_missing", "empty_dir", "file"])
def test_bad_paths_raise_qponder_error_naming_the_path(tmp_path, monkeypatch, make):
    monkeypatch.chdir(tmp_path)
    if make == "missing":
        target = str(tmp_path / "no" / "such" / "model")
    elif make == "relative_missing":
        target = "./no-such-model"
    elif make == "empty_dir":
        (tmp_path / "empty").mkdir()
        target = str(tmp_path / "empty")
    else:
        (tmp_path / "weights.bin").write_bytes(b"x")
        target = str(tmp_path / "weights.bin")
    with pytest.raises(QPonderError) as info:
        load_hf(target)
    assert Path(target).name in str(info.value)
    assert "\n" not in str(info.value)


def test_auto_map_code_never_runs_without_trust_remote_code(tiny, tmp_path):
    # Unknown architecture whose only implementation is the folder's own code: refused.
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "evil.py").write_text(_EVIL)
    (custom / "config.json").write_text(json.dumps({
        "model_type": "qponder_evil",
        "architectures": ["EvilModel"],
        "auto_map": {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel",
                     "AutoProcessor": "evil.EvilProcessor"},
    }))
    with pytest.raises(QPonderError, match="trust_remote_code"):
        load_hf(custom)
    assert not (custom / "EXECUTED").exists()

    # Known architecture that also ships code: the stock transformers classes load, the code does not run.
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    for f in tiny.iterdir():
        (shipped / f.name).write_bytes(f.read_bytes())
    (shipped / "evil.py").write_text(_EVIL)
    config = json.loads((shipped / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel",
                          "AutoProcessor": "evil.EvilProcessor"}
    (shipped / "config.json").write_text(json.dumps(config))
    model, processor = load_hf(shipped)
    assert type(model).__module__.startswith("transformers.")
    assert type(processor).__module__ in ("qponder.models.hf",) or type(processor).__module__.startswith("transformers.")
    assert not (shipped / "EXECUTED").exists()
    assert not any(name == "evil" or name.endswith(".evil") for name in sys.modules)


def test_torchvision_present_branch_uses_stock_autoprocessor(tiny, monkeypatch):
    from transformers import AutoProcessor

    calls = []
    real = AutoProcessor.from_pretrained

    def spy(path, *args, **kwargs):
        calls.append((str(path), kwargs))
        return real(path, *args, **kwargs)

    def no_image_only(*args, **kwargs):
        raise AssertionError("the image-only path must not run when torchvision imports")

    monkeypatch.setattr(hf, "is_torchvision_available", lambda: True)
    monkeypatch.setattr(hf, "_load_image_only", no_image_only)
    monkeypatch.setattr(AutoProcessor, "from_pretrained", spy)
    if _torchvision_really_imports():
        load_hf(tiny)
    else:
        with pytest.raises(QPonderError, match="processor"):  # stock Qwen2.5-VL needs torchvision
            load_hf(tiny)
    assert calls == [(str(tiny), {"trust_remote_code": False, "local_files_only": True})]


def _torchvision_really_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def test_other_processors_fall_back_to_image_only_on_a_video_failure(tiny, monkeypatch):
    # Treat Qwen2.5-VL as an unknown family: AutoProcessor first, then the image-only retry.
    monkeypatch.setattr(hf, "_QWEN_PROCESSORS", ())
    monkeypatch.setattr(hf, "is_torchvision_available", lambda: False)
    if _torchvision_really_imports():
        pytest.skip("AutoProcessor succeeds where torchvision imports")
    _, processor = load_hf(tiny)
    assert type(processor).__name__ == "ImageOnlyQwen2_5_VLProcessor"

    def fails(*args, **kwargs):
        raise ImportError("SomeImageProcessor requires the Torchvision library\nbut it was not found")

    monkeypatch.setattr(hf, "_load_image_only", fails)
    with pytest.raises(QPonderError, match="needs torchvision") as info:
        load_hf(tiny)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["Qwen2VLProcessor", "Qwen3VLProcessor", "LlavaOnevisionProcessor", "SmolVLMProcessor"])
def test_image_only_class_drops_only_the_video_processor(name):
    import transformers

    base = getattr(transformers, name)
    cls = hf.image_only_processor_class(base)
    assert issubclass(cls, base)
    assert "video_processor" not in cls.get_attributes()
    assert set(cls.get_attributes()) == set(base.get_attributes()) - {"video_processor"}
    # from_args_and_dict reads co_varnames; a *args/**kwargs __init__ would silently drop the chat template.
    assert "chat_template" in cls.__init__.__code__.co_varnames
    assert getattr(hf, cls.__name__) is cls
    assert pickle.loads(pickle.dumps(cls)) is cls
    assert cls._qponder_public_name == name
