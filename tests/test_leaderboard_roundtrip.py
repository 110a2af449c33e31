"""The round trip on a real evaluation: `dfa-bench eval` (tiny random LLaVA through lmms-eval) -> submit -> render.

One eval per module (~30 s): a 3-record bench answered in full. The rejection cases are repeated on
copies of that real output, so the checks are known to hold on lmms-eval's own files.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import transformers
import typer
from PIL import Image
from typer.testing import CliRunner

from dfa_bench.bench import build_bench, read_bench
from dfa_bench.environment import weights_sha256
from dfa_bench.instruct.synthetic import make_source
from dfa_bench.leaderboard.cli import app, submit_command
from dfa_bench.leaderboard.files import SubmissionRejected
from dfa_bench.leaderboard.submit import submit
from dfa_bench.scoring import read_predictions, score_predictions
from dfa_bench.tiny_models import build_tiny_llava

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def real_run(tmp_path_factory) -> tuple[Path, Path]:
    """(bench, eval output) of a complete `run_eval` on a 3-record bench."""
    from dfa_bench.evaluate import run_eval

    root = tmp_path_factory.mktemp("lb-roundtrip")
    make_source(root / "src", 3, seed=2)
    build_bench(root / "src" / "records.jsonl", root / "src", root / "bench", seed=0, name="lb-test", version="1")
    model = build_tiny_llava(root / "tiny-llava")
    with pytest.MonkeyPatch.context() as mp:  # offline, and DFA_BENCH_DIR (set by run_eval) restored after
        for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.setenv(name, "1")
        mp.delenv("DFA_BENCH_DIR", raising=False)
        run_eval(
            model="llava_hf",
            bench_dir=root / "bench",
            output=root / "eval",
            model_args=f"pretrained={model},device_map=cpu,device=cpu,dtype=float32",
        )
    return root / "bench", root / "eval"


def _cli() -> typer.Typer:
    root = typer.Typer()
    root.add_typer(app, name="leaderboard")
    root.command("submit")(submit_command)
    return root


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(_cli(), list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_output_submit_render(real_run, tmp_path):
    bench_dir, output = real_run
    assert list(output.glob("lmms_eval/*/*_samples_dfa_bench_dfd.jsonl")), "not an lmms-eval output"
    board = tmp_path / "board"
    _invoke("leaderboard", "init", "--bench", str(bench_dir), "--leaderboard", str(board))
    out = _invoke("submit", str(output), "--leaderboard", str(board), "--model-name", "tiny-llava", "--params", "5M")
    assert "accepted 'tiny-llava' (general MLLM)" in out

    entry = json.loads((board / "entries" / "tiny-llava.json").read_text())
    bench = read_bench(bench_dir)
    predictions, _ = read_predictions(output / "predictions.jsonl")
    expected, _, _ = score_predictions(bench, predictions, seed=0)
    assert entry["metrics"] == expected == json.loads((output / "metrics.json").read_text())
    assert {t: entry["metrics"][t]["n"] for t in ("dfd", "dfc", "ad")} == {"dfd": 3, "dfc": 3, "ad": 2}
    assert entry["source"]["samples"] == "lmms-eval samples" and entry["adapter"] == "llava_hf"
    assert entry["bench"]["manifest_sha256"] == bench.manifest_sha256 and entry["params"] == 5_000_000
    assert entry["date"] and entry["versions"]["lmms_eval"]
    # what the run was made with, from run.json: versions, and the weights that answered by sha256
    run = json.loads((output / "run.json").read_text())
    assert run["versions"]["torch"] == torch.__version__.split("+")[0] and run["versions"]["lmms-eval"] == "0.7.3"
    assert entry["versions"]["transformers"] == transformers.__version__
    weights = entry["model_identity"]["pretrained"]["weights_sha256"]
    assert weights == weights_sha256(Path(run["model_identity"]["pretrained"]["path"]))

    md = _invoke("leaderboard", "render", "--leaderboard", str(board), "--format", "md")
    row = next(line for line in md.splitlines() if line.startswith("| tiny-llava"))
    acc = f"{100 * expected['dfd']['acc']:.2f}"
    assert f"| {acc}" in row and "measured" in row and "[" in row  # value with its CI
    assert "| DFA-GPT" in md and "reported [1]" in md  # the paper's rows beside it
    assert f"tiny-llava: dfa-bench {run['versions']['dfa-bench']}, lmms-eval 0.7.3" in md
    assert f"pretrained: weights sha256 {weights[:12]}" in md
    for fmt in ("latex", "html", "csv"):
        path = tmp_path / f"board.{fmt}"
        _invoke("leaderboard", "render", "--leaderboard", str(board), "--format", fmt, "--output", str(path))
        assert "tiny-llava" in path.read_text()
    chart = tmp_path / "board.png"
    _invoke("leaderboard", "render", "--leaderboard", str(board), "--format", "csv", "--chart", str(chart))
    with Image.open(chart) as image:
        assert image.format == "PNG" and image.width > 400
    tables = _invoke("leaderboard", "paper-tables", "--leaderboard", str(board))
    assert "| tiny-llava (measured)" in tables and "| GPT-4V" in tables


def _tamper_json(rel_glob: str, edit):
    def apply(output: Path) -> None:
        (path,) = output.glob(rel_glob)
        obj = json.loads(path.read_text())
        edit(obj)
        path.write_text(json.dumps(obj))

    return apply


def _tamper_lines(rel_glob: str, edit):
    def apply(output: Path) -> None:
        (path,) = output.glob(rel_glob)
        path.write_text("".join(edit(path.read_text().splitlines(keepends=True))))

    return apply


def _symlink_outside(output: Path) -> None:
    (path,) = output.glob("lmms_eval/*/*_samples_dfa_bench_dfc.jsonl")
    outside = output.parent / f"outside-{output.name}.jsonl"
    path.rename(outside)
    path.symlink_to(outside)


CASES = {
    "metrics.json": (_tamper_json("metrics.json", lambda m: m["dfc"].update(acc=1.0)), r"metrics.json: dfc.acc"),
    "lmms-eval results": (
        _tamper_json(
            "lmms_eval/*/*_results.json", lambda r: r["results"]["dfa_bench_ad"].update({"rouge_l,none": 0.5})
        ),
        r"_results.json: results.dfa_bench_ad.rouge_l,none: reported 0.5",
    ),
    "manifest hash": (
        _tamper_json("run.json", lambda r: r.update(bench_manifest_sha256="f" * 64)),
        "run.json: bench manifest sha256 f{64} differs",
    ),
    "missing sample": (
        _tamper_lines("lmms_eval/*/*_samples_dfa_bench_dfd.jsonl", lambda ls: ls[1:]),
        "samples missing",
    ),
    "duplicated sample": (
        _tamper_lines("lmms_eval/*/*_samples_dfa_bench_dfc.jsonl", lambda ls: [*ls, ls[0]]),
        r"_samples_dfa_bench_dfc.jsonl:4: duplicated sample",
    ),
    "malformed line": (
        _tamper_lines("lmms_eval/*/*_samples_dfa_bench_ad.jsonl", lambda ls: [ls[0], ls[1][:40] + "\n"]),
        r"_samples_dfa_bench_ad.jsonl:2: malformed JSON",
    ),
    "symlink outside": (_symlink_outside, "outside the submission"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampered_real_output_is_rejected(real_run, tmp_path, case):
    bench_dir, output = real_run
    from dfa_bench.leaderboard.entries import init_leaderboard

    board = tmp_path / "board"
    init_leaderboard(board, bench_dir)
    copy = tmp_path / "copy"
    shutil.copytree(output, copy)
    tamper, match = CASES[case]
    tamper(copy)
    with pytest.raises(SubmissionRejected, match=match):
        submit(copy, board)
    assert not list((board / "entries").iterdir())


def test_oversized_real_output_is_rejected(real_run, tmp_path):
    bench_dir, output = real_run
    from dfa_bench.leaderboard.entries import init_leaderboard

    init_leaderboard(tmp_path / "board", bench_dir)
    with pytest.raises(SubmissionRejected, match="exceeds the 512-byte limit"):
        submit(output, tmp_path / "board", max_file_bytes=512)
