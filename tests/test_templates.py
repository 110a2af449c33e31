from __future__ import annotations

from dfa_bench.bench import build_bench, read_bench
from dfa_bench.parsing import parse
from dfa_bench.schema import CATEGORIES
from dfa_bench.templates import library, question_items


def test_library_sizes_and_polarities():
    lib = library()
    assert len(lib["dfd"]) >= 20 and len(lib["dfc"]) >= 20 and len(lib["ad"]) >= 20
    assert {t["polarity"] for t in lib["dfd"]} == {"forged", "authentic"}
    assert all("<image>" not in t["text"] for t in lib["dfd"])  # chat models add the image themselves


def _record(record_id: str, category: str = "face_swapping") -> dict:
    label = "bona_fide" if category == "bona_fide" else "forgery"
    desc = "" if label == "bona_fide" else "1. Eyes: blending seam."
    return {"record_id": record_id, "image": "x.png", "label": label, "category": category, "technique": "",
            "identity": "p1", "artifact_description": desc}  # fmt: skip


def test_sampling_depends_only_on_seed_record_and_task():
    a = question_items(_record("r1"), 3, "images/r1.png")
    assert a == question_items(_record("r1"), 3, "images/r1.png")
    questions = {question_items(_record(f"r{i}"), 3, "i")[0]["question"] for i in range(60)}
    assert len(questions) > 5  # templates actually vary across records
    seeds = {question_items(_record("r1"), s, "i")[1]["question"] for s in range(30)}
    assert len(seeds) > 1  # and across seeds


def test_dfc_options_are_shuffled_and_complete():
    orders = set()
    for i in range(40):
        dfc = question_items(_record(f"r{i}"), 0, "i")[1]
        assert sorted(o["category"] for o in dfc["options"]) == sorted(CATEGORIES)
        assert [o["letter"] for o in dfc["options"]] == list("ABCDE")
        orders.add(tuple(o["category"] for o in dfc["options"]))
    assert len(orders) > 10


def test_items_per_record():
    assert [i["task"] for i in question_items(_record("r", "bona_fide"), 0, "i")] == ["dfd", "dfc"]
    assert [i["task"] for i in question_items(_record("r", "face_editing"), 0, "i")] == ["dfd", "dfc", "ad"]


def test_reference_answers_parse_back_to_the_truth(bench_dir):
    bench = read_bench(bench_dir)
    for item in bench.items:
        if item["task"] == "dfd":
            assert parse(item, item["answer"]) == item["label"], item
        elif item["task"] == "dfc":
            assert parse(item, item["answer"]) == item["category"], item


def test_building_twice_is_byte_identical(synthetic_source, tmp_path):
    for name in ("a", "b"):
        build_bench(synthetic_source / "records.jsonl", synthetic_source, tmp_path / name, seed=11)
    for file in ("questions.jsonl", "manifest.json"):
        assert (tmp_path / "a" / file).read_bytes() == (tmp_path / "b" / file).read_bytes()
    build_bench(synthetic_source / "records.jsonl", synthetic_source, tmp_path / "c", seed=12)
    assert (tmp_path / "a" / "questions.jsonl").read_bytes() != (tmp_path / "c" / "questions.jsonl").read_bytes()


def test_dfd_answer_label_reads_back_every_reference_answer():
    from dfa_bench.templates import dfd_answer, dfd_answer_label

    for label in ("bona_fide", "forgery"):
        for polarity in ("forged", "authentic"):
            assert dfd_answer_label(dfd_answer(polarity, label)) == label
    assert dfd_answer_label("Yes. This face image is forged.") is None
