"""Stage-1 SFT on the tiny preset: the loss mask covers exactly the assistant turn, and training learns."""

import json

import pytest
from PIL import Image

from qponder.data.records import Record, write_meta
from qponder.errors import QPonderError
from qponder.models.build import init_model
from qponder.train.sft import SFTRecipe, make_dataset, sft_examples, train


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    init_model("tiny", root / "tiny")
    (root / "images").mkdir()
    recs, lines = [], []
    for i in range(16):
        v = 15 * i
        Image.new("RGB", (64, 48), (v, v, 255 - v)).save(root / "images" / f"{i}.png")
        mos = 1 + 4 * i / 15
        recs.append(Record(f"{i}.png", mos))
        text = f"<think>The image is {'dark' if i < 8 else 'bright'} and flat.</think><answer>{mos:.2f}</answer>"
        lines.append(json.dumps({"image": f"{i}.png", "path": str(root / "images" / f"{i}.png"), "mos": mos,
                                 "text": text, "score": mos, "kept": i % 5 != 0}))
    write_meta(recs, root / "metas" / "train.json")
    (root / "distilled.jsonl").write_text("\n".join(lines) + "\n")
    return root


def test_examples_from_distilled_and_meta(setup):
    rows = sft_examples(SFTRecipe(data=str(setup / "distilled.jsonl")))
    assert len(rows) == 12  # rejected traces are not trained on
    assert rows[0]["completion"].startswith("<think>The image is dark") and rows[0]["completion"].endswith("</answer>")
    plain = sft_examples(SFTRecipe(data=str(setup / "metas" / "train.json"), reasoning=False))
    assert len(plain) == 16 and plain[-1]["completion"] == "<answer>5.00</answer>"
    no_cot = sft_examples(SFTRecipe(data=str(setup / "distilled.jsonl"), reasoning=False))
    assert all("<think>" not in r["completion"] for r in no_cot)


def test_label_mask_is_exactly_the_assistant_turn(setup):
    from trl import SFTConfig, SFTTrainer

    from qponder import prompts
    from qponder.models import load

    model, proc = load(str(setup / "tiny"))
    rows = sft_examples(SFTRecipe(data=str(setup / "distilled.jsonl")))[:3]
    ds = make_dataset(rows)
    args = SFTConfig(output_dir=str(setup / "ck"), use_cpu=True, bf16=False, assistant_only_loss=True, max_length=None,
                     remove_unused_columns=False, report_to="none", per_device_train_batch_size=3)
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=proc)
    batch = trainer.data_collator([ds[i] for i in range(3)])
    tok = proc.tokenizer
    for i, row in enumerate(rows):
        trained = batch["labels"][i][batch["labels"][i] != -100].tolist()
        assert tok.decode(trained) == row["completion"] + "<|im_end|>"
        assert model.config.image_token_index not in trained


def test_a_few_steps_lower_the_loss(setup, tmp_path):
    out = train(SFTRecipe(model=str(setup / "tiny"), data=str(setup / "distilled.jsonl"), out=str(tmp_path / "ci"),
                          max_steps=30, per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=5,
                          save_steps=15, report_to="none"))
    logs = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text()) if "loss" in h]
    assert logs[-1] < 0.7 * logs[0]
    assert (out / "model.safetensors").exists() and (out / "recipe.yaml").exists()
    from qponder.models import load

    load(str(out))  # the output is a loadable HF folder (Q-Ponder-CI)


def test_bf16_autocast_trains_and_saves_fp32(setup, tmp_path):
    import torch
    from safetensors.torch import load_file

    from qponder.config import build
    from qponder.models.precision import use_bf16

    out = train(SFTRecipe(model=str(setup / "tiny"), data=str(setup / "distilled.jsonl"), out=str(tmp_path / "bf"),
                          max_steps=30, per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=5,
                          save_steps=100, report_to="none", bf16=True))
    logs = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text()) if "loss" in h]
    assert logs[-1] < 0.7 * logs[0]
    weights = load_file(out / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch.float32}  # autocast casts matmul inputs, not the weights
    assert build(SFTRecipe, out / "recipe.yaml").bf16 is True
    auto = train(SFTRecipe(model=str(setup / "tiny"), data=str(setup / "distilled.jsonl"), out=str(tmp_path / "au"),
                           max_steps=1, save_steps=100, report_to="none"))
    assert build(SFTRecipe, auto / "recipe.yaml").bf16 is use_bf16(None)  # what ran, not "auto"


