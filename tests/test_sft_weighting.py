"""The token-weighted SFT loss: which tokens get which weight, that it is the plain loss at weight 1, that it trains."""

import json
import random
import re

import pytest
import torch
from PIL import Image

from qponder.errors import QPonderError
from qponder.models.build import init_model
from qponder.teachers import attribute as A
from qponder.train.sft import SFTRecipe, make_dataset, sft_examples, train
from qponder.train.weighting import TokenWeights, WeightedSFTTrainer


class Pieces:
    """A tokenizer stand-in: token i decodes to pieces[i]."""

    def __init__(self, pieces):
        self.pieces = pieces

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.pieces[i] for i in ids)


PIECES = ["<think>", "Blur", " is", " strong", ".", " Fine", "</think>", "<answer>", "2", ".", "5", "0", "</answer>"]


def test_weights_follow_the_matched_spans():
    tw = TokenWeights(Pieces(PIECES), {r"<answer>.*?</answer>": 4.0})
    labels = [-100, -100] + list(range(len(PIECES)))
    assert tw.row(labels) == [0, 0] + [1] * 7 + [4] * 6


def test_capture_group_partial_tokens_and_overlaps():
    # the first rule matches from "is" but weights its group, "strong.", only; " is" gets 2 from the second rule
    tw = TokenWeights(Pieces(PIECES), {r"is (strong\.)": 3.0, r"Blur is": 2.0, r"ong": 5.0})
    labels = list(range(7))
    # "ong" lies inside " strong": the token takes the larger of 3 and 5; a 0.5 rule lowers a token it alone matches
    assert tw.row(labels) == [1, 2, 2, 5, 3, 1, 1]
    low = TokenWeights(Pieces(PIECES), {r"Fine": 0.5})
    assert low.row(labels) == [1, 1, 1, 1, 1, 0.5, 1]


def test_targets_are_read_across_ignored_positions():
    # -100 in the middle (e.g. the template between turns) neither breaks a match nor gets a weight
    tw = TokenWeights(Pieces(PIECES), {r"strong\. Fine": 2.0})
    assert tw.row([0, 1, 2, 3, -100, 4, 5, 6]) == [1, 1, 1, 2, 0, 2, 2, 1]
    t = tw(torch.tensor([[0, 1, -100], [3, 4, 5]]))
    assert t.tolist() == [[1, 1, 0], [2, 2, 2]]


def test_bad_rules_are_clear_errors():
    with pytest.raises(QPonderError, match="not a valid regular expression"):
        TokenWeights(Pieces(PIECES), {"(unclosed": 2.0})
    with pytest.raises(QPonderError, match="must be a number >= 0"):
        TokenWeights(Pieces(PIECES), {"Blur": -1})


def test_teacher_patterns_find_one_diagnosis_one_verdict_one_answer_in_every_trace():
    names = sorted(A.DETECTORS)
    clean = 0
    for seed in range(300):
        rng = random.Random(seed)
        levels = (0.0, 0.05) if seed % 5 == 0 else (0.0, 0.05, 0.3, 0.6, 0.9, rng.random())  # 1 in 5 is clean
        sev = {n: rng.choice(levels) for n in names}
        fam: dict[str, float] = {}
        for n, v in sev.items():
            fam[A.DETECTORS[n]] = max(fam.get(A.DETECTORS[n], 0.0), v)
        diagnosis = sorted(fam.items(), key=lambda kv: -kv[1])
        for first in (True, False):
            text = f"<think>{A.write_reasoning(sev, diagnosis, 3.0, random.Random(seed), diagnosis_first=first)}" \
                   "</think><answer>3.00</answer>"
            found = re.findall(A.DIAGNOSIS_PATTERN, text)
            assert len(found) == 1, text
            clean += any(c.startswith(found[0].rstrip(".")) for c in A._CLEAN)
            assert any(q in re.search(A.VERDICT_PATTERN, text).group(1) for q in A.QUALITY_WORDS)
            assert len(re.findall(A.ANSWER_PATTERN, text)) == 1
    assert 0 < clean < 600  # both kinds of diagnosis (a defect, no defect) were exercised


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("wsft")
    init_model("tiny", root / "tiny")
    lines = []
    for i in range(12):
        v = 20 * i
        Image.new("RGB", (64, 48), (v, v, 255 - v)).save(root / f"{i}.png")
        mos = 1 + 4 * i / 11
        text = (f"<think>I look closely. The image is {'dark' if i < 6 else 'bright'}. It is flat.</think>"
                f"<answer>{mos:.2f}</answer>")
        lines.append(json.dumps({"image": f"{i}.png", "mos": mos, "text": text, "score": mos, "kept": True}))
    (root / "distilled.jsonl").write_text("\n".join(lines) + "\n")
    return root


