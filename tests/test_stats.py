import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from dfa_bench.instruct.stats import PLOTS, data_stats
from dfa_bench.schema import CATEGORIES, ValidationError

W, H = 320, 200

# (split, category, identity) for each record; identities repeat within a split
RECORDS = [
    ("train", "bona_fide", "id1"),
    ("train", "bona_fide", "id2"),
    ("train", "face_swapping", "id1"),
    ("train", "face_editing", "id3"),
    ("train", "entire_face_synthesis", "id3"),
    ("dev", "face_reenactment", "id4"),
    ("dev", "bona_fide", "id4"),
    ("test", "face_swapping", "id5"),
    ("test", "face_swapping", "id6"),
    ("test", "face_editing", "id6"),
]


def _turns(*pairs: tuple[str, str]) -> list[dict]:
    turns = []
    for question, answer in pairs:
        turns += [{"from": "human", "value": question}, {"from": "gpt", "value": answer}]
    turns[0]["value"] = "<image>\n" + turns[0]["value"]
    return turns


INSTRUCT = {
    "dfd": [
        _turns(("Is this face forged?", "Yes, the face is forged; blending artifacts are visible.")),
        _turns(("Is this face real?", "Yes, this is an authentic face.")),
        _turns(("Is this face forged?", "No, the face is authentic.")),
    ],
    "dfc": [
        _turns(("Which category?", "B. Face swapping: the identity was replaced.")),
        _turns(("Which category?", "A. Bona fide: an authentic photograph.")),
    ],
    "ad": [_turns(("Where are the artifacts?", "Blending artifacts around the mouth and the jaw."))],
    # a free conversation: three QA pairs in one entry
    "fc": [_turns(("Describe it.", "Forged face."), ("Why?", "Blending seams."), ("Sure?", "Yes, forged blending."))],
}