def test_bad_data_is_a_clear_error(setup, tmp_path):
    with pytest.raises(QPonderError, match="has no reasoning"):
        sft_examples(SFTRecipe(data=str(setup / "metas" / "train.json")))
    with pytest.raises(QPonderError, match="not found"):
        sft_examples(SFTRecipe(data=str(tmp_path / "nope.jsonl")))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kept": true, "image": "x.png", "mos": 3, "text": "<answer>3</answer>"}\n{oops\n')
    with pytest.raises(QPonderError, match="line 1 is kept but has no <think>"):
        sft_examples(SFTRecipe(data=str(bad)))


def test_lora_and_resume(setup, tmp_path):
    out = tmp_path / "lora"
    base = dict(model=str(setup / "tiny"), data=str(setup / "distilled.jsonl"), out=str(out), lora=True, lora_r=4,
                per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=2, save_steps=4, report_to="none")
    train(SFTRecipe(max_steps=4, **base))
    assert (out / "adapter" / "adapter_config.json").exists()
    assert (out / "checkpoints" / "checkpoint-4").is_dir()
    from qponder.models import load

    model, _ = load(str(out))  # the LoRA weights are merged into a plain HF folder
    assert not any("lora" in n for n, _ in model.named_parameters())
    train(SFTRecipe(max_steps=6, **base), resume=True)
    steps = [h["step"] for h in json.loads((out / "trainer_state.json").read_text()) if "loss" in h]
    assert steps == [2, 4, 6]  # the resumed run continued from step 4 instead of starting over


def test_resume_continues_from_the_checkpoint_weights(setup, tmp_path):
    # transformers' own resume skips every weight of a VLM checkpoint (saved under its original key names) and
    # trains on from the starting model: the resumed run must instead match the uninterrupted one
    import shutil

    import torch
    from safetensors.torch import load_file

    out = tmp_path / "full"
    base = dict(model=str(setup / "tiny"), data=str(setup / "distilled.jsonl"), out=str(out), max_steps=4,
                per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=2, save_steps=2, report_to="none")
    train(SFTRecipe(**base))
    whole = load_file(out / "model.safetensors")
    shutil.rmtree(out / "checkpoints" / "checkpoint-4")  # as if killed between steps 2 and 4
    train(SFTRecipe(**base), resume=True)
    resumed = load_file(out / "model.safetensors")
    start = load_file(setup / "tiny" / "model.safetensors")
    name = "language_model.model.embed_tokens.weight"
    assert not torch.allclose(whole[name], start[name])
    for k in whole:
        torch.testing.assert_close(resumed[k], whole[k], atol=1e-5, rtol=1e-4, msg=k)
    # resuming a finished run trains nothing more and keeps its log
    def steps():
        return [h for h in json.loads((out / "trainer_state.json").read_text()) if "loss" in h]

    log = steps()
    train(SFTRecipe(**base), resume=True)
    again = load_file(out / "model.safetensors")
    assert all(torch.equal(again[k], resumed[k]) for k in resumed)
    assert steps() == log and [h["step"] for h in log] == [2, 4]
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]


def test_direct_answers_add_an_answer_only_turn_per_image(setup):
    from qponder import prompts

    rows = sft_examples(SFTRecipe(data=str(setup / "distilled.jsonl"), direct_answers=True))
    cot = [r for r in rows if r["think"]]
    direct = [r for r in rows if not r["think"]]
    assert len(cot) == 12  # the kept traces, unchanged
    assert len(direct) == 16  # every image, kept or not: its MOS is a human label either way
    assert direct[-1]["completion"] == "<answer>5.00</answer>" and all("<think>" not in r["completion"] for r in direct)
    ds = make_dataset(rows)
    asked = {r["think"]: ds[i]["messages"][0]["content"][1]["text"] for i, r in enumerate(rows)}
    assert asked == {True: prompts.load("student"), False: prompts.load("student_nothink")}
    with pytest.raises(QPonderError, match="direct_answers"):
        sft_examples(SFTRecipe(data=str(setup / "metas" / "train.json"), reasoning=False, direct_answers=True))


