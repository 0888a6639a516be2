"""GRPO's rollouts from a bf16 copy of the policy, on a CPU that runs bf16 natively.

TRL generates with the policy itself: fp32 weights, and no autocast around ``generate`` (the loss's forward
passes run under it). On the 2-core build machine that made generation most of a GRPO step. A bf16 copy of the
policy, refreshed from its trainable weights before each generation, samples at bf16 speed, with decode
attention kept off SDPA's slow bf16 path (``qponder.models.precision.fast_cpu_decode``): 37 % faster generation,
23 % faster steps for the demo's 4 x 4 (docs/results.md, stop 15). Its samples differ from TRL's in bf16
rounding, so a seed's trajectory is not the one TRL's own rollouts would give; ``bf16_rollouts: false`` in the
GRPO recipe restores those.

The copy is loaded once from the policy's own checkpoint (frozen weights never change) and only the trainable
weights are copied into it. Trainers with adapters (LoRA), vLLM, or anything but a single
CPU process generate as TRL does.
"""

from __future__ import annotations

from typing import Callable


def bf16_rollouts(trainer_cls: type, load_copy: Callable):
    """A subclass of ``trainer_cls`` (TRL's GRPOTrainer) that generates with ``load_copy()``, a bf16 model of
    the policy's architecture and starting weights, synced with the policy before every generation."""

    class BF16RolloutTrainer(trainer_cls):
        _rollout_model = None

        def _generate_single_turn(self, *args, **kwargs):
            policy = self.model_wrapped
            self.model_wrapped = self._synced_copy()  # TRL's transformers path generates with model_wrapped
            try:
                return super()._generate_single_turn(*args, **kwargs)
            finally:
                self.model_wrapped = policy

        def _synced_copy(self):
            import torch

            if self._rollout_model is None:
                from qponder.models.precision import fast_cpu_decode
                from qponder.models.tower_cache import cache_frozen_tower

                self._rollout_model = copy = load_copy().to(torch.bfloat16).eval().requires_grad_(False)
                fast_cpu_decode(copy)
                cache_frozen_tower(copy)
                policy = dict(self.accelerator.unwrap_model(self.model).named_parameters())
                mine = dict(copy.named_parameters())
                if policy.keys() != mine.keys():
                    from qponder.errors import QPonderError

                    raise QPonderError("grpo: the bf16 rollout copy does not match the policy's parameters; "
                                       "set bf16_rollouts: false in the recipe")
                self._rollout_pairs = [(mine[n], p) for n, p in policy.items() if p.requires_grad]
            with torch.no_grad():
                for dst, src in self._rollout_pairs:
                    dst.copy_(src)
            return self._rollout_model

    return BF16RolloutTrainer
