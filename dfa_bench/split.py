"""Identity-disjoint train / dev / test splits.

Identities linked by a forgery (a face swap joins its target and its source identity, and
`related_identities` may name more) form one group, so bona fide images and the forgeries made
from them always land in the same split. Groups are ordered by a seeded hash and each goes to the
split furthest below its target share of records, which keeps splits near their ratios even with
uneven group sizes.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable

DEFAULT_RATIOS = {"train": 0.8, "dev": 0.1, "test": 0.1}


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def identities_of(record: dict) -> list[str]:
    return [record["identity"], *record.get("related_identities", [])]


def identity_disjoint_split(
    records: Iterable[dict], ratios: dict[str, float] | None = None, *, seed: int = 0
) -> tuple[dict[str, list[dict]], dict]:
    """Split records; returns ({split: records}, split file dict recording which identities went where)."""
    ratios = dict(ratios or DEFAULT_RATIOS)
    if not ratios or any(r < 0 for r in ratios.values()) or abs(sum(ratios.values()) - 1) > 1e-6:
        raise ValueError(f"split ratios must be non-negative and sum to 1, got {ratios}")
    records = list(records)
    links = _UnionFind()
    for record in records:
        first, *others = identities_of(record)
        links.find(first)
        for other in others:
            links.union(first, other)
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        groups[links.find(record["identity"])].append(record)

    def order(root: str) -> str:
        return hashlib.sha256(f"{seed}\x1f{root}".encode()).hexdigest()

    splits: dict[str, list[dict]] = {name: [] for name in ratios}
    total = len(records)
    for root in sorted(groups, key=order):
        name = max(ratios, key=lambda s: (ratios[s] * total - len(splits[s]), ratios[s]))
        splits[name].extend(groups[root])

    identities = {name: sorted({i for r in rs for i in identities_of(r)}) for name, rs in splits.items()}
    check_disjoint(identities)
    split_file = {
        "seed": seed,
        "ratios": ratios,
        "counts": {name: len(rs) for name, rs in splits.items()},
        "identities": identities,
    }
    return splits, split_file


def check_disjoint(identities: dict[str, list[str]]) -> None:
    """Raise if any identity appears in two splits."""
    seen: dict[str, str] = {}
    for name, ids in identities.items():
        for identity in ids:
            if identity in seen and seen[identity] != name:
                raise ValueError(f"identity {identity!r} is in both {seen[identity]!r} and {name!r}")
            seen[identity] = name
