"""The build driver on a generated source: bad inputs reported, resume, outputs, splits, atomic writes."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data

from dfa_bench.bench import read_bench
from dfa_bench.instruct import align, build_dir, pipeline
from dfa_bench.instruct.sources.manifest import read_manifest
from dfa_bench.io import iter_jsonl


def _face(variant: int) -> Image.Image:
    """Distinct images of one real face: crop, scale and tint differ per variant."""
    image = Image.fromarray(data.astronaut())
    offset = 10 * (variant % 4)
    image = image.crop((60 + offset, offset, 400 + offset, 340 + offset)).resize(
        (300 - 10 * variant, 300 - 10 * variant)
    )
    tint = np.asarray(image).astype(int) + np.array([variant * 3, 0, -variant * 2])
    return Image.fromarray(np.clip(tint, 0, 255).astype(np.uint8))


RATIOS = {"train": 0.6, "dev": 0.2, "test": 0.2}
CLEAN_VARIANTS = (0, 1, 2, 3, 4, 5, 6, 8, 9, 10)  # MTCNN sees a second, false face in variant 7


def _write_video(path: Path, frames: int = 21) -> None:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 320, 320, "yuv420p"
        for i in range(frames):
            frame = av.VideoFrame.from_image(_face(i % 3).resize((320, 320)))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("src")
    rows = []
    categories = ["bona_fide", "face_swapping", "face_reenactment", "face_editing", "entire_face_synthesis"]
    for i in range(10):
        # every identity has a bona fide face and a forgery, so any split of them holds both labels
        category = "bona_fide" if i % 2 == 0 else categories[(i // 2) % 4 + 1]
        name = f"face{i}.png"
        _face(CLEAN_VARIANTS[i]).save(root / name)
        label = "bona_fide" if category == "bona_fide" else "forgery"
        rows.append([name, label, category, "" if label == "bona_fide" else "simswap", f"id{i // 2}", "", ""])
    rows[1][5] = "face0.png"  # a face swap with its bona fide source, linking id0's source
    rows[3][6] = "id4"  # links id1 and id4: they must share a split
    Image.fromarray(data.coffee()).save(root / "coffee.png")
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    pair = Image.new("RGB", (600, 300))
    pair.paste(_face(0).resize((300, 300)), (0, 0))
    pair.paste(_face(1).resize((300, 300)).transpose(Image.Transpose.FLIP_LEFT_RIGHT), (300, 0))
    pair.save(root / "pair.png")
    _write_video(root / "clip.mp4")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 definitely not a video")
    rows += [
        ["coffee.png", "bona_fide", "bona_fide", "", "id9", "", ""],
        ["corrupt.png", "bona_fide", "bona_fide", "", "id9", "", ""],
        ["pair.png", "bona_fide", "bona_fide", "", "id9", "", ""],
        ["clip.mp4", "bona_fide", "bona_fide", "", "id8", "", ""],
        ["broken.mp4", "bona_fide", "bona_fide", "", "id7", "", ""],
        ["missing.png", "bona_fide", "bona_fide", "", "id7", "", ""],
    ]
    with open(root / "manifest.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "category", "technique", "identity", "source", "related_identities"])
        writer.writerows(rows)
    return root


class FakeAnnotator(pipeline.Annotator):
    name = "fake"

    def __init__(self, fail: set[str] = frozenset()) -> None:
        self.fail, self.calls = fail, 0

    def describe(self, records, root):
        self.calls += len(records)
        texts = {r["record_id"]: "1. Eyes: a visible blending seam around the eyes." for r in records}
        return {k: v for k, v in texts.items() if k not in self.fail}, {k: "refused" for k in self.fail}


def _jobs(source: Path):
    items, problems = read_manifest(source / "manifest.csv")
    assert len(problems) == 1 and "missing.png" in problems[0]  # the source stage reports it by line
    return list(align.jobs_from_manifest(items))


def _report(out: Path) -> dict[str, str]:
    return {Path(r["item"].split("#")[0]).name: r["reason"] for _, r in iter_jsonl(out / build_dir.REPORT)}


def test_align_reports_bad_inputs_and_resumes(source, tmp_path):
    jobs = _jobs(source)
    out = tmp_path / "build"
    first = align.align_sources(jobs[:4], out, workers=0, every=10)  # an "interrupted" run
    assert first == {"skipped": 0, "records": 4, "reported": 0}
    counts = align.align_sources(jobs, out, workers=0, every=10)
    assert counts["skipped"] == 4  # finished jobs are not redone
    assert counts["records"] == 6 + 3  # the other face images, and 3 frames of the 21-frame video
    report = _report(out)
    assert report["coffee.png"] == "no face found"
    assert report["pair.png"] == "2 faces found, expected one"
    assert report["corrupt.png"].startswith("unreadable image")
    assert "unreadable video" in report["broken.mp4"]
    rows = [r for _, r in iter_jsonl(out / build_dir.JOURNAL)]
    assert len(rows) == 13 and len({r["record_id"] for r in rows}) == 13
    assert all((out / r["image"]).is_file() and Image.open(out / r["image"]).size == (224, 224) for r in rows)
    assert sorted(r["frame"] for r in rows if r["job"].endswith("clip.mp4")) == [0, 10, 20]
    again = align.align_sources(jobs, out, workers=0)
    assert again == {"skipped": len(jobs), "records": 0, "reported": 0}


def test_torn_journal_line_is_cut_and_the_job_redone(source, tmp_path):
    jobs = _jobs(source)[:3]
    out = tmp_path / "build"
    align.align_sources(jobs, out, workers=0)
    # a crash mid-write: the last record line is torn and its job never marked done
    journal = out / build_dir.JOURNAL
    journal.write_bytes(journal.read_bytes()[:-20])
    done = out / build_dir.DONE_JOBS
    done.write_text("".join(line + "\n" for line in done.read_text().splitlines()[:2]))
    counts = align.align_sources(jobs, out, workers=0)
    assert counts == {"skipped": 2, "records": 1, "reported": 0}
    assert [r["job"] for _, r in iter_jsonl(journal)] == [j.key for j in jobs]


def test_finish_writes_outputs_and_keeps_identities_disjoint(source, tmp_path):
    out = tmp_path / "build"
    align.align_sources(_jobs(source), out, workers=0)
    journal = [r for _, r in iter_jsonl(out / build_dir.JOURNAL)]
    failing = next(r["record_id"] for r in journal if r["category"] == "face_editing")
    options = pipeline.FinishOptions(RATIOS, seed=3, name="t")
    summary = pipeline.finish_build(out, annotator=FakeAnnotator({failing}), options=options)

    split_file = json.loads((out / "split.json").read_text())
    where = {i: s for s, ids in split_file["identities"].items() for i in ids}
    assert where["id1"] == where["id4"]  # linked by related_identities
    records = {s: [r for _, r in iter_jsonl(out / f"records/{s}.jsonl")] for s in pipeline.SPLITS}
    assert sum(map(len, records.values())) == 13  # the forgery whose annotation failed is kept, without AD
    assert all(where[r["identity"]] == s for s, rows in records.items() for r in rows)
    assert _report(out)[Path(next(r["job"] for r in journal if r["record_id"] == failing)).name] == "refused"
    assert summary["free_conversations"].startswith("skipped")
    assert summary["reported"] == {"align": 4, "annotate": 1}
    assert summary["dropped"] == {"align: no face found": 1, "align: unreadable image": 1,
                                  "align: 2 faces found, expected one": 1, "align: unreadable video": 1}  # fmt: skip
    assert sum(s["without"] for s in summary["ad_references"].values()) == 1

    train = json.loads((out / "instruct/dfa_instruct_merged.json").read_text())
    n_train_forgeries = sum(r["label"] == "forgery" and r["artifact_description"] != "" for r in records["train"])
    assert len(train) == 2 * len(records["train"]) + n_train_forgeries
    assert summary["qa_pairs"]["merged"] == len(train)
    assert all(e["conversations"][0]["value"].startswith("<image>\n") for e in train)
    assert not (out / "instruct/dfa_instruct_fc.json").exists()
    for split in pipeline.HELD_OUT:
        if records[split]:
            bench = read_bench(out / f"bench/{split}")
            assert {i["record_id"] for i in bench.items} == {r["record_id"] for r in records[split]}


def test_a_failed_finish_leaves_the_previous_outputs_intact(source, tmp_path):
    out = tmp_path / "build"
    align.align_sources(_jobs(source)[:10], out, workers=0)
    pipeline.finish_build(out, annotator=FakeAnnotator(), options=pipeline.FinishOptions(RATIOS, seed=2))
    before = {p: p.read_bytes() for p in (out / "records").iterdir()}

    class Exploding(pipeline.Annotator):
        def describe(self, records, root):
            raise RuntimeError("annotator crashed")

    with pytest.raises(RuntimeError):
        pipeline.finish_build(out, annotator=Exploding(), options=pipeline.FinishOptions(RATIOS, seed=2))
    assert {p: p.read_bytes() for p in (out / "records").iterdir()} == before
    assert not [p for p in out.rglob("*.tmp")]


def test_training_image_leak_is_caught(source, tmp_path):
    out = tmp_path / "build"
    align.align_sources(_jobs(source)[:10], out, workers=0)
    pipeline.finish_build(out, annotator=FakeAnnotator(), options=pipeline.FinishOptions(RATIOS, seed=2))
    train = next(r for _, r in iter_jsonl(out / "records/train.jsonl"))
    held_out = next(r for s in pipeline.HELD_OUT for _, r in iter_jsonl(out / f"records/{s}.jsonl"))
    (out / held_out["image"]).write_bytes((out / train["image"]).read_bytes())
    with pytest.raises(ValueError, match="training images are also"):
        pipeline.check_splits_do_not_leak(out)


def test_worker_processes_give_the_same_crops(source, tmp_path):
    jobs = _jobs(source)[:4]
    align.align_sources(jobs, tmp_path / "a", workers=0)
    align.align_sources(jobs, tmp_path / "b", workers=2)
    for name in sorted(p.name for p in (tmp_path / "a/images").iterdir()):
        a = np.asarray(Image.open(tmp_path / "a/images" / name), dtype=int)
        b = np.asarray(Image.open(tmp_path / "b/images" / name), dtype=int)
        assert np.abs(a - b).max() <= 2  # thread counts differ, so floating point may too


def test_cli_build_with_gpt_batch_annotation_and_free_conversations(source, tmp_path, monkeypatch):
    """`dfa-bench data build` end to end against a local OpenAI-compatible server: the Batch API run
    describes every forgery at once, FC turns are asked online, the key is never written."""
    from fake_openai import FakeOpenAI, describe_reply
    from typer.testing import CliRunner

    from dfa_bench.cli import app

    def reply(body: dict) -> str:
        content = body["messages"][-1]["content"]
        if isinstance(content, list):  # an annotation request carries the image
            return describe_reply(body)
        n = int(content.split("with exactly ")[1].split()[0])
        return json.dumps({"turns": [{"question": f"Q{i}?", "answer": f"A{i}."} for i in range(n)]})

    secret = "sk-test-PIPELINE-SECRET"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    server = FakeOpenAI(reply=reply, polls_before_done=1)
    out = tmp_path / "build"
    try:
        args = ["data", "build", "--output", str(out), "--manifest", str(source / "manifest.csv"), "--workers", "0",
                "--annotator", "openai", "--base-url", server.url, "--batch", "--poll-interval", "0.01",
                "--free-conversations", "--train", "0.6", "--dev", "0.2", "--seed", "2", "--max-dropped", "0.5"]  # fmt: skip
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert server.requests_to("POST", "/batches") == 1  # one batch for all forgeries, not one per chunk
        summary = json.loads((out / "build_summary.json").read_text())
        assert summary["free_conversations"] == "generated" and summary["annotator"] == "openai"
        train = [r for _, r in iter_jsonl(out / "records/train.jsonl")]
        fc = json.loads((out / "instruct/dfa_instruct_fc.json").read_text())
        assert len(fc) == len(train) == summary["qa_pairs"]["fc"]
        forgeries = [
            r for s in pipeline.SPLITS for _, r in iter_jsonl(out / f"records/{s}.jsonl") if r["label"] == "forgery"
        ]
        assert forgeries and all(r["artifact_description"].startswith("1. Eyes:") for r in forgeries)
        # a rerun pays for nothing: alignment, annotations and conversations all come from disk
        before = len(server.log)
        assert CliRunner().invoke(app, args).exit_code == 0
        assert len(server.log) == before
    finally:
        server.close()
    for path in out.rglob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
