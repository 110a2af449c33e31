"""The bad-input corpus, part 1 (score, bench validate, eval): every fault a user can feed the CLI gets a
one-line error naming the file, line or item, the documented exit code (2: bad input, 1: a run that
failed), no traceback, and no output left behind (tests/bad_input.py runs each case; part 2 is
tests/test_bad_input_commands.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from bad_input import Case, check_case
from leaderboard_fixtures import make_eval_output
from thirdparty_adapter import register
from typer.testing import CliRunner

from dfa_bench.bench import read_bench
from dfa_bench.cli import app
from dfa_bench.io import sha256_file
from dfa_bench.lmms_task import BENCH_ENV

HUGE = "1" * 5000  # Python refuses to convert integers of more than 4300 digits


def predictions(tmp: Path, raw: bytes) -> Path:
    path = tmp / "predictions.jsonl"
    path.write_bytes(raw)
    return path


def score_args(tmp: Path, bench: Path, preds: Path) -> list[str]:
    out = tmp / "out"
    return ["score", "--bench", str(bench), "--predictions", str(preds), "--output", f"{out}/m.json",
            "--details", f"{out}/d.jsonl"]  # fmt: skip


def line(qid: str = "syn000000:dfd", **fields) -> bytes:
    return json.dumps({"question_id": qid, "response": "Yes", **fields}).encode() + b"\n"


def score_with(tmp: Path, bench: Path, *extra: str) -> list[str]:
    """`score` of a one-line predictions file with these output options."""
    return ["score", "--bench", str(bench), "--predictions", str(predictions(tmp, line())), *extra]


def edit_manifest(bench: Path, edit: Callable[[dict], object]) -> None:
    manifest = json.loads((bench / "manifest.json").read_text())
    edit(manifest)
    (bench / "manifest.json").write_text(json.dumps(manifest))


def edit_questions(bench: Path, edit: Callable[[list[str]], list[str]]) -> None:
    """Edit questions.jsonl's lines and record the new sha256 in the manifest: only the content is wrong."""
    path = bench / "questions.jsonl"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")
    edit_manifest(bench, lambda m: m["files"].__setitem__("questions.jsonl", sha256_file(path)))


def first_item(**fields) -> Callable[[list[str]], list[str]]:
    return lambda lines: [json.dumps({**json.loads(lines[0]), **fields}), *lines[1:]]


def validate(bench: Path) -> list[str]:
    return ["bench", "validate", str(bench)]


def with_bench_edit(edit: Callable[[Path], object], argv=validate) -> Callable[[Path, Path], list[str]]:
    return lambda t, b: (edit(b), argv(b))[1]


def score_one_line(raw: bytes) -> Callable[[Path, Path], list[str]]:
    return lambda t, b: score_args(t, b, predictions(t, raw))


def huge_manifest(tmp: Path, bench: Path) -> list[str]:
    manifest = bench / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"version"', f'"big": {HUGE}, "version"', 1))
    return score_args(tmp, bench, predictions(tmp, line()))


