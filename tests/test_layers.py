"""Arrows run one way: the CLIs on top; DFA-GPT and the leaderboard; the adapters; the core at the bottom.

The core (dfa_bench/ but its CLI) imports neither the adapters, the leaderboard nor DFA-GPT, and loads
neither torch nor lmms-eval; the adapters import neither the leaderboard nor DFA-GPT's trainer; nothing but
the CLI and the tests reaches the tiny random models. Checked on every import statement, those inside
functions included."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLI = {ROOT / "dfa_bench/cli.py", ROOT / "leaderboard/cli.py", ROOT / "dfa_gpt/cli.py"}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if p not in CLI)


LAYERS = {  # folder: what no module in it (its CLI aside) may import
    "dfa_bench": ("dfa_bench.adapters", "dfa_bench.leaderboard", "dfa_gpt", "dfa_bench.cli", "dfa_bench.tiny_models"),
    "adapters": ("dfa_bench.leaderboard", "dfa_gpt.train", "dfa_bench.cli", "dfa_bench.tiny_models"),
    "leaderboard": ("dfa_gpt", "dfa_bench.cli", "dfa_bench.tiny_models"),
    "dfa_gpt": ("dfa_bench.cli", "dfa_bench.tiny_models"),
}


@pytest.mark.parametrize("folder", list(LAYERS))
def test_no_module_imports_upward(folder):
    exempt = {ROOT / "dfa_bench/tiny_models.py"}  # the test and demo helper itself
    upward = {
        f"{path.relative_to(ROOT)} imports {name}"
        for path in modules(folder)
        if path not in exempt
        for name in imports(path)
        if any(name == banned or name.startswith(banned + ".") for banned in LAYERS[folder])
    }
    assert upward == set()


def test_the_check_sees_an_import_inside_a_function(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from dfa_bench.adapters.base import DFAAdapter\n")
    assert "dfa_bench.adapters.base" in imports(module)


def test_the_core_and_the_adapter_contract_load_neither_torch_nor_lmms_eval():
    core = [p.relative_to(ROOT).with_suffix("") for p in modules("dfa_bench") if p.name != "tiny_models.py"]
    names = sorted(".".join(p.parts) for p in core if p.name not in ("__init__", "cli_errors"))
    assert "dfa_bench.contract" in names and "dfa_bench.instruct.pipeline" in names
    code = f"import sys\nfor m in {names!r}:\n    __import__(m)\nprint(sorted({{'torch', 'lmms_eval'}} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "[]", (names, result.stdout)


def test_the_trainer_and_the_leaderboard_commands_load_no_lmms_eval():
    """They need the adapter contract's error class, not lmms-eval (issue 25: they used to import it for that)."""
    code = (
        "import sys, dfa_bench.leaderboard.cli, dfa_gpt.cli, dfa_gpt.train, dfa_gpt.dev_eval\n"
        "print('lmms_eval' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert result.stdout.strip() == "False"
