"""GRPO's bf16 rollout copy: synced with the policy's trainable weights before each generation, never trained."""

import torch

from qponder.models import load
from qponder.models.build import init_model
from qponder.train.rollouts import bf16_rollouts


class FakeTRL:
    """Just what the subclass touches of TRL's GRPOTrainer: the policy, model_wrapped and the generation hook."""

    def __init__(self, model):
        self.model = self.model_wrapped = model
        self.accelerator = type("Acc", (), {"unwrap_model": staticmethod(lambda m: m)})()
        self.generated_with = []

    def _generate_single_turn(self, *args, **kwargs):
        self.generated_with.append(self.model_wrapped)
        return "completions"


def test_rollouts_come_from_a_synced_bf16_copy(tmp_path):
    init_model("tiny", tmp_path / "tiny")
    policy, _ = load(str(tmp_path / "tiny"))
    for p in policy.model.vision_tower.parameters():
        p.requires_grad_(False)
    trainer = bf16_rollouts(FakeTRL, lambda: load(str(tmp_path / "tiny"))[0])(policy)
    assert trainer._generate_single_turn([1], None, {}, 4) == "completions"
    copy = trainer.generated_with[0]
    assert copy is not policy and trainer.model_wrapped is policy  # the policy is back for the loss
    assert all(p.dtype == torch.bfloat16 for p in copy.parameters())
    with torch.no_grad():  # an optimizer step on the policy
        for p in policy.parameters():
            if p.requires_grad:
                p.add_(0.5)
    trainer._generate_single_turn([1], None, {}, 4)
    assert trainer.generated_with[1] is copy  # loaded once, refreshed in place
    theirs = dict(policy.named_parameters())
    for name, p in copy.named_parameters():
        assert torch.equal(p, theirs[name].to(torch.bfloat16)), name
    assert not any(p.requires_grad for p in copy.parameters())
