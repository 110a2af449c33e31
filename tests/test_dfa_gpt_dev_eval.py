"""Dev evaluation from logits: the scoring, the first-token losses, the curve, keep-best, the chance warning."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from dfa_gpt_fixtures import make_training_data

from dfa_bench.schema import CATEGORIES
from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.dev_curve import TokenLosses
from dfa_gpt.dev_eval import DevEvaluator, DevItem, at_chance, bench_dev_items
from dfa_gpt.encoding import IGNORE_INDEX
from dfa_gpt.planted import build_planted_set
from dfa_gpt.recipe import Recipe
from dfa_gpt.train import train

RECIPE = dict(
    bf16=False, max_steps=5, per_device_batch_size=4, save_steps=100, dataloader_workers=0, lora_rank=8,
    lora_alpha=16, learning_rate=1e-2, projector_lr=1e-3, gradient_checkpointing=False, eval_steps=3,
)  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dev-eval")
    base = build_tiny_llava(root / "base", initializer_range=0.2)
    planted = build_planted_set(root / "planted", per_category=2, heldout_per_category=2, size=30)
    return root, base, planted


def _processor(base: Path):
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(base)


def test_bench_dev_items_reads_dfd_and_dfc_and_samples_each_task(setup):
    _, _, planted = setup
    items = bench_dev_items(planted["dev"])
    assert {i.task for i in items} == {"dfd", "dfc"} and len(items) == 20
    assert all(i.polarity in ("forged", "authentic") for i in items if i.task == "dfd")
    assert all(len(i.options) == 5 for i in items if i.task == "dfc")
    sample = bench_dev_items(planted["dev"], limit=3)
    assert [i.task for i in sample].count("dfd") == 3 and [i.task for i in sample].count("dfc") == 3
    assert len({i.category for i in sample if i.task == "dfd"}) > 1  # a sample, not the first items


def test_score_reads_the_decision_token_and_the_likeliest_answer(setup):
    _, base, planted = setup
    processor = _processor(base)
    items = bench_dev_items(planted["dev"])
    evaluator = DevEvaluator(items, processor)
    assert len(evaluator.items) == len(evaluator.choices) == 10
    logits = torch.zeros(len(evaluator.items), len(processor.tokenizer))
    for row, item in enumerate(evaluator.items):  # an oracle: the right answer's decision token is the likeliest
        logits[row, evaluator.candidates[row][0 if item.category != "bona_fide" else 1]] = 5.0
    choices = torch.zeros(len(evaluator.choices), len(CATEGORIES))
    for row, item in enumerate(evaluator.choices):
        choices[row, CATEGORIES.index(item.category)] = 5.0
    perfect = evaluator.score(logits, choices)
    assert perfect["dfd_auc"] == 1.0 and perfect["dfc_acc"] == 1.0 and perfect["dfd_acer"] == 0.0
    assert perfect["dfd_first_token_loss"] < 0.01 and perfect["dfc_answer_loss"] < 0.05
    assert at_chance(perfect) == []
    blind = evaluator.score(torch.zeros_like(logits), torch.zeros_like(choices))  # one answer for every image
    assert blind["dfd_auc"] == 0.5 and blind["dfd_constant"]
    assert blind["dfd_first_token_loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert blind["dfc_answer_loss"] == pytest.approx(math.log(5), abs=1e-4)
    assert at_chance(blind) == ["DF-D AUC", "DF-C ACC"]


def test_choice_scores_are_each_answers_likelihood_and_batching_changes_nothing(setup):
    """A DF-C item's five scores are the summed log-probabilities of each category's reference answer after
    the prompt, as a plain forward of that one sequence gives them, whatever the batch size."""
    from transformers import AutoModelForImageTextToText

    from dfa_bench.templates import dfc_answer

    _, base, planted = setup
    processor = _processor(base)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    items = [i for i in bench_dev_items(planted["dev"], limit=3) if i.task == "dfc"]
    batched = DevEvaluator(items, processor, batch_size=16).choice_log_likelihoods(model)
    alone = DevEvaluator(items, processor, batch_size=1).choice_log_likelihoods(model)
    assert batched.shape == (3, 5) and torch.allclose(batched, alone, atol=1e-4)
    evaluator = DevEvaluator(items[:1], processor)
    (sequences, start) = evaluator.choice_sequences[0]
    answer = sequences[2]
    assert processor.tokenizer.decode(answer[start:]).strip().startswith(dfc_answer(CATEGORIES[2])[:10])
    pixels = evaluator.pixels[items[0].image].unsqueeze(0)
    with torch.no_grad():
        log_p = model(input_ids=torch.tensor([answer]), pixel_values=pixels).logits[0].log_softmax(-1)
    expected = sum(float(log_p[t - 1, answer[t]]) for t in range(start, len(answer)))
    assert float(batched[0, 2]) == pytest.approx(expected, abs=1e-3)


def test_logits_equal_one_item_at_a_time(setup):
    """Left padding in a batch gives the logits of each prompt alone (positions numbered as generate does)."""
    from transformers import AutoModelForImageTextToText

    _, base, planted = setup
    processor = _processor(base)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    items = bench_dev_items(planted["dev"], limit=3)
    batched = DevEvaluator(items, processor, batch_size=6).logits(model)
    alone = DevEvaluator(items, processor, batch_size=1).logits(model)
    assert batched.shape == (3, len(processor.tokenizer))
    assert torch.allclose(batched, alone, atol=1e-4)
    assert not model.training


def test_token_losses_split_the_decision_tokens_from_the_rest():
    logits = torch.zeros(1, 6, 4)
    labels = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2, 3, IGNORE_INDEX, 1]])
    decision = torch.tensor([[False, False, True, False, False, True]])  # the tokens 2 and 1 decide
    logits[0, 1, 2] = 10.0  # position 1 predicts label 2 well
    losses = TokenLosses()
    losses.add(logits, labels, decision)
    out = losses.pop()
    uniform = math.log(4)
    assert out["loss_other_tokens"] == pytest.approx(uniform, abs=1e-5)  # the "3": one token, uniform logits
    assert out["loss_decision_tokens"] == pytest.approx((uniform + 0.0) / 2, abs=1e-3)  # "2" (~0) and "1" (ln 4)
    assert losses.pop() == {}


def test_train_writes_the_dev_curve_and_keeps_the_best(setup, tmp_path):
    root, base, planted = setup
    recipe = Recipe(**RECIPE, keep_best="dfd_first_token_loss")
    run = train(str(base), [planted["data"]], planted["images"], tmp_path / "run", recipe, eval_bench=planted["dev"],
                use_cpu=True)  # fmt: skip
    curve = json.loads((tmp_path / "run" / "dev_curve.json").read_text())
    assert [p["step"] for p in curve["points"]] == [0, 3, 5]  # the untrained model, every 3 steps, the epoch end
    assert all({"dfd_auc", "dfc_acc", "dfd_first_token_loss"} <= p.keys() for p in curve["points"])
    assert {"loss_decision_tokens", "loss_other_tokens"} <= curve["points"][-1]["train"].keys()
    assert [t["step"] for t in curve["train"]] == [1, 2, 3, 4, 5]  # every logged step, for the plot
    assert (tmp_path / "run" / "dev_curve.png").stat().st_size > 10_000
    best = min(curve["points"][1:], key=lambda p: p["dfd_first_token_loss"])
    assert run["dev"]["best"]["step"] == best["step"] == curve["best"]["step"]
    kept = (tmp_path / "run" / "adapter_model.safetensors").read_bytes()
    assert kept == (tmp_path / "run" / "best" / "adapter_model.safetensors").read_bytes()
    if best["step"] != 5:  # the last step's adapter is kept beside it
        assert (tmp_path / "run" / "last" / "adapter_model.safetensors").read_bytes() != kept
    history = json.loads((tmp_path / "run" / "dfa_gpt_run.json").read_text())
    assert history["dev"]["points"] == 3 and history["dev"]["at_chance"]  # 5 steps on 10 images: still chance


def test_dev_bench_problems_fail_before_training(setup, tmp_path):
    _, base, planted = setup
    data, images = make_training_data(tmp_path)
    with pytest.raises(ValueError, match="keep-best needs --eval-bench"):
        train(str(base), [data], images, tmp_path / "a", Recipe(**RECIPE, keep_best="dfc_acc"), use_cpu=True)
    broken = tmp_path / "bench"
    broken.mkdir()
    (broken / "manifest.json").write_text("{}")
    with pytest.raises(Exception, match="questions.jsonl|manifest"):
        train(str(base), [data], images, tmp_path / "b", Recipe(**RECIPE), eval_bench=broken, use_cpu=True)
    assert not (tmp_path / "b" / "dfa_gpt_run.json").exists()


def test_the_decision_token_is_where_the_answers_part(setup):
    """The two DF-D reference answers share "This face image is": the decision is read after it, at the token
    that tells "forged" from "a bona fide ..."."""
    _, base, planted = setup
    processor = _processor(base)
    item = next(i for i in bench_dev_items(planted["dev"]) if i.task == "dfd")
    evaluator = DevEvaluator([item], processor)
    prefix, (forged, bona) = evaluator.input_ids[0], evaluator.candidates[0]
    tokenizer = processor.tokenizer
    assert tokenizer.decode(prefix).endswith("ASSISTANT: This face image is")
    assert tokenizer.decode([forged]).strip().startswith("f") and tokenizer.decode([bona]).strip() == "a"
    image_id = processor.tokenizer.convert_tokens_to_ids(processor.image_token)
    assert prefix.count(image_id) == 25  # expanded as the processor expands it (30 px, 6 px patches)


def test_dev_items_need_an_answerable_vocabulary(setup):
    _, base, planted = setup
    processor = _processor(base)
    items = [DevItem("q", "dfd", Path(planted["dev"]) / "missing.png", "Is it forged?", "bona_fide", "forged")]
    with pytest.raises(ValueError, match="missing.png"):
        DevEvaluator(items, processor)


def test_decision_weighted_loss_equals_the_models_loss_at_weight_one(setup):
    from transformers import AutoModelForImageTextToText

    from dfa_gpt.train import decision_weighted_loss

    _, base, _ = setup
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    torch.manual_seed(0)
    input_ids = torch.randint(5, 300, (2, 12))
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[0, 6:9], labels[1, 4:11] = input_ids[0, 6:9], input_ids[1, 4:11]
    decision = torch.zeros_like(labels, dtype=torch.bool)
    decision[0, 7], decision[1, 4], decision[1, 9] = True, True, True
    out = model(input_ids=input_ids, labels=labels)
    ours = decision_weighted_loss(out.logits, labels, decision, 1.0)
    assert float(ours) == pytest.approx(float(out.loss), rel=1e-5)
    n = int((labels != IGNORE_INDEX).sum()) - 0  # the model shifts: position t predicts t+1
    halved = decision_weighted_loss(out.logits, labels, decision, 1.0, num_items_in_batch=2 * n)
    assert float(halved) == pytest.approx(float(out.loss) / 2, rel=1e-5)
    # weight 10: the decision tokens (labels 7 of row 0, 4 and 9 of row 1) count ten times as much
    logits = out.logits[:, :-1]
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, 1:], reduction="none")
    mask = labels[:, 1:] != IGNORE_INDEX
    weights = torch.where(decision[:, 1:], 10.0, 1.0)[mask]
    expected = (ce[mask] * weights).sum() / weights.sum()
    assert float(decision_weighted_loss(out.logits, labels, decision, 10.0)) == pytest.approx(float(expected), rel=1e-5)


def test_a_resumed_run_continues_its_dev_curve(setup, tmp_path):
    from test_dfa_gpt_train import Crash

    _, base, planted = setup
    recipe = Recipe(**{**RECIPE, "eval_steps": 2, "save_steps": 2})
    output = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        train(str(base), [planted["data"]], planted["images"], output, recipe, eval_bench=planted["dev"],
              callbacks=[Crash(3)], use_cpu=True)  # fmt: skip
    assert [p["step"] for p in json.loads((output / "dev_curve.json").read_text())["points"]] == [0, 2]
    train(str(base), [planted["data"]], planted["images"], output, recipe, eval_bench=planted["dev"], resume=True,
          use_cpu=True)  # fmt: skip
    assert [p["step"] for p in json.loads((output / "dev_curve.json").read_text())["points"]] == [0, 2, 4, 5]


def test_captions_are_scored_as_dfc_answers_are(setup):
    from transformers import AutoModelForImageTextToText

    _, base, planted = setup
    processor = _processor(base)
    items = [i for i in bench_dev_items(planted["dev"], captions=True) if i.task == "caption"]
    assert len(items) == 10 and {i.category for i in items} == set(CATEGORIES)
    evaluator = DevEvaluator(items[:2], processor)  # scored as DF-C items are: the same five answers
    assert evaluator.choices == items[:2] and evaluator.items == []
    model = AutoModelForImageTextToText.from_pretrained(base, dtype=torch.float32)
    figures = evaluator.evaluate(model)
    assert figures["caption_n"] == 2 and 0 <= figures["caption_acc"] <= 1 and "dfd_auc" not in figures
