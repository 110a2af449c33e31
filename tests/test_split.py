from __future__ import annotations

import pytest

from dfa_bench.instruct.split import check_disjoint, identity_disjoint_split


def _records(n_people: int = 60) -> list[dict]:
    records = []
    for p in range(n_people):
        records += [{"record_id": f"real{p}_{k}", "identity": f"p{p}"} for k in range(3)]
        # a face swap of p's face onto p+1's frame joins the two identities
        if p % 4 == 0:
            records.append({"record_id": f"fs{p}", "identity": f"p{p + 1}", "related_identities": [f"p{p}"]})
    return records


def test_splits_are_identity_disjoint_and_near_their_ratios():
    records = _records()
    splits, split_file = identity_disjoint_split(records, {"train": 0.7, "dev": 0.15, "test": 0.15}, seed=3)
    assert sum(split_file["counts"].values()) == len(records)
    ids = split_file["identities"]
    assert not (
        set(ids["train"]) & set(ids["dev"])
        or set(ids["train"]) & set(ids["test"])
        or set(ids["dev"]) & set(ids["test"])
    )
    assert abs(len(splits["train"]) / len(records) - 0.7) < 0.05
    assert all(len(splits[s]) > 0 for s in ("dev", "test"))


def test_forgeries_stay_with_their_source_identities():
    splits, _ = identity_disjoint_split(_records(), seed=1)
    where = {r["record_id"]: name for name, rs in splits.items() for r in rs}
    for p in range(0, 60, 4):
        assert where[f"fs{p}"] == where[f"real{p}_0"] == where[f"real{p + 1}_0"]


def test_deterministic_per_seed():
    a = identity_disjoint_split(_records(), seed=5)[1]
    assert a == identity_disjoint_split(_records(), seed=5)[1]
    assert a["identities"] != identity_disjoint_split(_records(), seed=6)[1]["identities"]


def test_bad_ratios_and_overlap_are_errors():
    with pytest.raises(ValueError, match="sum to 1"):
        identity_disjoint_split(_records(), {"train": 0.9, "test": 0.2})
    with pytest.raises(ValueError, match="'p1' is in both 'train' and 'test'"):
        check_disjoint({"train": ["p1", "p2"], "test": ["p1"]})
