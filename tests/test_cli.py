"""The command line is consistent: every option explains itself, -h works everywhere, --version."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from dfa_bench import __version__
from dfa_bench.cli import app


def commands(group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every command and group under `group` (typer vendors its own click: duck-typed)."""
    found = []
    for name, command in group.commands.items():
        found.append((path + (name,), command))
        if hasattr(command, "commands"):
            found += commands(command, path + (name,))
    return found


def is_option(param) -> bool:
    return param.param_type_name == "option"


def help_text(*args: str) -> str:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "400"})
    assert result.exit_code == 0, result.output
    return result.output


ROOT = typer.main.get_command(app)
ALL = commands(ROOT)


def test_every_command_is_found():
    names = {" ".join(path) for path, _ in ALL}
    assert {"eval", "score", "submit", "bench validate", "data build", "leaderboard paper-tables"} <= names


@pytest.mark.parametrize("path,command", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_every_option_has_help_and_minus_h_works(path, command):
    for param in (p for p in command.params if is_option(p)):
        assert (param.help or "").strip(), f"dfa-bench {' '.join(path)} {param.opts[0]} has no help text"
        if "--seed" in param.opts:
            assert param.help.startswith("Seeds "), f"{' '.join(path)} --seed must say what it seeds"
    out = help_text(*path, "-h")
    assert "Usage: " in out
    assert "<list[" not in out  # no raw type names as metavars


def test_version():
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"dfa-bench {__version__}"


def test_eval_help_says_limit_is_per_task_and_how_to_set_max_new_tokens():
    out = help_text("eval", "--help")
    assert "per task" in out and "max_new_tokens=N" in out and "--max-failures" in out


def test_eval_refuses_fewer_than_one_process(tmp_path):
    result = CliRunner().invoke(app, ["eval", "--model", "dfa_llava", "--bench", str(tmp_path), "--output",
                                      str(tmp_path / "out"), "--num-processes", "0"])  # fmt: skip
    assert result.exit_code != 0 and "--num-processes must be at least 1, got 0" in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", ["--per-category", "--train-per-category"])
def test_build_mini_refuses_fewer_than_one_record_per_category(tmp_path, option):
    result = CliRunner().invoke(app, ["data", "build-mini", "--output", str(tmp_path / "mini"), option, "0"],
                                env={"COLUMNS": "400"})  # fmt: skip
    assert result.exit_code == 2 and option in result.output and not (tmp_path / "mini").exists()
