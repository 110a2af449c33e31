from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from dfa_bench.cli import app
from dfa_bench.evaluate import tasks_path


def test_namespaced_packages_and_no_top_level_names(tmp_path):
    for name in ("dfa_bench.adapters", "dfa_bench.leaderboard", "dfa_bench.tasks", "dfa_gpt"):
        assert importlib.util.find_spec(name) is not None, name
    # Ask a fresh interpreter outside the repo (so the working directory cannot supply the names):
    # the installation must not expose our adapters/, leaderboard/ or tasks/ as top-level packages.
    repo = Path(__file__).resolve().parents[1]
    code = (
        "import importlib.util, json\n"
        "out = {}\n"
        "for n in ('adapters', 'leaderboard', 'tasks'):\n"
        "    s = importlib.util.find_spec(n)\n"
        "    out[n] = [s.origin, *(s.submodule_search_locations or [])] if s else []\n"
        "print(json.dumps(out))"
    )
    found = json.loads(subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, capture_output=True,
                                      text=True).stdout)  # fmt: skip
    for name, locations in found.items():
        assert not any(loc and repo in Path(loc).resolve().parents for loc in locations), (name, locations)


def test_tasks_path_holds_the_task_yamls():
    result = CliRunner().invoke(app, ["tasks-path"])
    assert result.exit_code == 0
    path = tasks_path()
    assert result.output.strip() == str(path)
    names = {p.name for p in path.iterdir()}
    assert {"dfa_bench.yaml", "dfa_bench_dfd.yaml", "dfa_bench_dfc.yaml", "dfa_bench_ad.yaml"} <= names
    for yaml_file in path.glob("*.yaml"):
        assert "<image>" not in yaml_file.read_text()


def test_core_imports_neither_torch_nor_lmms_eval():
    code = ("import sys, dfa_bench.scoring, dfa_bench.lmms_task, dfa_bench.cli, dfa_bench.bench, dfa_bench.metrics, "
            "dfa_bench.evaluate, dfa_bench.imaging, dfa_bench.responses; "
            # DFA-Instruct imports its heavy libraries where they are used, not on import
            "import dfa_bench.instruct.pipeline, dfa_bench.instruct.mini, dfa_bench.instruct.faces, "
            "dfa_bench.instruct.forge, dfa_bench.instruct.stats, dfa_bench.instruct.llava_json; "
            "bad = [m for m in ('torch', 'lmms_eval', 'transformers', 'cv2') if m in sys.modules]; "
            "assert not bad, bad")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)


def test_secret_model_args_are_masked_in_recorded_commands():
    from dfa_bench.evaluate import lmms_eval_argv, redact_model_args

    assert redact_model_args("pretrained=x,api_key=sk-123,HF_TOKEN=abc") == "pretrained=x,api_key=***,HF_TOKEN=***"
    # by the name's words, not a substring: these values are needed to reproduce a run
    kept = "max_new_tokens=64,tokenizer=t,max_tokens=8,keep=1"
    assert redact_model_args(kept) == kept
    assert redact_model_args("base_url=https://u:p@h/v1,x=1") == "base_url=https://***@h/v1,x=1"
    argv = lmms_eval_argv("m", "api_key=sk-123", "dfa_bench", tasks_path(), limit=None, batch_size=1, seed=0)
    assert "sk-123" not in " ".join(argv)


def test_bench_build_and_validate_commands(synthetic_source, tmp_path):
    runner = CliRunner()
    out = tmp_path / "bench"
    args = ["bench", "build", "--records", str(synthetic_source / "records.jsonl"), "--images", str(synthetic_source),
            "--seed", "3", "--output", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["bench", "validate", str(out)]).exit_code == 0
    (out / "images" / "syn000001.png").unlink()
    result = runner.invoke(app, ["bench", "validate", str(out)])
    assert result.exit_code == 2 and "syn000001.png" in result.output
    bad = tmp_path / "records.jsonl"
    bad.write_text((synthetic_source / "records.jsonl").read_text().replace('"label": "forgery"', '"label": "fake"', 1))
    result = runner.invoke(app, ["bench", "build", "--records", str(bad), "--images", str(synthetic_source),
                                 "--output", str(tmp_path / "b2")])  # fmt: skip
    assert result.exit_code == 2 and "records.jsonl:2: field 'label'" in result.output


def test_every_core_subpackage_is_listed_for_the_wheel():
    import tomllib
    from pathlib import Path

    root = Path(__file__).parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(root).parts) for p in (root / "dfa_bench").rglob("__init__.py")}
    assert on_disk <= listed