def test_perception_turns_name_the_labelled_family_on_every_image(setup, tmp_path):
    from qponder import prompts

    labels = [("none", 0), ("blur", 2), ("noise", 5), ("brightness", 4)]
    lines = []
    for i, line in enumerate((setup / "distilled.jsonl").read_text().splitlines()[:4]):
        d = json.loads(line)
        d["family"], d["level"] = labels[i]
        lines.append(json.dumps(d))
    data = tmp_path / "labelled.jsonl"
    data.write_text("\n".join(lines) + "\n")
    rows = sft_examples(SFTRecipe(data=str(data), perception_turns=True))
    seen = [r for r in rows if r.get("prompt") == "student_perceive"]
    assert [r["completion"] for r in seen] == [  # every image, kept (1-3) or not (0)
        "Main defect: none; the image is clean.", "Main defect: mild blur.",
        "Main defect: very severe noise.", "Main defect: severe exposure problems."]
    assert len(rows) - len(seen) == 3  # the kept traces are still trained, unchanged
    ds = make_dataset(rows)
    asked = [ds[i]["messages"][0]["content"][1]["text"] for i, r in enumerate(rows) if r.get("prompt")]
    assert set(asked) == {prompts.load("student_perceive")}
    from qponder.eval.reasoning import named_family

    assert [named_family(r["completion"]) for r in seen[1:]] == ["blur", "noise", "brightness"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**json.loads(lines[1]), "level": 9}) + "\n")
    with pytest.raises(QPonderError, match="bad.jsonl: line 1: level must be 1-5"):
        sft_examples(SFTRecipe(data=str(bad), perception_turns=True))
    bad.write_text(json.dumps({**json.loads(lines[1]), "family": "haze"}) + "\n")
    with pytest.raises(QPonderError, match="line 1: unknown distortion family 'haze'"):
        sft_examples(SFTRecipe(data=str(bad), perception_turns=True))
    with pytest.raises(QPonderError, match="perception_turns"):
        sft_examples(SFTRecipe(data=str(setup / "metas" / "train.json"), reasoning=False, perception_turns=True))
    with pytest.raises(QPonderError, match="distilled.jsonl: perception_turns needs a `family` label"):
        sft_examples(SFTRecipe(data=str(setup / "distilled.jsonl"), perception_turns=True))  # no labels at all


def test_vision_tower_trains_at_its_own_learning_rate(setup, tmp_path):
    from qponder.models import load
    from qponder.train.common import vision_modules

    def weights(folder):
        model, _ = load(str(folder))
        ids = {id(p) for p in vision_modules(model).parameters()}
        named = dict(model.named_parameters())
        tower = {n: p.detach().clone() for n, p in named.items() if id(p) in ids}
        rest = {n: p.detach().clone() for n, p in named.items() if id(p) not in ids}
        assert tower and rest
        return tower, rest

    start_tower, start_rest = weights(setup / "tiny")
    base = dict(model=str(setup / "tiny"), data=str(setup / "distilled.jsonl"), max_steps=4,
                per_device_train_batch_size=4, learning_rate=3e-3, save_steps=100, report_to="none")

    def moved(before, after):
        return max((after[n] - p).abs().max().item() for n, p in before.items())

    frozen_lr = train(SFTRecipe(out=str(tmp_path / "zero"), freeze_vision=False, vision_learning_rate=0.0, **base))
    tower, rest = weights(frozen_lr)
    assert moved(start_tower, tower) == 0.0 and moved(start_rest, rest) > 1e-3
    slow = train(SFTRecipe(out=str(tmp_path / "slow"), freeze_vision=False, vision_learning_rate=3e-5, **base))
    tower, _ = weights(slow)
    # Adam moves each weight by about lr per step: 4 steps at 3e-5 stay far below the LM's 3e-3 steps
    assert 0.0 < moved(start_tower, tower) < 4 * 3e-5 * 1.5
    with pytest.raises(QPonderError, match="vision_learning_rate and projector_learning_rate apply to full"):
        train(SFTRecipe(out=str(tmp_path / "lora"), freeze_vision=False, vision_learning_rate=1e-5, lora=True,
                        **base))


def test_projector_trains_at_its_own_learning_rate(setup, tmp_path):
    from qponder.models import load
    from qponder.train.common import projector_modules, vision_modules

    def parts(folder):
        model, _ = load(str(folder))
        named = dict(model.named_parameters())
        ids = {"projector": {id(p) for p in projector_modules(model).parameters()},
               "tower": {id(p) for p in vision_modules(model).parameters()}}
        out = {k: {n: p.detach().clone() for n, p in named.items() if id(p) in v} for k, v in ids.items()}
        out["lm"] = {n: p.detach().clone() for n, p in named.items()
                     if all(id(p) not in v for v in ids.values())}
        return out

    def moved(before, after):
        return max((after[n] - p).abs().max().item() for n, p in before.items())

    start = parts(setup / "tiny")
    still = train(SFTRecipe(model=str(setup / "tiny"), data=str(setup / "distilled.jsonl"), max_steps=4,
                            per_device_train_batch_size=4, learning_rate=3e-3, projector_learning_rate=0.0,
                            save_steps=100, report_to="none", out=str(tmp_path / "still")))
    end = parts(still)
    # the tower stays frozen (freeze_vision), the projector at lr 0 too, and only the LM learns
    assert moved(start["projector"], end["projector"]) == 0.0 and moved(start["tower"], end["tower"]) == 0.0
    assert moved(start["lm"], end["lm"]) > 1e-3
