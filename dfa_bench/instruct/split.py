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


class UnionFind:
    """Linked identities (or any hashable, orderable keys); the smallest key of a group is its root."""

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


def check_ratios(ratios: dict[str, float]) -> dict[str, float]:
    if not ratios or any(r < 0 for r in ratios.values()) or abs(sum(ratios.values()) - 1) > 1e-6:
        raise ValueError(f"split ratios must be non-negative and sum to 1, got {ratios}")
    return ratios


def plan_split(
    identity_lists: Iterable[list[str]], ratios: dict[str, float] | None = None, *, seed: int = 0
) -> tuple[dict[str, str], dict]:
    """Assign every identity to a split from one pass over each record's identities.

    Memory grows with the number of identities, not records, so this streams over any source.
    Returns ({identity: split}, split file dict recording which identities went where).
    """
    ratios = check_ratios(dict(ratios or DEFAULT_RATIOS))
    links = UnionFind()
    records_of: dict[str, int] = defaultdict(int)  # per first identity; summed per group below
    for first, *others in identity_lists:
        links.find(first)
        records_of[first] += 1
        for other in others:
            links.union(first, other)
    group_size: dict[str, int] = defaultdict(int)
    for identity, n in records_of.items():
        group_size[links.find(identity)] += n

    def order(root: str) -> str:
        return hashlib.sha256(f"{seed}\x1f{root}".encode()).hexdigest()

    filled = dict.fromkeys(ratios, 0)
    split_of_root: dict[str, str] = {}
    total = sum(group_size.values())
    for root in sorted(group_size, key=order):
        name = max(ratios, key=lambda s: (ratios[s] * total - filled[s], ratios[s]))
        split_of_root[root] = name
        filled[name] += group_size[root]
    split_of = {identity: split_of_root[links.find(identity)] for identity in list(links.parent)}
    identities = {name: sorted(i for i, s in split_of.items() if s == name) for name in ratios}
    check_disjoint(identities)
    split_file = {"seed": seed, "ratios": ratios, "counts": filled, "identities": identities}
    return split_of, split_file


def stratified_split(
    groups: Iterable[tuple[str, str, int]], ratios: dict[str, float], *, seed: int = 0
) -> dict[str, str]:
    """{group: split} for (group, stratum, size) triples: each stratum spread over the splits by `ratios`.

    Groups are the units that must stay together (linked identities). Within a stratum (an image source)
    each group goes to the split furthest below its share of that stratum; ties, and strata too small to
    spread, go to the split furthest below its share overall. Large strata are placed first.
    """
    groups = list(groups)
    stratum_size: dict[str, int] = defaultdict(int)
    for _, stratum, size in groups:
        stratum_size[stratum] += size
    total = sum(stratum_size.values())
    in_stratum: dict[tuple[str, str], int] = defaultdict(int)
    overall: dict[str, int] = defaultdict(int)

    def order(entry: tuple[str, str, int]) -> tuple:
        group, stratum, size = entry
        return -stratum_size[stratum], stratum, -size, hashlib.sha256(f"{seed}\x1f{group}".encode()).hexdigest()

    split_of = {}
    for group, stratum, size in sorted(groups, key=order):
        name = max(ratios, key=lambda s: (ratios[s] * stratum_size[stratum] - in_stratum[stratum, s],
                                          ratios[s] * total - overall[s], ratios[s]))  # fmt: skip
        split_of[group] = name
        in_stratum[stratum, name] += size
        overall[name] += size
    return split_of


def identity_disjoint_split(
    records: Iterable[dict], ratios: dict[str, float] | None = None, *, seed: int = 0
) -> tuple[dict[str, list[dict]], dict]:
    """Split records in memory; returns ({split: records}, split file)."""
    records = list(records)
    split_of, split_file = plan_split((identities_of(r) for r in records), ratios, seed=seed)
    splits: dict[str, list[dict]] = {name: [] for name in split_file["ratios"]}
    for record in records:
        splits[split_of[record["identity"]]].append(record)
    return splits, split_file


def check_disjoint(identities: dict[str, list[str]]) -> None:
    """Raise if any identity appears in two splits."""
    seen: dict[str, str] = {}
    for name, ids in identities.items():
        for identity in ids:
            if identity in seen and seen[identity] != name:
                raise ValueError(f"identity {identity!r} is in both {seen[identity]!r} and {name!r}")
            seen[identity] = name
