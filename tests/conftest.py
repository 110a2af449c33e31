from __future__ import annotations

from pathlib import Path

import pytest

from dfa_bench.bench import build_bench
from dfa_bench.instruct.synthetic import make_source


@pytest.fixture(scope="session")
def synthetic_source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("source")
    make_source(root, 30, seed=1)
    return root


@pytest.fixture
def bench_dir(synthetic_source: Path, tmp_path: Path) -> Path:
    """A fresh, writable 30-record bench per test (tests may tamper with it)."""
    build_bench(synthetic_source / "records.jsonl", synthetic_source, tmp_path / "bench", seed=7, name="test-bench")
    return tmp_path / "bench"
