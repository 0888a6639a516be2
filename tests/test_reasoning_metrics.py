"""Reasoning metrics on hand-written rows: family and severity accuracy, the clean rate, and the per-family table."""

from qponder.eval.reasoning import reasoning_metrics


def test_reasoning_metrics_per_family():
    rows = [
        {"family": "blur", "level": 3, "reasoning": "Strong blur: edges are soft and smeared."},
        {"family": "blur", "level": 2, "reasoning": "Heavy noise and grain everywhere."},
        {"family": "noise", "level": 4, "reasoning": "Grainy noise over flat areas."},
        {"family": "blur+noise", "level": 3, "reasoning": "Grain and noise on every surface."},
        {"family": "none", "level": 0, "reasoning": "Nothing is wrong with it."},
        {"family": "none", "level": 0, "reasoning": "Soft, blurry outlines."},
        {"family": "color", "level": 1, "reasoning": None},  # no reasoning: skipped
        {"family": None, "level": None, "reasoning": "Blurry."},  # no label: skipped
    ]
    m = reasoning_metrics(rows)
    assert (m["family_acc"], m["family_n"]) == (0.75, 4)
    assert (m["clean_rate"], m["clean_n"]) == (0.5, 2)
    assert m["family_by_family"] == {"blur": {"acc": 0.5, "n": 2}, "blur+noise": {"acc": 1.0, "n": 1},
                                     "noise": {"acc": 1.0, "n": 1}}
    assert reasoning_metrics([])["family_by_family"] == {}
