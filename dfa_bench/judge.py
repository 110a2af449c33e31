"""An optional judge of AD answers: any OpenAI-compatible chat model (GPT-4o, or an open judge served by vLLM)
grades each answer of a finished run against its reference and image with the fixed rubric in
dfa_bench/data/judge_rubric.json, through the OpenAI plumbing the annotator shares (client retries, the answer
cache, a bounded thread pool with per-item errors).

    RUN/judge/<judge>.json    the judge's identity (model, redacted base URL, rubric sha256, settings), the mean
                              score in [0, 1] ((grade - 1) / 4) with its 95% CI, Spearman's rank correlation with
                              ROUGE-L and region F1 on the same items, usage, and the items that failed
    RUN/judge/<judge>.jsonl   one line per judged item: question_id, grade, the judge's reply
    RUN/judge/cache/          the judge's answers (a re-run asks only what is missing)

Never run by `make demo` or the tests against a real endpoint: tests use tests/fake_openai.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np

from dfa_bench.bench import Bench
from dfa_bench.evaluate import redact_url_credentials
from dfa_bench.io import read_json, write_json, write_jsonl
from dfa_bench.metrics import bootstrap_ci
from dfa_bench.openai_api import OpenAIJob, data_url, json_digest
from dfa_bench.rundir import read_run
from dfa_bench.schema import ValidationError

JUDGE_DIR = "judge"
SETTINGS = {"temperature": 0}
DEFAULTS = {"api_key_env": "OPENAI_API_KEY", "base_url": None, "concurrency": "4", "max_retries": "5",
            "timeout": "60", "max_tokens": "300", "detail": "low"}  # fmt: skip
_GRADE = re.compile(r"score\s*[:=]\s*\**\s*([1-5])\b", re.IGNORECASE)


@cache
def rubric_bytes() -> bytes:
    return resources.files("dfa_bench").joinpath("data/judge_rubric.json").read_bytes()


def rubric() -> dict:
    return json.loads(rubric_bytes())


def rubric_sha256() -> str:
    return hashlib.sha256(rubric_bytes()).hexdigest()


def parse_grade(reply: str) -> int | None:
    """The grade of the reply's last 'Score: N' line (N in 1..5), or None."""
    found = _GRADE.findall(reply or "")
    return int(found[-1]) if found else None


class ADJudge(OpenAIJob):
    """Grades (reference, answer, image) triples with the rubric; the key comes from the environment only."""

    def __init__(self, cache_dir: Path | str, *, model: str, args: dict[str, str]) -> None:
        unknown = sorted(set(args) - set(DEFAULTS))
        if unknown:
            raise ValidationError(f"unknown judge argument(s) {unknown}; known: {sorted(DEFAULTS)}", field="judge-args")
        given = {**DEFAULTS, **args}
        try:
            numbers = {k: int(given[k]) for k in ("concurrency", "max_retries", "max_tokens")}
            timeout = float(given["timeout"])
        except ValueError as exc:
            raise ValidationError(f"expected a number: {exc}", field="judge-args") from None
        if given["detail"] not in ("low", "high", "auto"):
            raise ValidationError(f"detail must be low, high or auto, got {given['detail']!r}", field="judge-args")
        super().__init__(cache_dir, model=model, base_url=given["base_url"] or None, api_key_env=given["api_key_env"],
                         concurrency=numbers["concurrency"], max_retries=numbers["max_retries"], timeout=timeout,
                         max_tokens=numbers["max_tokens"], prices=None)  # fmt: skip
        self.detail = given["detail"]

    def identity(self) -> dict:
        """What the judge is, for the result and the leaderboard: never the key, never URL credentials."""
        return {
            "model": self.model,
            "base_url": redact_url_credentials(self.base_url) if self.base_url else None,
            "rubric_version": rubric()["version"],
            "rubric_sha256": rubric_sha256(),
            "settings": {**SETTINGS, "max_tokens": self.max_tokens, "detail": self.detail},
        }

    def request_body(self, reference: str, answer: str, image: Path) -> dict:
        text = rubric()["user"].format(reference=reference, answer=answer or "(no answer)")
        mime = "image/png" if image.suffix.lower() == ".png" else "image/jpeg"
        content = [{"type": "text", "text": text},
                   {"type": "image_url", "image_url": {"url": data_url(image.read_bytes(), mime), "detail": self.detail}}]  # fmt: skip
        return {"model": self.model, "max_tokens": self.max_tokens, **SETTINGS,
                "messages": [{"role": "system", "content": rubric()["system"]}, {"role": "user", "content": content}]}  # fmt: skip

    def cache_key(self, reference: str, answer: str, image_sha256: str) -> str:
        return json_digest([self.model, rubric_sha256(), self.max_tokens, self.detail, reference, answer, image_sha256])

    def grade(self, triples: list[tuple[str, str, str, Path, str]]) -> tuple[dict[str, str], dict[str, str]]:
        """({question_id: reply}, {question_id: failure}) for (question_id, reference, answer, image, image
        sha256) triples; cached replies are not asked again."""
        replies: dict[str, str] = {}
        todo = []
        for qid, reference, answer, image, digest in triples:
            hit = self._read_cache(self.cache_key(reference, answer, digest))
            if hit is None:
                todo.append((qid, reference, answer, image, digest))
            else:
                replies[qid] = hit
        failures: dict[str, str] = {}
        if not todo:
            return replies, failures
        client = self._client()

        def ask(triple: tuple) -> str:
            _, reference, answer, image, digest = triple
            text = self._chat(client, self.request_body(reference, answer, image))
            self._write_cache(self.cache_key(reference, answer, digest), text)
            return text

        for triple, text, error in self._map(ask, todo):
            if error is None:
                replies[triple[0]] = text
            else:
                failures[triple[0]] = error
        return replies, failures


