from __future__ import annotations

import copy
import math
from concurrent.futures import ThreadPoolExecutor

import datasets
import pytest

from dfa_bench import lmms_task
from dfa_bench.bench import read_bench
from dfa_bench.schema import ValidationError
from dfa_bench.scoring import aggregate, judge


@pytest.fixture
def docs(bench_dir, monkeypatch):
    monkeypatch.setenv(lmms_task.BENCH_ENV, str(bench_dir))
    placeholder = datasets.Dataset.from_list([{"placeholder": "x"}])
    return {task: list(getattr(lmms_task, f"{task}_docs")(placeholder)) for task in ("dfd", "dfc", "ad")}


def test_process_docs_loads_the_bench_named_by_the_environment(docs, bench_dir):
    bench = read_bench(bench_dir)
    assert [d["question_id"] for d in docs["dfc"]] == [i["question_id"] for i in bench.items_for("dfc")]
    image = lmms_task.doc_to_visual(docs["dfd"][0])[0]
    assert image.mode == "RGB" and image.size == (64, 64)
    assert lmms_task.doc_to_text(docs["ad"][0]) == docs["ad"][0]["question"]
    text = lmms_task.doc_to_text(docs["dfd"][0], {"pre_prompt": "P ", "post_prompt": " Q"})
    assert text == f"P {docs['dfd'][0]['question']} Q"


def test_process_results_is_pure_and_thread_safe(docs):
    items = [d for task in docs.values() for d in task]
    responses = ["Yes, it is fake.", "B", "1. Eyes: blending seam.", "I cannot tell."]
    jobs = [(doc, [responses[i % len(responses)]]) for i, doc in enumerate(items)] * 5
    before = copy.deepcopy(items)
    sequential = [lmms_task.process_results(doc, res) for doc, res in jobs]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda job: lmms_task.process_results(*job), jobs))
    assert threaded == sequential
    assert items == before


def test_aggregations_match_the_scoring_core(docs):
    rows = [judge(doc, "This face is real.") for doc in docs["dfd"]]
    expected = aggregate(rows, resamples=0)["dfd"]
    # lmms-eval passes one copy of the row per metric key per doc; repeats must not count twice
    assert lmms_task.aggregate_acc(rows + rows) == expected["acc"]
    assert lmms_task.aggregate_acer(rows) == expected["acer"]
    assert lmms_task.aggregate_parse_failure_rate(rows) == 0.0
    forgeries_only = [r for r in rows if r["truth"] == "forgery"]
    assert math.isnan(lmms_task.aggregate_bpcer(forgeries_only))


def test_unset_bench_and_bad_images_are_clear_errors(docs, monkeypatch, tmp_path):
    broken = {**docs["dfd"][0], "image_path": str(tmp_path / "corrupt.png")}
    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    with pytest.raises(ValidationError, match="unreadable image for"):
        lmms_task.doc_to_visual(broken)
    monkeypatch.delenv(lmms_task.BENCH_ENV)
    with pytest.raises(RuntimeError, match="DFA_BENCH_DIR"):
        lmms_task.bench_dir()


def test_a_truncated_image_is_an_error_even_after_lmms_eval_allows_truncated_loading(docs, tmp_path, monkeypatch):
    import lmms_eval.api.task  # noqa: F401  (sets ImageFile.LOAD_TRUNCATED_IMAGES = True on import)
    from PIL import ImageFile

    assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    source = docs["dfd"][0]["image_path"]
    cut = tmp_path / "cut.png"
    data = open(source, "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValidationError, match=r"cut\.png: unreadable image for .*truncated"):
        lmms_task.doc_to_visual({**docs["dfd"][0], "image_path": str(cut)})
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # lmms-eval's setting is left as it was
    assert lmms_task.doc_to_visual(docs["dfd"][0])[0].size == (64, 64)


def test_docs_carry_the_image_and_bench_hashes(docs, bench_dir):
    bench = read_bench(bench_dir)
    doc = docs["dfc"][0]
    assert doc["image_sha256"] == bench.manifest["files"][doc["image"]]
    assert doc["bench_sha256"] == bench.manifest_sha256
