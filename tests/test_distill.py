"""Distillation: MOS-consistency filter, retries, and the append-only resume property."""

import json

import pytest
from PIL import Image

from qponder.data.records import Record, write_meta
from qponder.errors import QPonderError
from qponder.teachers import distill as D


class FakeTeacher:
    """Says the image's brightness as the score; crashes (like a kill) after `crash_after` images."""

    name = "fake"

    def __init__(self, crash_after=None, offset=0.0):
        self.calls = 0
        self.crash_after, self.offset = crash_after, offset

    def describe(self, image, mos=None):
        if self.crash_after is not None and self.calls >= self.crash_after:
            raise KeyboardInterrupt
        self.calls += 1
        v = image.getpixel((0, 0))[0]
        if v == 0:
            return "<think>cannot tell</think>"  # unparseable: no answer
        score = 1 + 4 * v / 255 + self.offset
        return f"<think>Brightness {v}: the image is {'dark' if v < 128 else 'bright'}.</think><answer>{min(score, 5):.2f}</answer>"


@pytest.fixture
def data(tmp_path):
    (tmp_path / "images").mkdir()
    recs = []
    for i in range(10):
        v = 25 * i
        Image.new("RGB", (8, 8), (v, v, v)).save(tmp_path / "images" / f"{i}.png")
        # images 7..9 get a MOS far from what the teacher says: they must be filtered out
        recs.append(Record(f"{i}.png", min(5.0, 1 + 4 * v / 255 + (2.0 if i >= 7 else 0.0)) if i < 7 else 1.0))
    write_meta(recs, tmp_path / "metas" / "train.json")
    return tmp_path


def run(data, out, teacher, monkeypatch, **kw):
    monkeypatch.setattr(D, "make_teacher", lambda recipe, records, root: teacher)
    return D.distill(D.DistillRecipe(data=str(data / "metas" / "train.json"), out=str(out), **kw), progress=False)


