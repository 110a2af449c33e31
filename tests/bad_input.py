"""The bad-input corpus's case and its check (tests/test_bad_input.py, tests/test_bad_input_commands.py)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import typer
from typer.testing import CliRunner

from dfa_bench.cli import app as dfa_bench_app


@dataclass
class Case:
    """argv(tmp, bench) -> CLI arguments; `expect` must appear in the error; `code` the exit status."""

    argv: Callable[[Path, Path], list[str]]
    expect: Callable[[Path, Path], str]
    code: int = 2
    keep: tuple[str, ...] = ()  # outputs a failed run keeps on purpose (its record and resumable cache)
    app: typer.Typer = dfa_bench_app  # or dfa-gpt's


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def check_case(case: Case, bench_dir: Path, tmp_path: Path) -> None:
    """The case's command exits with its code and one `error:` line holding `expect`, with no traceback, and
    leaves no file behind beyond `keep` (inputs the case made before the command ran are not counted)."""
    work = tmp_path / "work"
    work.mkdir()
    argv = [str(a) for a in case.argv(work, bench_dir)]
    before = files_under(tmp_path)
    result = CliRunner().invoke(case.app, argv)
    error = result.stderr.strip().splitlines()[-1]  # after any progress bars and log lines of a run
    assert result.exit_code == case.code, (result.exit_code, result.output, result.exception)
    assert "Traceback" not in result.output
    assert all(not ln.startswith("error") for ln in result.stderr.strip().splitlines()[:-1])  # one error line
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert case.expect(work, bench_dir) in error, error
    assert error.startswith("error: "), error
    left = {f for f in files_under(tmp_path) - before if not any(f.startswith(f"work/{k}") for k in case.keep)}
    assert left == set(), left
    assert not list(work.glob("out/**/metrics.json")) and not list(work.glob("out/predictions.jsonl"))
    assert not list(work.glob("out/**/*_results.json"))  # lmms-eval's results of a failed run are removed
