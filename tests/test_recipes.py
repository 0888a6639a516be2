"""Every shipped recipe parses into its dataclass, and command-line overrides win."""

from pathlib import Path

import pytest

from qponder.config import build
from qponder.errors import QPonderError
from qponder.teachers.distill import DistillRecipe
from qponder.train.sft import SFTRecipe

RECIPES = Path(__file__).parent.parent / "recipes"


@pytest.mark.parametrize("path", sorted(RECIPES.rglob("*.yaml")), ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_parses(path):
    cls = DistillRecipe if "distill" in path.name else SFTRecipe if "sft" in path.name else None
    if cls is None:
        pytest.skip(f"{path.name} belongs to a later stage")  # grpo / accelerate recipes have their own tests
    r = build(cls, path)
    assert r.data and r.out


def test_overrides_and_errors(tmp_path):
    r = build(SFTRecipe, RECIPES / "sft.yaml", ["learning_rate=5e-4", "lora=true"], max_steps=7, out=None)
    assert (r.learning_rate, r.lora, r.max_steps, r.out) == (5e-4, True, 7, "runs/demo/ci")
    assert build(SFTRecipe, None, [], model="m").model == "m"  # no recipe file at all
    with pytest.raises(QPonderError, match="unknown key 'learning_rat'"):
        build(SFTRecipe, RECIPES / "sft.yaml", ["learning_rat=1"])
    with pytest.raises(QPonderError, match="max_steps: 'many' is not a valid int"):
        build(SFTRecipe, None, ["max_steps=many"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(QPonderError, match="not valid YAML"):
        build(SFTRecipe, bad)
