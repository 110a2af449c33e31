from __future__ import annotations

import json
import shutil

import pytest

from dfa_bench.bench import read_records
from dfa_bench.instruct.llava_json import check_no_leak, llava_conversations, write_training_json
from dfa_bench.instruct.split import identity_disjoint_split


def test_llava_training_files(synthetic_source, tmp_path):
    records = read_records(synthetic_source / "records.jsonl")
    conversations = llava_conversations(records, lambda r: r["image"], seed=0)
    n_forgeries = sum(r["label"] == "forgery" for r in records)
    assert [len(conversations[k]) for k in ("dfd", "dfc", "ad")] == [len(records), len(records), n_forgeries]
    assert len(conversations["merged"]) == 2 * len(records) + n_forgeries
    entry = conversations["dfc"][0]
    assert entry["conversations"][0]["from"] == "human" and entry["conversations"][0]["value"].startswith("<image>\n")
    assert entry["conversations"][1]["from"] == "gpt" and entry["image"] == records[0]["image"]
    paths = write_training_json(tmp_path, conversations)
    assert sorted(p.name for p in paths) == [f"dfa_instruct_{k}.json" for k in ("ad", "dfc", "dfd", "merged")]
    assert json.loads((tmp_path / "dfa_instruct_merged.json").read_text()) == conversations["merged"]


def test_leak_check_compares_bytes_not_names(synthetic_source, tmp_path):
    records = read_records(synthetic_source / "records.jsonl")
    splits, _ = identity_disjoint_split(records, {"train": 0.8, "test": 0.2}, seed=0)
    train = [synthetic_source / r["image"] for r in splits["train"]]
    test = [synthetic_source / r["image"] for r in splits["test"]]
    check_no_leak(train, test)
    copy = tmp_path / "renamed.png"
    shutil.copyfile(train[0], copy)
    with pytest.raises(ValueError, match="1 training images are also dev/test images"):
        check_no_leak(train, [*test, copy])