def truncated_image(tmp: Path, bench: Path) -> list[str]:
    """A PNG cut short whose manifest hash was updated to match: only decoding finds it."""
    item = read_bench(bench).items[0]
    image = bench / item["image"]
    image.write_bytes(image.read_bytes()[: image.stat().st_size // 2])
    manifest = json.loads((bench / "manifest.json").read_text())
    manifest["files"][item["image"]] = sha256_file(image)
    (bench / "manifest.json").write_text(json.dumps(manifest))
    return ["bench", "validate", str(bench)]


def sparse_predictions(tmp: Path, bench: Path) -> list[str]:
    path = predictions(tmp, line())
    with open(path, "r+b") as handle:
        handle.truncate(2**30)  # sparse: no disk used, but read line by line it would take a minute and GBs
    return score_args(tmp, bench, path)


def fifo_predictions(tmp: Path, bench: Path) -> list[str]:
    os.mkfifo(tmp / "fifo.jsonl")  # reading it would block for ever
    return score_args(tmp, bench, tmp / "fifo.jsonl")


def image_outside(how: str) -> Callable[[Path, Path], list[str]]:
    """The first question's image moved out of the bench and reached by an absolute path, a `../` path, or a
    symlink inside the bench; the manifest lists it with its right hash."""

    def argv(tmp: Path, bench: Path) -> list[str]:
        item = read_bench(bench).items[0]
        outside = tmp / "elsewhere.png"
        outside.write_bytes((bench / item["image"]).read_bytes())
        if how == "symlink":
            (bench / item["image"]).unlink()
            (bench / item["image"]).symlink_to(outside)
            return ["bench", "validate", str(bench)]
        new = str(outside) if how == "absolute" else os.path.relpath(outside, bench)
        manifest = json.loads((bench / "manifest.json").read_text())
        manifest["files"][new] = manifest["files"].pop(item["image"])
        questions = (bench / "questions.jsonl").read_text().replace(json.dumps(item["image"]), json.dumps(new))
        (bench / "questions.jsonl").write_text(questions)
        manifest["files"]["questions.jsonl"] = sha256_file(bench / "questions.jsonl")
        (bench / "manifest.json").write_text(json.dumps(manifest))
        return ["bench", "validate", str(bench)] if how == "absolute" else eval_args(tmp, bench, model=register())

    return argv


def first_image(bench: Path) -> str:
    return str(bench / read_bench(bench).items[0]["image"])


def submission_with_huge_integer(tmp: Path, bench: Path) -> list[str]:
    run = make_eval_output(read_bench(bench), tmp / "run")
    run_json = run / "run.json"
    run_json.write_text(run_json.read_text().replace('"seed": 0', f'"seed": {HUGE}', 1))
    board = tmp / "board"
    assert (
        CliRunner().invoke(app, ["leaderboard", "init", "--bench", str(bench), "--leaderboard", str(board)]).exit_code
        == 0
    )
    return ["submit", str(run), "--leaderboard", str(board), "--model-name", "m", "--group", "general MLLM"]


def eval_args(tmp: Path, bench: Path, *extra: str, model: str = "dfa_llava") -> list[str]:
    return ["eval", "--model", model, "--bench", str(bench), "--output", str(tmp / "out"), *extra]


def existing_file(tmp: Path, bench: Path) -> list[str]:
    (tmp / "out").write_text("keep me")
    return eval_args(tmp, bench)


CASES = {
    # score: predictions and bench files
    "predictions not UTF-8": Case(
        lambda t, b: score_args(t, b, predictions(t, line() + b'{"question_id": "\xff\xfe"}\n')),
        lambda t, b: f"{t}/predictions.jsonl:2: not UTF-8",
    ),
    "predictions with a 5000-digit integer": Case(
        lambda t, b: score_args(
            t, b, predictions(t, line(score=0.5) + line("syn000001:dfd").replace(b"}", f', "score": {HUGE}}}'.encode()))
        ),
        lambda t, b: f"{t}/predictions.jsonl:2: unreadable JSON",
    ),
    "bench manifest with a 5000-digit integer": Case(huge_manifest, lambda t, b: f"{b}/manifest.json: unreadable JSON"),
    "predictions path is a directory": Case(
        lambda t, b: score_args(t, b, Path(t)), lambda t, b: f"{t}: is a directory"
    ),
    "DF-D score above 1": Case(
        lambda t, b: score_args(t, b, predictions(t, line(score=1.5))),
        lambda t, b: f"{t}/predictions.jsonl:1: field 'score': a forgery probability lies in [0, 1]",
    ),
    "DF-D score below 0": Case(
        lambda t, b: score_args(t, b, predictions(t, line(score=-0.1))),
        lambda t, b: f"{t}/predictions.jsonl:1: field 'score'",
    ),
    "malformed predictions line": Case(
        lambda t, b: score_args(t, b, predictions(t, line() + b"{not json\n")),
        lambda t, b: f"{t}/predictions.jsonl:2: malformed JSON",
    ),
    "prediction without question_id": Case(
        lambda t, b: score_args(t, b, predictions(t, b'{"response": "Yes"}\n')),
        lambda t, b: f"{t}/predictions.jsonl:1: field 'question_id'",
    ),
    "predictions file missing": Case(
        lambda t, b: score_args(t, b, t / "nope.jsonl"), lambda t, b: f"{t}/nope.jsonl: file not found"
    ),
    "bench missing": Case(
        lambda t, b: score_args(t, t / "no-bench", predictions(t, line())),
        lambda t, b: f"{t}/no-bench/manifest.json: bench manifest not found",
    ),
    "empty predictions file": Case(
        lambda t, b: score_args(t, b, predictions(t, b"")), lambda t, b: "holds no predictions", code=1
    ),
    "predictions of blank lines": Case(
        lambda t, b: score_args(t, b, predictions(t, b"\n  \n\t\n")), lambda t, b: "holds no predictions", code=1
    ),
    "predictions for another bench": Case(
        lambda t, b: score_args(t, b, predictions(t, line("other0001:dfd") + line("other0002:dfc"))),
        lambda t, b: f"{t}/predictions.jsonl: none of its 2 question ids is an item of {b}",
        code=1,
    ),
    "score --output is a directory": Case(
        lambda t, b: score_with(t, b, "--output", str(t)), lambda t, b: f"{t}: --output is a directory"
    ),
    "score --output is the predictions file": Case(
        lambda t, b: score_with(t, b, "--output", str(t / "predictions.jsonl")),
        lambda t, b: "--output is also --predictions",
    ),
    "score --details is the predictions file": Case(
        lambda t, b: score_with(t, b, "--details", f"{t}/../work/predictions.jsonl"),
        lambda t, b: "--details is also --predictions",
    ),
    # the bench's own files (score and bench validate read them the same way)
    "bench manifest malformed": Case(
        lambda t, b: ((b / "manifest.json").write_text("{"), score_args(t, b, predictions(t, line())))[1],
        lambda t, b: f"{b}/manifest.json: malformed JSON",
    ),
    "bench manifest without files": Case(
        with_bench_edit(lambda b: edit_manifest(b, lambda m: m.pop("files"))),
        lambda t, b: f"{b}/manifest.json: field 'files'",
    ),
    "bench questions line malformed": Case(
        with_bench_edit(lambda b: edit_questions(b, lambda lines: [*lines[:3], "{oops", *lines[3:]])),
        lambda t, b: f"{b}/questions.jsonl:4: malformed JSON",
    ),
    "bench item of an unknown task": Case(
        with_bench_edit(lambda b: edit_questions(b, first_item(task="xyz"))),
        lambda t, b: f"{b}/questions.jsonl:1: field 'task': unknown task 'xyz'",
    ),
    "bench item of an unknown label": Case(
        with_bench_edit(lambda b: edit_questions(b, first_item(label="maybe"))),
        lambda t, b: f"{b}/questions.jsonl:1: field 'label': unknown label 'maybe'",
    ),
    "bench item of an unknown category": Case(
        with_bench_edit(lambda b: edit_questions(b, first_item(category="XX"))),
        lambda t, b: f"{b}/questions.jsonl:1: field 'category': unknown category 'XX'",
    ),
    "bench question_id twice": Case(
        with_bench_edit(lambda b: edit_questions(b, lambda lines: [*lines, lines[0]])),
        lambda t, b: "duplicate question_id 'syn000000:dfd' (first on line 1)",
    ),
    "bench questions edited, hash not updated": Case(
        with_bench_edit(lambda b: (b / "questions.jsonl").write_text((b / "questions.jsonl").read_text() + "\n")),
        lambda t, b: f"{b}/questions.jsonl: sha256 mismatch",
    ),
    "bench image missing": Case(
        with_bench_edit(lambda b: Path(first_image(b)).unlink()),
        lambda t, b: f"{b}/images/syn000000.png: file listed in the manifest is missing",
    ),
    "bench image edited, hash not updated": Case(
        with_bench_edit(lambda b: Path(first_image(b)).write_bytes(Path(first_image(b)).read_bytes() + b"x")),
        lambda t, b: f"{b}/images/syn000000.png: sha256 mismatch",
    ),
    # score: one bad predictions line
    "response a number": Case(
        score_one_line(line(response=3)),
        lambda t, b: f"{t}/predictions.jsonl:1: field 'response': expected a string or null, got 3",
    ),
    "prediction a JSON array": Case(
        score_one_line(b'["syn000000:dfd", "Yes"]\n'), lambda t, b: f"{t}/predictions.jsonl:1: expected a JSON object"
    ),
    "question_id a number": Case(
        score_one_line(b'{"question_id": 5, "response": "Yes"}\n'),
        lambda t, b: "field 'question_id': expected a non-empty string, got 5",
    ),
    "DF-D score a string": Case(
        score_one_line(line(score="0.5")), lambda t, b: "field 'score': expected a finite number or null, got '0.5'"
    ),
    "DF-D score NaN": Case(
        score_one_line(line().replace(b"}", b', "score": NaN}')),
        lambda t, b: "field 'score': expected a finite number or null, got nan",
    ),
    "DF-D score true": Case(
        score_one_line(line(score=True)), lambda t, b: "field 'score': expected a finite number or null, got True"
    ),
    "predictions with a byte-order mark": Case(
        score_one_line(b"\xef\xbb\xbf" + line()),
        lambda t, b: f"{t}/predictions.jsonl:1: malformed JSON: Unexpected UTF-8 BOM",
    ),
    "score --details is a directory": Case(
        lambda t, b: score_with(t, b, "--details", str(t)), lambda t, b: f"{t}: --details is a directory"
    ),
    "predictions file of 1 GiB (sparse)": Case(sparse_predictions, lambda t, b: "1024 MiB is more than predictions"),
    "predictions file is a FIFO": Case(fifo_predictions, lambda t, b: "not a regular file"),
    # bench validate, eval: every image inside the bench
    "bench image at an absolute path": Case(image_outside("absolute"), lambda t, b: "is outside the bench"),
    "bench image at a ../ path (eval)": Case(image_outside("relative"), lambda t, b: "is outside the bench"),
    "bench image a symlink to a file outside": Case(image_outside("symlink"), lambda t, b: "outside the bench"),
    # bench validate
    "truncated PNG with an updated hash": Case(truncated_image, lambda t, b: first_image(b)),
    # eval: the command line, refused before anything loads
    "eval --output is an existing file": Case(existing_file, lambda t, b: f"{t}/out: --output must be a directory"),
    "eval unknown model": Case(
        lambda t, b: eval_args(t, b, model="dfa_lava"), lambda t, b: "unknown model 'dfa_lava'; did you mean dfa_llava"
    ),
    "eval model arg without =": Case(
        lambda t, b: eval_args(t, b, "--model-args", "pretrained=x,device"),
        lambda t, b: "model argument 'device' is not name=value",
    ),
    "eval --limit 0": Case(lambda t, b: eval_args(t, b, "--limit", "0"), lambda t, b: "--limit counts items per task"),
    "eval --batch-size 0": Case(
        lambda t, b: eval_args(t, b, "--batch-size", "0"), lambda t, b: "--batch-size must be at least 1"
    ),
    "eval --max-failures nonsense": Case(
        lambda t, b: eval_args(t, b, "--max-failures", "lots"), lambda t, b: "field 'max-failures'"
    ),
    "eval model arg given twice": Case(
        lambda t, b: eval_args(t, b, "--model-args", "pretrained=x,threshold=0.0,threshold=1.0"),
        lambda t, b: "model argument 'threshold' is given twice",
    ),
    "eval --max-failures below 0": Case(
        lambda t, b: eval_args(t, b, "--max-failures", "-1"), lambda t, b: "field 'max-failures'"
    ),
    "eval bench missing": Case(
        lambda t, b: eval_args(t, t / "no-bench"), lambda t, b: f"{t}/no-bench/manifest.json: bench manifest not found"
    ),
    # submit
    # submit: a rejected submission exits 1, like a failed run (leaderboard/README.md)
    "submission with a 5000-digit integer": Case(
        submission_with_huge_integer, lambda t, b: "run.json: malformed JSON: Exceeds the limit", code=1
    ),
    # a run that fails: exit 1, the count and the first errors
    "eval of a truncated PNG with an updated hash": Case(
        lambda t, b: (truncated_image(t, b), eval_args(t, b, "--limit", "2", model=register()))[1],
        lambda t, b: "2 of 6 items failed, more than --max-failures 0 allows",
        code=1,
        keep=("out",),
    ),
    "eval where every item fails": Case(
        lambda t, b: eval_args(t, b, "--model-args", "fail=all", "--limit", "2", model=register()),
        lambda t, b: "6 of 6 items failed, more than --max-failures 0 allows",
        code=1,
        keep=("out",),  # run.json (why it failed), responses.jsonl (resumable), lmms-eval logs; no metrics
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_gets_a_clear_error(name, bench_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(BENCH_ENV, "")
    check_case(CASES[name], bench_dir, tmp_path)


def test_null_and_empty_responses_are_counted_and_warned(bench_dir, tmp_path):
    preds = predictions(tmp_path, line() + line("syn000001:dfd", response=None) + line("syn000002:dfd", response=" "))
    result = CliRunner().invoke(app, ["score", "--bench", str(bench_dir), "--predictions", str(preds)])
    assert result.exit_code == 0
    assert f"{preds}: 2 responses are null or empty (lines 2, 3)" in result.stderr
    assert "bench items have no prediction" in result.stderr  # missing ones, counted too
