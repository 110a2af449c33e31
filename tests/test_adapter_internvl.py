"""dfa_internvl on tiny random checkpoints, offline on CPU: the native -hf path and the remote-code path."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from internvl_remote_fixture import write_remote_internvl
from PIL import Image

from dfa_bench.adapters.base import Query
from dfa_bench.adapters.internvl import DFAInternVL, dynamic_preprocess, load_image
from dfa_bench.tiny_models import build_tiny_internvl

ARGS = "device=cpu,dtype=float32"
PROMPTS = [
    "Is this face forged? Answer yes or no.",
    "Is this face authentic?",
    "Which forgery is it? A. Face swapping (FS). B. Face reenactment (FR). C. Face editing (FE).",
    "Describe the artifacts you see in the eyes, the mouth and lips, and the cheeks and jawline of this face.",
    "Yes or no?",
    "Real?",
    "Look at the blending seam. Is this face image forged? Answer yes or no.",
    "Is it a bona fide, unmanipulated face?",
    "Entire face synthesis (EFS)?",
]
SIZES = [(28, 28), (28, 112), (60, 30), (45, 45), (30, 70), (28, 28), (90, 40), (33, 33), (28, 56)]  # (h, w)


def image(height: int, width: int, seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def queries(max_new_tokens: int = 6) -> list[Query]:
    """Nine DF-D / AD queries with prompts, images and tile counts of different lengths."""
    out = []
    for i, (prompt, (height, width)) in enumerate(zip(PROMPTS, SIZES)):
        task = "dfd" if i % 2 == 0 else "ad"
        doc = {"polarity": "forged" if i % 4 == 0 else "authentic"} if task == "dfd" else {}
        gen_kwargs = {"max_new_tokens": max_new_tokens, "until": ["\n\n"], "temperature": 0}
        out.append(Query(f"q{i}", task, prompt, [image(height, width, seed=i)], doc, gen_kwargs))
    return out


def answer_in_batches(adapter: DFAInternVL, items: list[Query], size: int) -> list:
    return [a for start in range(0, len(items), size) for a in adapter.answer(items[start : start + size])]


# ------------------------------------------------------------------------------------ native (-hf) path


@pytest.fixture(scope="module")
def native_dir(tmp_path_factory) -> Path:
    return build_tiny_internvl(tmp_path_factory.mktemp("internvl-hf"), seed=0)


@pytest.fixture(scope="module")
def native(native_dir: Path) -> DFAInternVL:
    return DFAInternVL.create_from_arg_string(f"pretrained={native_dir},{ARGS}", {"batch_size": 3})


def test_tiny_internvl_is_a_native_checkpoint(native_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    config = json.loads((native_dir / "config.json").read_text())
    assert config["model_type"] == "internvl"
    processor = AutoProcessor.from_pretrained(native_dir)
    model = AutoModelForImageTextToText.from_pretrained(native_dir)
    assert type(processor).__name__ == "InternVLProcessor"
    assert type(model).__name__ == "InternVLForConditionalGeneration"
    assert processor.image_token == "<IMG_CONTEXT>" and model.config.image_token_id == processor.image_token_id


def test_native_loads_and_answers(native: DFAInternVL) -> None:
    assert not native.remote_code and native.batch_size == 3
    assert native.fingerprint["adapter"] == "dfa_internvl" and native.fingerprint["remote_code"] is False
    answers = native.answer(queries()[:3])
    assert len(answers) == 3
    assert all(isinstance(a.response, str) and a.error is None for a in answers)
    assert all(a.usage["input_tokens"] > 0 for a in answers)
    # the random model's answers still depend on the question and image
    assert len({a.response for a in answers}) > 1


def test_native_greedy_answers_do_not_depend_on_batch_size(native: DFAInternVL) -> None:
    items = queries()
    by_size = {size: answer_in_batches(native, items, size) for size in (1, 3, 8)}
    alone = [a.response for a in by_size[1]]
    assert len(set(alone)) >= 5, alone  # distinct answers, so equality below means something
    for size in (3, 8):
        assert [a.response for a in by_size[size]] == alone, size
        for single, batched in zip(by_size[1], by_size[size]):
            if single.score is not None:
                assert batched.score == pytest.approx(single.score, abs=1e-4)


def test_native_dfd_score_is_a_probability_that_flips_with_polarity(native: DFAInternVL) -> None:
    face = image(40, 40, seed=99)
    forged, authentic = (
        Query(f"p-{polarity}", "dfd", "Is this face forged? Answer yes or no.", [face], {"polarity": polarity},
              {"max_new_tokens": 2})
        for polarity in ("forged", "authentic")
    )  # fmt: skip
    a_forged, a_authentic = native.answer([forged, authentic])
    assert 0.0 <= a_forged.score <= 1.0 and 0.0 <= a_authentic.score <= 1.0
    assert a_forged.score == pytest.approx(1.0 - a_authentic.score, abs=1e-5)
    ad = native.answer([Query("ad", "ad", "Describe the face.", [face], {}, {"max_new_tokens": 2})])[0]
    assert ad.score is None


def test_native_tiling_options(native_dir: Path, native: DFAInternVL) -> None:
    wide = Query("w", "ad", "Describe.", [image(28, 112, seed=1)], {}, {})
    # 4:1 -> a 4x1 grid of tiles plus the thumbnail (the tiny processor allows up to 4 tiles)
    assert native.prepare_batch([wide])["pixel_values"].shape[0] == 5
    fewer = DFAInternVL.create_from_arg_string(f"pretrained={native_dir},{ARGS},max_num=2")
    assert fewer.prepare_batch([wide])["pixel_values"].shape[0] == 3
    single = DFAInternVL.create_from_arg_string(f"pretrained={native_dir},{ARGS},dynamic=false")
    assert single.prepare_batch([wide])["pixel_values"].shape[0] == 1
    assert fewer.fingerprint["max_num"] == 2 and single.fingerprint["dynamic"] is False


def test_native_system_prompt_gets_a_system_turn(native: DFAInternVL) -> None:
    native.system_prompt = "You are a forensic analyst."
    try:
        prompt = native.render_prompt(Query("s", "ad", "Describe.", [image(28, 28, seed=3)], {}, {}))
    finally:
        native.system_prompt = None
    assert prompt.startswith("<|im_start|>system\nYou are a forensic analyst.<|im_end|>\n<|im_start|>user\n")


def test_native_tokenizer_without_named_image_tokens(native_dir: Path, tmp_path: Path) -> None:
    """Converted checkpoints that register <img> etc. as tokens but not as named attributes still load."""
    stripped = shutil.copytree(native_dir, tmp_path / "stripped")
    config_path = stripped / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    for name in ("start_image_token", "end_image_token", "context_image_token", "video_token"):
        config.pop(name, None)
    config_path.write_text(json.dumps(config))
    adapter = DFAInternVL.create_from_arg_string(f"pretrained={stripped},{ARGS}")
    assert adapter.processor.image_token == "<IMG_CONTEXT>"
    assert adapter.answer(queries()[:1])[0].error is None


# ------------------------------------------------------------------------------------ remote-code path


@pytest.fixture(scope="module")
def remote_dir(tmp_path_factory) -> Path:
    return write_remote_internvl(tmp_path_factory.mktemp("internvl-chat"), seed=2, image_size=28)


@pytest.fixture(scope="module")
def remote(remote_dir: Path) -> DFAInternVL:
    return DFAInternVL.create_from_arg_string(
        f"pretrained={remote_dir},{ARGS},trust_remote_code=true", {"batch_size": 3}
    )


def test_remote_code_path_is_chosen_from_config(remote: DFAInternVL) -> None:
    assert remote.remote_code and remote.trust_remote_code
    assert type(remote.model).__name__ == "InternVLChatModel"  # the checkpoint's own modeling file
    assert remote.fingerprint["remote_code"] is True and remote.dfd_probability is False


def test_remote_code_answers_with_chat_and_batch_chat(remote: DFAInternVL) -> None:
    items = queries(max_new_tokens=8)[:6]
    remote.model.calls.clear()
    alone = answer_in_batches(remote, items, 1)
    assert remote.model.calls == [("chat", 1)] * 6
    remote.model.calls.clear()
    batched = answer_in_batches(remote, items, 3)
    assert remote.model.calls == [("batch_chat", 3)] * 2
    assert [a.response for a in batched] == [a.response for a in alone]
    assert len({a.response for a in alone}) > 1  # answers depend on the question and the pixels
    # chat() returns text only: no DF-D probability on this path
    assert all(a.score is None and a.error is None for a in alone)


def test_remote_code_answer_depends_on_pixels(remote: DFAInternVL) -> None:
    question = "Is this face forged? Answer yes or no."
    faces = [Query(f"f{i}", "dfd", question, [image(40, 40, seed=i)], {"polarity": "forged"}, {"max_new_tokens": 8})
             for i in range(4)]  # fmt: skip
    assert len({a.response for a in remote.answer(faces)}) > 1


def test_remote_code_tiling(remote: DFAInternVL) -> None:
    wide = image(28, 112, seed=5)
    pixels, counts = remote.remote_pixel_values([wide])
    # 4:1 -> 4 tiles of 28 px (the checkpoint's force_image_size) plus the thumbnail
    assert counts == [5] and tuple(pixels.shape) == (5, 3, 28, 28)
    assert len(dynamic_preprocess(wide, max_num=12, image_size=28, use_thumbnail=True)) == 5
    assert len(dynamic_preprocess(wide, max_num=2, image_size=28, use_thumbnail=True)) == 3  # 2x1 + thumbnail
    assert len(dynamic_preprocess(image(28, 28, seed=5), image_size=28, use_thumbnail=True)) == 1  # no thumbnail
    two, counts = remote.remote_pixel_values([wide, image(28, 28, seed=6)])
    assert counts == [5, 1] and two.shape[0] == 6


def test_remote_code_multi_image_query(remote: DFAInternVL) -> None:
    both = Query("m", "ad", "Compare the faces.", [image(28, 112, seed=1), image(28, 28, seed=2)], {},
                 {"max_new_tokens": 4})  # fmt: skip
    assert remote.remote_question(both).startswith("Image-1: <image>\nImage-2: <image>\n")
    remote.model.calls.clear()
    assert remote.answer([both, both])[0].error is None
    assert remote.model.calls == [("chat", 1)] * 2  # batch_chat takes one image per question


def test_load_image_matches_the_model_card_transform() -> None:
    """Our numpy transform equals the model cards' torchvision build_transform, tile for tile."""
    tv = pytest.importorskip("torchvision.transforms")
    from torchvision.transforms.functional import InterpolationMode

    transform = tv.Compose([
        tv.Resize((28, 28), interpolation=InterpolationMode.BICUBIC),
        tv.ToTensor(),
        tv.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    ])  # fmt: skip
    for height, width in [(28, 112), (50, 31), (17, 40)]:
        picture = image(height, width, seed=height)
        expected = torch.stack([transform(t) for t in dynamic_preprocess(picture, 1, 6, 28, use_thumbnail=True)])
        assert torch.allclose(load_image(picture, 28, max_num=6), expected, atol=1e-5)