def _trainer(setup, loss_weights):
    from trl import SFTConfig

    from qponder.models import load

    torch.manual_seed(0)
    model, proc = load(str(setup / "tiny"))
    ds = make_dataset(sft_examples(SFTRecipe(data=str(setup / "distilled.jsonl")))[:4])
    args = SFTConfig(output_dir=str(setup / "ck"), use_cpu=True, bf16=False, assistant_only_loss=True, max_length=None,
                     remove_unused_columns=False, report_to="none", per_device_train_batch_size=4)
    trainer = WeightedSFTTrainer(model=model, args=args, train_dataset=ds, processing_class=proc,
                                 token_weights=TokenWeights(proc.tokenizer, loss_weights))
    return trainer, trainer.data_collator([ds[i] for i in range(4)])


def test_weight_one_is_the_plain_cross_entropy_and_weights_shift_it(setup):
    trainer, batch = _trainer(setup, {"<answer>.*?</answer>": 1.0})
    model = trainer.model.eval()
    with torch.no_grad():
        plain = model(**batch).loss  # the model's own mean cross-entropy over the target tokens
        ours = trainer.compute_loss(model, dict(batch))
        assert ours.item() == pytest.approx(plain.item(), rel=1e-5)
        trainer.token_weights = TokenWeights(trainer.processing_class.tokenizer, {"<answer>.*?</answer>": 1e6})
        answer_only = trainer.compute_loss(model, dict(batch))
    # at a huge weight the loss tends to the mean over the answer's tokens alone, which differs from the plain mean
    labels = batch["labels"][:, 1:]
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1]
    w = trainer.token_weights(labels)
    ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)), labels.reshape(-1),
                                           ignore_index=-100, reduction="none").view_as(labels)
    assert answer_only.item() == pytest.approx((ce[w > 1]).mean().item(), rel=1e-4)
    assert abs(answer_only.item() - plain.item()) > 1e-3


def test_weighted_training_runs_from_the_recipe(setup, tmp_path):
    out = train(SFTRecipe(model=str(setup / "tiny"), data=str(setup / "distilled.jsonl"), out=str(tmp_path / "ci"),
                          max_steps=20, per_device_train_batch_size=4, learning_rate=3e-3, logging_steps=5,
                          save_steps=20, report_to="none",
                          loss_weights={A.VERDICT_PATTERN: 3.0, A.ANSWER_PATTERN: 3.0}))
    logs = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text()) if "loss" in h]
    assert logs[-1] < 0.7 * logs[0]
    from qponder.config import build

    assert build(SFTRecipe, out / "recipe.yaml").loss_weights == {A.VERDICT_PATTERN: 3.0, A.ANSWER_PATTERN: 3.0}


def test_gradient_accumulation_matches_one_big_batch(setup, tmp_path):
    # each micro-batch's weighted mean is divided by the accumulation steps: 2 x 2 images train like 1 x 4
    losses = {}
    for ga in (1, 2):
        out = train(SFTRecipe(model=str(setup / "tiny"), data=str(setup / "distilled.jsonl"),
                              out=str(tmp_path / str(ga)), max_steps=2, per_device_train_batch_size=4 // ga,
                              gradient_accumulation_steps=ga, logging_steps=1, save_steps=10, report_to="none",
                              loss_weights={A.ANSWER_PATTERN: 3.0}))
        losses[ga] = [h["loss"] for h in json.loads((out / "trainer_state.json").read_text()) if "loss" in h]
    assert losses[2] == pytest.approx(losses[1], rel=1e-4)