def test_filter_and_summary(data, tmp_path, monkeypatch):
    s = run(data, tmp_path / "d.jsonl", FakeTeacher(), monkeypatch, tolerance=0.5)
    rows = [json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and s["images"] == 10
    assert {r["image"] for r in rows if r["kept"]} == {f"{i}.png" for i in range(1, 7)}
    assert s["kept"] == 6 and s["kept_share"] == 0.6
    assert s["dropped"] == {"unparseable": 1, "score disagrees with MOS": 3}
    r0 = next(r for r in rows if r["image"] == "0.png")
    assert r0["verdict"].startswith("unparseable: no <answer>") and r0["score"] is None
    assert json.loads((tmp_path / "d.summary.json").read_text())["kept"] == 6


def test_retries_record_history(data, tmp_path, monkeypatch):
    teacher = FakeTeacher()
    run(data, tmp_path / "d.jsonl", teacher, monkeypatch, retries=2)
    assert teacher.calls == 10 + 2 * 4  # four rejected images, each asked twice more
    rows = {json.loads(x)["image"]: json.loads(x) for x in (tmp_path / "d.jsonl").read_text().splitlines()}
    assert rows["8.png"]["attempts"] == 3 and len(rows["8.png"]["rejected"]) == 2
    assert rows["3.png"]["attempts"] == 1 and rows["3.png"]["rejected"] == []


def test_kill_and_rerun_loses_nothing_and_duplicates_nothing(data, tmp_path, monkeypatch):
    out = tmp_path / "d.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run(data, out, FakeTeacher(crash_after=4), monkeypatch)
    assert len(out.read_text().splitlines()) == 4
    with out.open("a") as fh:
        fh.write('{"image": "4.png", "mos": 2.')  # torn write of the row being written at the kill
    second = FakeTeacher()
    run(data, out, second, monkeypatch)
    assert second.calls == 6
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert sorted(r["image"] for r in rows) == sorted(f"{i}.png" for i in range(10))
    clean = tmp_path / "clean.jsonl"
    run(data, clean, FakeTeacher(), monkeypatch)
    key = lambda r: r["image"]  # noqa: E731
    drop = lambda r: {k: v for k, v in r.items()}  # noqa: E731
    assert sorted(map(drop, rows), key=key) == sorted(map(drop, [json.loads(x) for x in clean.read_text().splitlines()]),
                                                      key=key)


def test_teacher_errors_are_rows_not_crashes(data, tmp_path, monkeypatch):
    from qponder.errors import QPonderError

    class Flaky(FakeTeacher):
        def describe(self, image, mos=None):
            if image.getpixel((0, 0))[0] == 50:
                raise QPonderError("server said 500")
            return super().describe(image, mos)

    s = run(data, tmp_path / "d.jsonl", Flaky(), monkeypatch)
    assert s["images"] == 10 and s["dropped"]["teacher error"] == 1


def test_family_check_drops_traces_that_name_another_family():
    ok = "<answer>3.00</answer>"
    blur = f"<think>The image is blurry and soft.</think>{ok}"
    noisy = f"<think>Heavy noise and grain everywhere.</think>{ok}"
    clean = f"<think>Nothing is wrong with it.</think>{ok}"
    assert D.verdict(blur, 3.0, 0.5, family="blur")[:2] == (True, "kept")
    assert D.verdict(noisy, 3.0, 0.5, family="blur")[:2] == (False, "family disagrees with label")
    assert D.verdict(noisy, 3.0, 0.5, family="blur+noise")[0]  # a compound: either family counts
    assert D.verdict(clean, 3.0, 0.5, family="none")[0]
    assert D.verdict(blur, 3.0, 0.5, family="none")[:2] == (False, "family disagrees with label")
    assert not D.verdict(clean, 3.0, 0.5, family="noise")[0]
    assert D.verdict(noisy, 3.0, 0.5)[0] and D.verdict(noisy, 3.0, 0.5, family=None)[0]  # no label: no check
    # the MOS filter still comes first
    assert D.verdict(blur, 4.0, 0.5, family="blur")[1] == "score disagrees with MOS"


def test_family_hint_reaches_the_teacher(data, tmp_path, monkeypatch):
    recs = [Record(f"{i}.png", 3.0, family=["blur", "noise", None][i % 3]) for i in range(1, 7)]
    write_meta(recs, data / "metas" / "hint.json")
    seen = {}

    class Hinted(FakeTeacher):
        def describe(self, image, mos=None, family=None):
            seen[image.getpixel((0, 0))[0]] = family
            return super().describe(image, mos)

    make_teacher = D.make_teacher
    monkeypatch.setattr(D, "make_teacher", lambda recipe, records, root: Hinted())
    meta, out = str(data / "metas" / "hint.json"), tmp_path / "h.jsonl"
    s = D.distill(D.DistillRecipe(data=meta, out=str(out), use_family_hint=True), progress=False)
    assert s["use_family_hint"] is True
    assert seen == {25 * i: ["blur", "noise", None][i % 3] for i in range(1, 7)}
    assert all(json.loads(x)["use_family_hint"] for x in out.read_text().splitlines())
    with pytest.raises(QPonderError, match="use_family_hint=True, this run asks for False"):
        D.distill(D.DistillRecipe(data=meta, out=str(out)), progress=False)
    seen.clear()
    D.distill(D.DistillRecipe(data=meta, out=str(tmp_path / "plain.jsonl")), progress=False)
    assert len(seen) == 6 and set(seen.values()) == {None}  # off: describe is called without a family
    with pytest.raises(QPonderError, match="use_family_hint is an option of the attribute teacher"):
        make_teacher(D.DistillRecipe(teacher="openai", model="m", use_family_hint=True), [], tmp_path)


def test_family_check_in_a_distillation(data, tmp_path, monkeypatch):
    recs = [Record(f"{i}.png", min(5.0, 1 + 4 * 25 * i / 255), family="brightness" if i % 2 else "blur")
            for i in range(7)]
    write_meta(recs, data / "metas" / "fam.json")
    monkeypatch.setattr(D, "make_teacher", lambda recipe, records, root: FakeTeacher())
    # the fake teacher talks about brightness ("dark"/"bright"): only the brightness-labelled images can stay
    s = D.distill(D.DistillRecipe(data=str(data / "metas" / "fam.json"), out=str(tmp_path / "f.jsonl"),
                                  check_family=True), progress=False)
    rows = [json.loads(x) for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert {r["image"] for r in rows if r["kept"]} == {"1.png", "3.png", "5.png"}
    assert s["dropped"] == {"unparseable": 1, "family disagrees with label": 3} and s["check_family"] is True
    # resuming that file without the check would mix two filters: a clear error instead
    with pytest.raises(QPonderError, match="check_family=True"):
        D.distill(D.DistillRecipe(data=str(data / "metas" / "fam.json"), out=str(tmp_path / "f.jsonl")),
                  progress=False)
    again = D.distill(D.DistillRecipe(data=str(data / "metas" / "fam.json"), out=str(tmp_path / "f.jsonl"),
                                      check_family=True), progress=False)
    assert again["kept"] == 3  # the same filter resumes as before
    with pytest.raises(QPonderError, match="tolerance=0.5, this run asks for 0.25"):
        D.distill(D.DistillRecipe(data=str(data / "metas" / "fam.json"), out=str(tmp_path / "f.jsonl"),
                                  check_family=True, tolerance=0.25), progress=False)
    # rows from before the tolerance was recorded resume under any tolerance (it cannot be known)
    old = [{k: v for k, v in json.loads(x).items() if k != "tolerance"}
           for x in (tmp_path / "f.jsonl").read_text().splitlines()]
    (tmp_path / "f.jsonl").write_text("".join(json.dumps(r) + "\n" for r in old))
    assert D.distill(D.DistillRecipe(data=str(data / "metas" / "fam.json"), out=str(tmp_path / "f.jsonl"),
                                     check_family=True, tolerance=0.25), progress=False)["kept"] == 3
