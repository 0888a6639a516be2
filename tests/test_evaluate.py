import json

import numpy as np
import pytest
from PIL import Image

from qponder.data.records import Record, write_meta
from qponder.errors import QPonderError
from qponder.eval.evaluate import evaluate, read_predictions
from qponder.eval.predictor import Prediction


class Brightness:
    """A stand-in model: predicts the image's mean brightness mapped to [1, 5]; fails on pure black."""

    name = "brightness"
    on_mos_scale = True

    def __init__(self, crash_after=None):
        self.seen = 0
        self.crash_after = crash_after

    def predict(self, images):
        out = []
        for im in images:
            if self.crash_after is not None and self.seen >= self.crash_after:
                raise KeyboardInterrupt  # a killed run
            self.seen += 1
            m = float(np.asarray(im).mean())
            out.append(Prediction(None, ok=False, reason="black") if m == 0 else
                       Prediction(1 + 4 * m / 255, text=f"<answer>{m:.2f}</answer>", tokens=5))
        return out


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "ds"
    (root / "images").mkdir(parents=True)
    recs = []
    for i in range(12):
        v = 0 if i == 0 else 20 * i
        Image.new("RGB", (16, 16), (v, v, v)).save(root / "images" / f"{i}.png")
        recs.append(Record(f"{i}.png", 1 + 4 * v / 255, family="blur" if i % 2 else "noise"))
    write_meta(recs, root / "metas" / "test.json")
    return root


def test_summary_and_failures(dataset, tmp_path):
    s = evaluate(Brightness(), dataset / "metas" / "test.json", tmp_path / "out", batch_size=5, progress=False)
    assert s["n"] == 12 and s["n_failed"] == 1
    assert s["parse_fail_rate"] == round(1 / 12, 4)
    # the failed image counts as the median guess, so correlation is high but not perfect
    assert 0.5 < s["srcc"] < 1.0
    assert s["mean_tokens"] == 5.0
    assert set(s["per_family"]) == {"blur", "noise"} and s["per_family"]["blur"]["srcc"] == pytest.approx(1.0)
    for k in ("srcc", "plcc", "plcc_logistic", "krcc", "rmse", "images_per_second"):
        assert s[k] is not None
    on_disk = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert on_disk["srcc"] == s["srcc"]
    rows = read_predictions(tmp_path / "out" / "predictions.jsonl")
    assert [r["image"] for r in rows] == [f"{i}.png" for i in range(12)]
    assert rows[0]["ok"] is False and rows[0]["reason"] == "black"


def test_resume_after_kill_scores_each_image_once(dataset, tmp_path):
    meta, out = dataset / "metas" / "test.json", tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        evaluate(Brightness(crash_after=7), meta, out, batch_size=3, progress=False)
    assert len(read_predictions(out / "predictions.jsonl")) == 6  # two whole batches were flushed
    with (out / "predictions.jsonl").open("a") as fh:
        fh.write('{"image": "6.png", "mo')  # a torn line from a kill mid-write
    model = Brightness()
    s = evaluate(model, meta, out, batch_size=3, progress=False)
    assert model.seen == 6 and s["n"] == 12
    rows = read_predictions(out / "predictions.jsonl")
    assert sorted(r["image"] for r in rows) == sorted(f"{i}.png" for i in range(12))
    fresh = evaluate(Brightness(), meta, tmp_path / "fresh", progress=False)
    assert s["srcc"] == fresh["srcc"] and s["plcc"] == fresh["plcc"]


def test_missing_and_corrupt_images(dataset, tmp_path):
    (dataset / "images" / "3.png").unlink()
    meta = dataset / "metas" / "test.json"
    with pytest.raises(QPonderError, match="1 of 12 images are missing.*3.png"):
        evaluate(Brightness(), meta, tmp_path / "a", progress=False)
    s = evaluate(Brightness(), meta, tmp_path / "b", skip_missing=True, progress=False)
    assert s["n"] == 11
    (dataset / "images" / "5.png").write_bytes(b"not an image")
    with pytest.raises(QPonderError, match="5.png: not a readable image"):
        evaluate(Brightness(), meta, tmp_path / "c", skip_missing=True, progress=False)


class WithExpected(Brightness):
    """Answers rank like the MOS; the expected scores rank against it, so the two metrics must differ."""

    def predict(self, images):
        out = super().predict(images)
        return [Prediction(p.score, ok=p.ok, text=p.text, tokens=p.tokens, reason=p.reason,
                           expected=None if p.score is None else 6 - p.score) for p in out]


def test_expected_score_metrics_beside_the_answer(dataset, tmp_path):
    s = evaluate(WithExpected(), dataset / "metas" / "test.json", tmp_path / "out", progress=False)
    assert s["srcc"] > 0.5 and s["srcc_expected"] < -0.5 and s["krcc_expected"] < 0
    assert s["expected_missing_rate"] == round(1 / 12, 4)  # the black image has neither
    rows = read_predictions(tmp_path / "out" / "predictions.jsonl")
    assert rows[1]["expected"] == pytest.approx(6 - rows[1]["score"])
    plain = evaluate(Brightness(), dataset / "metas" / "test.json", tmp_path / "plain", progress=False)
    assert "srcc_expected" not in plain  # classical metrics and old prediction files have no expected score
