"""The consistency judge: digit-blind, fitted on teacher text, stored as JSON; the LLM judge over loopback HTTP."""

from __future__ import annotations

import json
import math

import pytest

from qponder.errors import QPonderError
from qponder.judge import LLMJudge, TextJudge, evidence, features, fit_from_distilled, load_judge, strip_digits
from tests.test_openai_teacher import _completion, server  # noqa: F401  (the loopback server fixture)


def test_strip_digits_and_features():
    assert strip_digits("score 3.5, or 4,25 and 2") == "score  , or   and  "
    f = features("Strong BLUR, strong blur 5")
    assert f["strong"] == 2 and f["strong blur"] == 2 and f["blur strong"] == 1 and "5" not in " ".join(f)


def test_implied_is_linear_in_log_counts_and_clamped():
    j = TextJudge(["sharp", "blur"], [1.0, -1.0], 3.0)
    got = j.implied(["sharp", "blur blur", "sharp " * 40, "", None, "nothing known"])
    assert got[0] == pytest.approx(3 + math.log(2))
    assert got[1] == pytest.approx(3 - math.log(3))
    assert got[2] == 5.0  # clamped to the MOS scale
    assert got[3] is None and got[4] is None
    assert got[5] == 3.0


def corpus():
    texts, scores = [], []
    for i in range(60):
        texts.append(f"Image {i}: severe blur, details are lost. Quality is poor."); scores.append(1.5)
        texts.append(f"Image {i}: slight blur, mostly fine. Quality is fair."); scores.append(3.2)
        texts.append(f"Image {i}: clean and sharp, no artefacts. Quality is excellent."); scores.append(4.6)
    return texts, scores


def test_fit_learns_the_corpus_and_ignores_digits(tmp_path):
    texts, scores = corpus()
    j = TextJudge.fit(texts, scores)
    assert j.meta["n"] == 180 and j.meta["cv_srcc"] > 0.8 and j.meta["cv_mae"] < 0.3
    a, b, c = j.implied(["severe blur, details are lost", "slight blur, mostly fine", "clean and sharp"])
    assert a < b < c
    # a number written in the reasoning cannot move the judge
    assert j.implied(["severe blur 4.9 excellent 5"])[0] == j.implied(["severe blur excellent"])[0]
    path = j.save(tmp_path / "judge.json")
    k = TextJudge.load(path)
    assert k.implied(texts[:3]) == pytest.approx(j.implied(texts[:3]), abs=1e-4)


def test_evidence_drops_the_final_sentence_only():
    assert evidence("Heavy blur. Edges smear. Overall the quality is bad.") == "Heavy blur. Edges smear."
    assert evidence("Heavy blur. Overall the quality is") == "Heavy blur."  # a truncated verdict goes too
    assert evidence("Only a verdict.") == "" and evidence("") == ""


def test_evidence_judge_reads_the_observations_not_the_verdict(tmp_path):
    texts, scores = corpus()
    j = TextJudge.fit(texts, scores, reads="evidence")
    assert j.reads == "evidence" and j.meta["reads"] == "evidence" and j.meta["cv_mae"] < 0.3
    # the verdict sentence does not move it; the observations do
    a, b = j.implied(["Severe blur, details are lost. Quality is excellent.", "Severe blur, details are lost. Poor."])
    assert a == b and a < 2.5
    c, d = j.implied(["Clean and sharp, no artefacts. Quality is poor.", "Quality is excellent."])
    assert c > 4 and d is None  # nothing but a verdict: no evidence, no implied score
    # the whole-text judge does read the verdict
    w = TextJudge.fit(texts, scores)
    e, f = w.implied(["Slight blur, mostly fine. Quality is excellent.", "Slight blur, mostly fine. Quality is poor."])
    assert e - f > 0.3
    k = TextJudge.load(j.save(tmp_path / "evidence.json"))
    assert k.reads == "evidence" and k.implied(texts[:3]) == pytest.approx(j.implied(texts[:3]), abs=1e-4)
    with pytest.raises(QPonderError, match="reads must be one of all, evidence"):
        TextJudge.fit(texts, scores, reads="verdict")
    bad = json.loads((tmp_path / "evidence.json").read_text()) | {"reads": "verdict"}
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(QPonderError, match="bad.json: judge: reads must be one of"):
        TextJudge.load(tmp_path / "bad.json")


def test_fit_from_distilled_uses_teacher_scores_of_kept_and_rejected_rows(tmp_path):
    texts, scores = corpus()
    rows = [{"text": f"<think>{t}</think><answer>{s:.2f}</answer>", "kept": i % 2 == 0}
            for i, (t, s) in enumerate(zip(texts, scores))]
    rows.append({"text": None, "kept": False})  # a failed teacher call is skipped
    path = tmp_path / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert fit_from_distilled(path).meta["n"] == 180
    path.write_text("{broken\n")
    with pytest.raises(QPonderError, match="train.jsonl: line 1"):
        fit_from_distilled(path)


def test_bad_judge_files_are_clear_errors(tmp_path):
    with pytest.raises(QPonderError, match="missing.json: judge file not found"):
        TextJudge.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text('{"vocab": []}')
    with pytest.raises(QPonderError, match="bad.json: not a qponder judge file"):
        TextJudge.load(tmp_path / "bad.json")
    with pytest.raises(QPonderError, match="need at least 10"):
        TextJudge.fit(["a"] * 3, [1.0] * 3)
    with pytest.raises(QPonderError, match="openai:BASE_URL@MODEL"):
        load_judge("openai:nomodel")


def test_packaged_default_judge_reads_teacher_style_text():
    j = load_judge(None)
    assert j.meta["cv_srcc"] > 0.9
    good, bad = j.implied([
        "Edges are crisp and fine detail is well resolved. No sign of lossy coding. The geometry of the scene is "
        "intact. No defect stands out; the image looks clean. Taking everything into account, the quality is good.",
        "The image is blurred; even the strongest edges are smeared (overwhelming). The dominant problem: "
        "overwhelming blur. Small structures merge together. Taking everything into account, the quality is bad.",
    ])
    assert good - bad > 1.5


def test_llm_judge_sends_digit_free_reasoning(server):
    replies = iter(["<answer>2.25</answer>", "I think 4.5", "no idea"])
    server.behaviour = lambda req: (200, {}, json.dumps(_completion(next(replies))).encode())
    j = LLMJudge(server.url, "judge-model", retries=0)
    assert j.implied(["blur at level 5, score 1.2", "clean", "??", None]) == [2.25, 4.5, None, None]
    sent = server.requests[0].body["messages"][0]["content"]
    assert "blur at level" in sent and "5" not in sent.split("Reasoning:")[1]
    assert len(server.requests) == 3  # nothing is asked for a missing reasoning