def test_remote_code_runs_only_when_the_user_trusts_it(remote_dir: Path) -> None:
    for args in (ARGS, f"{ARGS},trust_remote_code=false"):
        with pytest.raises(ValueError, match="pass trust_remote_code=true"):
            DFAInternVL.create_from_arg_string(f"pretrained={remote_dir},{args}")


def test_remote_code_override_on_a_native_checkpoint_says_why_it_fails(native_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"no chat\(\)"):
        DFAInternVL.create_from_arg_string(f"pretrained={native_dir},{ARGS},remote_code=true,trust_remote_code=true")


# ------------------------------------------------------------------------------------ errors


def test_wrong_pretrained_path_gives_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="dfa_internvl: pretrained=.*missing.* not a checkpoint directory"):
        DFAInternVL.create_from_arg_string(f"pretrained={tmp_path / 'missing'},{ARGS}")
    with pytest.raises(FileNotFoundError, match="without a config.json"):
        DFAInternVL.create_from_arg_string(f"pretrained={tmp_path},{ARGS}")
    with pytest.raises(ValueError, match="pretrained"):
        DFAInternVL.create_from_arg_string(ARGS)


def test_remote_code_through_generate_until(remote_dir: Path, remote: DFAInternVL, tmp_path: Path) -> None:
    """The base class's request loop (batching, response cache) drives the remote path like any other."""
    from types import SimpleNamespace

    items = queries(max_new_tokens=8)[:4]
    cache = tmp_path / "responses.jsonl"
    adapter = DFAInternVL.create_from_arg_string(
        f"pretrained={remote_dir},{ARGS},trust_remote_code=true,response_cache={cache}", {"batch_size": 2}
    )
    docs = [{"question_id": q.question_id, "task": q.task, **q.doc} for q in items]
    adapter.task_dict = {"dfa_bench": {"test": docs}}
    requests = [
        SimpleNamespace(args=(q.prompt, dict(q.gen_kwargs), lambda doc, q=q: q.images, i, "dfa_bench", "test"))
        for i, q in enumerate(items)
    ]
    assert adapter.generate_until(requests) == [a.response for a in answer_in_batches(remote, items, 1)]
    rows = [json.loads(line) for line in cache.read_text().splitlines()]
    assert len(rows) == 4 and all(row["error"] is None for row in rows)
    assert not adapter.failures