def _spearman(a: list[float], b: list[float]) -> float | None:
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return None
    return float(spearmanr(a, b).statistic)


def judge_run(run_dir: Path | str, bench: Bench, judge: ADJudge, *, seed: int = 0) -> dict:
    """Grade every AD answer of a finished run; writes RUN/judge/<name>.json and .jsonl and returns the result.
    Items the judge failed on (an API error, a reply without a grade) are listed in it, and left out of the
    score; their graded neighbours are cached, so a re-run asks only for them."""
    run_dir = Path(run_dir)
    info, rows = read_run(run_dir)
    if info["bench_manifest_sha256"] != bench.manifest_sha256:
        raise ValidationError(
            f"the run was made on another bench (manifest sha256 {info['bench_manifest_sha256'][:12]}, this one "
            f"{bench.manifest_sha256[:12]})", path=str(run_dir))  # fmt: skip
    ad_rows = [row for row in rows.values() if row.get("task") == "ad"]
    if not ad_rows:
        raise ValidationError("the run holds no AD answers to judge", path=str(run_dir))
    triples = []
    for row in ad_rows:
        item = bench.by_id.get(row["question_id"])
        if item is None:
            raise ValidationError(f"item {row['question_id']!r} is not in the bench", path=str(run_dir))
        triples.append((item["question_id"], item["answer"], row.get("response") or "", bench.image_path(item),
                        bench.image_sha256(item)))  # fmt: skip
    replies, failures = judge.grade(triples)
    graded = {}
    for qid, reply in replies.items():
        grade = parse_grade(reply)
        if grade is None:
            failures[qid] = "the reply has no 'Score: N' line"
        else:
            graded[qid] = grade
    order = [row["question_id"] for row in ad_rows if row["question_id"] in graded]
    scores = np.array([(graded[q] - 1) / 4 for q in order], dtype=float)
    rouge = [float(rows[q]["rouge_l"]) for q in order]
    with_regions = [q for q in order if rows[q].get("region_f1") is not None]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", judge.model).strip("-.") or "judge"
    result = {
        "judge": judge.identity(),
        "run": {
            "model": info.get("model"),
            "model_args": info.get("model_args"),
            "bench_manifest_sha256": bench.manifest_sha256,
        },  # fmt: skip
        "n": len(ad_rows),
        "n_graded": len(order),
        "score": float(scores.mean()) if scores.size else None,
        "ci95": bootstrap_ci(lambda idx: {"score": scores[idx].mean(axis=-1)}, scores.size, seed=seed).get("score"),
        "grades": {str(g): sum(1 for q in order if graded[q] == g) for g in range(1, 6)},
        "spearman": {
            "rouge_l": _spearman([(graded[q] - 1) / 4 for q in order], rouge),
            "region_f1": _spearman(
                [(graded[q] - 1) / 4 for q in with_regions], [float(rows[q]["region_f1"]) for q in with_regions]
            ),  # fmt: skip
        },
        "usage": dict(judge.usage),
        "failures": dict(sorted(failures.items())),
    }
    folder = run_dir / JUDGE_DIR
    write_jsonl(folder / f"{name}.jsonl", ({"question_id": q, "grade": graded.get(q), "reply": replies.get(q),
                                            "error": failures.get(q)} for q in (r["question_id"] for r in ad_rows)))  # fmt: skip
    write_json(folder / f"{name}.json", result)
    return result


def read_judgements(run_dir: Path | str) -> list[dict]:
    """The judge results a run holds (RUN/judge/*.json), as written by judge_run."""
    folder = Path(run_dir) / JUDGE_DIR
    return [read_json(path) for path in sorted(folder.glob("*.json"))] if folder.is_dir() else []