def _make_build(root: Path, *, with_fc: bool) -> Path:
    (root / "records").mkdir(parents=True)
    (root / "instruct").mkdir()
    for split in ("train", "dev", "test"):
        rows = []
        for i, (s, category, identity) in enumerate(RECORDS):
            if s == split:
                rows.append(
                    {
                        "record_id": f"r{i}",
                        "image": f"images/r{i}.png",
                        "label": "bona_fide" if category == "bona_fide" else "forgery",
                        "category": category,
                        "technique": "",
                        "identity": identity,
                        "artifact_description": "" if category == "bona_fide" else "blurry edges",
                    }
                )
        (root / "records" / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    abilities = ["dfd", "dfc", "ad"] + (["fc"] if with_fc else [])
    merged = []
    for ability in abilities:
        entries = [
            {"id": f"{ability}{i}", "image": "images/r0.png", "conversations": c}
            for i, c in enumerate(INSTRUCT[ability])
        ]
        merged += entries
        (root / "instruct" / f"dfa_instruct_{ability}.json").write_text(json.dumps(entries))
    (root / "instruct" / "dfa_instruct_merged.json").write_text(json.dumps(merged))
    return root


@pytest.mark.parametrize("with_fc", [True, False])
def test_counts_and_plots(tmp_path, with_fc):
    build = _make_build(tmp_path / "build", with_fc=with_fc)
    stats = data_stats(build, width=W, height=H)
    out = build / "stats"
    on_disk = json.loads((out / "stats.json").read_text())
    assert on_disk == stats

    qa = {"dfd": 3, "dfc": 2, "ad": 1, "fc": 3 if with_fc else 0}
    assert stats["qa_pairs"] == qa
    assert stats["qa_pairs_total"] == sum(qa.values())
    assert stats["abilities_absent"] == ([] if with_fc else ["fc"])

    splits = ("train", "dev", "test")
    assert stats["images_total"] == len(RECORDS)
    assert stats["images_by_split"] == {s: sum(r[0] == s for r in RECORDS) for s in splits}
    assert stats["images_by_category"] == {c: sum(r[1] == c for r in RECORDS) for c in CATEGORIES}
    assert stats["images_by_split_category"] == {
        s: {c: sum(r[:2] == (s, c) for r in RECORDS) for c in CATEGORIES} for s in splits
    }
    assert stats["identities_by_split"] == {s: len({r[2] for r in RECORDS if r[0] == s}) for s in splits}

    assert stats["plots"] == PLOTS
    for name in PLOTS.values():
        with Image.open(out / name) as image:
            assert image.format == "PNG" and image.size == (W, H)
            assert len(image.convert("RGB").getcolors(W * H)) > 2  # something was drawn on the white
    assert not list(out.glob(".*.tmp"))  # no temp files left behind

    top = {row["word"]: row["count"] for row in stats["top_words"]}
    assert len(stats["top_words"]) <= 50
    # counted over the per-ability files only: the merged file must not double it
    answers = [t["value"] for a in qa if qa[a] for c in INSTRUCT[a] for t in c if t["from"] == "gpt"]
    assert top["blending"] == sum(a.lower().count("blending") for a in answers) == (4 if with_fc else 2)
    for stopword in ("the", "is", "and", "this", "a"):
        assert stopword not in top
    counts = [row["count"] for row in stats["top_words"]]
    assert counts == sorted(counts, reverse=True)


def test_wordcloud_is_deterministic(tmp_path):
    build = _make_build(tmp_path / "build", with_fc=True)
    data_stats(build, tmp_path / "a", width=W, height=H)
    data_stats(build, tmp_path / "b", width=W, height=H)
    for name in PLOTS.values():
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_top_words_limited_to_fifty(tmp_path):
    build = _make_build(tmp_path / "build", with_fc=False)
    vocabulary = [f"word{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(60)]
    entries = [
        {"id": "x", "image": "i.png", "conversations": _turns(("q", " ".join(vocabulary[:i])))} for i in range(61)
    ]
    (build / "instruct" / "dfa_instruct_ad.json").write_text(json.dumps(entries))
    stats = data_stats(build, width=W, height=H)
    assert len(stats["top_words"]) == 50
    expected = Counter(w for i in range(61) for w in vocabulary[:i])
    assert stats["top_words"][0] == {"word": vocabulary[0], "count": expected[vocabulary[0]]}


def test_missing_records_dir_names_path(tmp_path):
    with pytest.raises(ValidationError, match=str(tmp_path / "nope" / "records")):
        data_stats(tmp_path / "nope", width=W, height=H)


def test_malformed_inputs_name_file(tmp_path):
    build = _make_build(tmp_path / "build", with_fc=False)
    dev = build / "records" / "dev.jsonl"
    good = dev.read_text()
    dev.write_text(good + "{not json\n")
    with pytest.raises(ValidationError, match=f"{dev}:3"):
        data_stats(build, width=W, height=H)
    dev.write_text(good)

    dfc = build / "instruct" / "dfa_instruct_dfc.json"
    dfc.write_text("[{")
    with pytest.raises(ValidationError, match=str(dfc)):
        data_stats(build, width=W, height=H)
    dfc.write_text("[\n" + json.dumps({"id": "x", "conversations": []}) + ",\n" + json.dumps({"id": "y"}) + "\n]")
    with pytest.raises(ValidationError, match=f"{dfc}: field 'conversations': entry 1"):
        data_stats(build, width=W, height=H)
    dfc.unlink()  # dfc is required; only fc may be absent
    with pytest.raises(ValidationError, match=str(dfc)):
        data_stats(build, width=W, height=H)


def test_instruct_layout_does_not_matter(tmp_path):
    """Pretty-printed instruct files count the same as the pipeline's one-entry-per-line files."""
    build = _make_build(tmp_path / "build", with_fc=True)
    expected = data_stats(build, width=W, height=H)
    for path in (build / "instruct").glob("*.json"):
        path.write_text(json.dumps(json.loads(path.read_text()), indent=2))
    assert data_stats(build, width=W, height=H) == expected


def test_crash_keeps_previous_png(tmp_path, monkeypatch):
    build = _make_build(tmp_path / "build", with_fc=True)
    data_stats(build, width=W, height=H)
    out = build / "stats"
    before = {name: (out / name).read_bytes() for name in [*PLOTS.values(), "stats.json"]}

    def half_save(self, fp, *args, **kwargs):
        fp.write(b"\x89PNG\r\n")  # half a PNG, then the disk fills up
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", half_save)
    with pytest.raises(OSError, match="disk full"):
        data_stats(build, width=W, height=H)
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not list(out.glob(".*.tmp"))


def test_import_is_light():
    """The plotting libraries load only when data_stats runs."""
    code = "import sys, dfa_bench.instruct.stats; print(sorted({'matplotlib', 'wordcloud'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
