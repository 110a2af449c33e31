"""DFA-GPT training on a tiny random LLaVA (offline, CPU): loss, what changes, checkpoints, resume, loading."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from dfa_gpt_fixtures import make_training_data
from safetensors import safe_open
from test_adapter_hf import answer_in_batches, make_queries
from transformers import TrainerCallback

from dfa_bench.adapters.dfa_gpt import DFAGPT
from dfa_bench.adapters.llava import DFALlava
from dfa_bench.tiny_models import build_tiny_llava
from dfa_gpt.recipe import Recipe
from dfa_gpt.train import CHECKPOINT_FILES, RunExistsError, complete_checkpoints, train

RECIPE = dict(
    bf16=False, max_steps=12, per_device_batch_size=4, save_steps=4, dataloader_workers=0, lora_rank=8,
    lora_alpha=16, learning_rate=1e-2, projector_lr=1e-3,
)  # fmt: skip
ARGS = "dtype=float32,device=cpu,max_new_tokens=8"


class Snapshot(TrainerCallback):
    """Copies of every parameter when training begins and ends."""

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.before = {n: p.detach().clone() for n, p in model.named_parameters()}
        self.trainable = {n for n, p in model.named_parameters() if p.requires_grad}
        self.tower_modes = []  # (tower, language model) .training flags seen in each training forward
        tower = model.get_base_model().model.vision_tower
        tower.register_forward_hook(lambda m, a, o: self.tower_modes.append((m.training, model.training)))

    def on_train_end(self, args, state, control, model=None, **kwargs):
        self.after = {n: p.detach().clone() for n, p in model.named_parameters()}


class Crash(TrainerCallback):
    """Dies at step `at`, as a killed job would: nothing after the last checkpoint survives."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.at:
            raise KeyboardInterrupt("killed")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dfa-gpt")
    base = build_tiny_llava(root / "base", initializer_range=0.2)
    data, images = make_training_data(root)
    return root, base, data, images


@pytest.fixture(scope="module")
def trained(setup):
    root, base, data, images = setup
    snapshot = Snapshot()
    run = train(str(base), [data], images, root / "run", Recipe(**RECIPE), callbacks=[snapshot], use_cpu=True)
    return root / "run", run, snapshot


def test_loss_falls(trained):
    _, run, _ = trained
    losses = [row["loss"] for row in run["loss_curve"]]
    assert [row["step"] for row in run["loss_curve"]] == list(range(1, 13))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3 - 0.5, losses
    assert run["samples"]["trained"] == 24 and run["samples"]["by_ability"] == {"dfd": 6, "dfc": 6, "ad": 6, "fc": 6}


def test_only_the_lora_and_the_projector_change(trained):
    _, _, snapshot = trained
    changed = {n for n in snapshot.before if not torch.equal(snapshot.before[n], snapshot.after[n])}
    assert changed == snapshot.trainable  # every trainable tensor moved; nothing else did, bit for bit
    assert all(
        ("lora_" in n and ".language_model." in n) or "multi_modal_projector.modules_to_save" in n for n in changed
    )
    assert any("multi_modal_projector" in n for n in changed) and any("lora_B" in n for n in changed)
    frozen = set(snapshot.before) - changed
    assert any(".vision_tower." in n for n in frozen) and any(
        "language_model" in n and "base_layer" in n for n in frozen
    )
    assert not any("lora_" in n and (".vision_tower." in n or "lm_head" in n) for n in snapshot.before)
    assert snapshot.tower_modes and set(snapshot.tower_modes) == {(False, True)}  # frozen tower in eval mode


def adapter_keys(path) -> set[str]:
    with safe_open(str(path / "adapter_model.safetensors"), "pt") as f:
        return set(f.keys())


def test_every_checkpoint_holds_lora_projector_optimizer_and_rng(trained):
    run_dir, _, _ = trained
    checkpoints = complete_checkpoints(run_dir)
    assert [c.name for c in checkpoints] == ["checkpoint-4", "checkpoint-8", "checkpoint-12"]
    for checkpoint in checkpoints:
        keys = adapter_keys(checkpoint)
        assert any("multi_modal_projector" in k for k in keys), checkpoint
        assert any("lora_A" in k for k in keys) and all(".language_model." in k for k in keys if "lora_" in k)
        assert all((checkpoint / f).is_file() for f in (*CHECKPOINT_FILES, "rng_state.pth"))
    optimizer = torch.load(checkpoints[0] / "optimizer.pt", weights_only=False)
    lrs = sorted(group["initial_lr"] for group in optimizer["param_groups"])
    assert lrs == [1e-3, 1e-2]  # the projector's own learning rate, and the LoRA's
    projector_group = next(g for g in optimizer["param_groups"] if g["initial_lr"] == 1e-3)
    assert len(projector_group["params"]) == 4  # two linear layers: weights and biases
    info = json.loads((run_dir / "dfa_gpt_run.json").read_text())
    assert info["recipe"]["lora_rank"] == 8 and info["global_step"] == 12 and info["base"].endswith("base")
    lora = json.loads((run_dir / "adapter_config.json").read_text())
    assert lora["base_model_name_or_path"] == info["base"]  # what the run's identity follows (environment.lora_base)


def test_a_partial_checkpoint_is_not_resumed_from(trained, tmp_path):
    run_dir, _, _ = trained
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / "checkpoint-12" / "trainer_state.json").unlink()  # killed while saving
    assert complete_checkpoints(copy)[-1].name == "checkpoint-8"


def test_a_killed_run_resumes_where_it_stopped(setup, trained):
    root, base, data, images = setup
    _, reference, _ = trained
    output = root / "killed"
    with pytest.raises(KeyboardInterrupt):
        train(str(base), [data], images, output, Recipe(**RECIPE), callbacks=[Crash(6)], use_cpu=True)
    assert [c.name for c in complete_checkpoints(output)] == ["checkpoint-4"]
    with pytest.raises(RunExistsError, match="--resume"):
        train(str(base), [data], images, output, Recipe(**RECIPE), use_cpu=True)
    resumed = train(str(base), [data], images, output, Recipe(**RECIPE), resume=True, use_cpu=True)
    assert resumed["resumed_from"].endswith("checkpoint-4") and resumed["global_step"] == 12
    # the curve continues: steps 1-4 from the checkpoint's state, 5-12 retrained, equal to the uninterrupted run
    assert [row["step"] for row in resumed["loss_curve"]] == list(range(1, 13))
    for mine, theirs in zip(resumed["loss_curve"], reference["loss_curve"], strict=True):
        assert mine["loss"] == pytest.approx(theirs["loss"], abs=1e-4), mine["step"]


def test_the_run_answers_through_dfa_llava_and_dfa_gpt_and_merges(setup, trained, tmp_path):
    from dfa_gpt.merge import merge

    _, base, _, _ = setup
    run_dir, _, _ = trained
    queries = make_queries()
    answers = {}
    for name, adapter in {
        "base": DFALlava.create_from_arg_string(f"pretrained={base},{ARGS}"),
        "dfa_gpt": DFAGPT.create_from_arg_string(f"pretrained={run_dir},{ARGS}"),
        # dfa_gpt reads P(forgery) where the reference answers part; dfa_llava does so when asked
        "dfa_llava": DFALlava.create_from_arg_string(
            f"pretrained={base},lora={run_dir},merge_lora=false,dfd_decision=reference_answer,{ARGS}"
        ),
        "merged": DFALlava.create_from_arg_string(
            f"pretrained={merge(run_dir, tmp_path / 'merged')},dfd_decision=reference_answer,{ARGS}"
        ),
    }.items():
        answers[name] = [(a.response, a.score) for a in answer_in_batches(adapter, queries, 2)]
    assert answers["dfa_gpt"] != answers["base"]  # training changed what the model says
    assert [r for r, _ in answers["dfa_llava"]] == [r for r, _ in answers["dfa_gpt"]]
    assert [r for r, _ in answers["merged"]] == [r for r, _ in answers["dfa_gpt"]]  # greedy: identical
    for (_, merged), (_, unmerged) in zip(answers["merged"], answers["dfa_gpt"], strict=True):
        assert merged == pytest.approx(unmerged, abs=1e-4)


def test_merged_model_loads_with_plain_from_pretrained(trained, tmp_path):
    from peft import PeftModel
    from transformers import LlavaForConditionalGeneration

    from dfa_gpt.merge import merge

    run_dir, _, _ = trained
    merged = LlavaForConditionalGeneration.from_pretrained(merge(run_dir, tmp_path / "m"))
    info = json.loads((run_dir / "dfa_gpt_run.json").read_text())
    peft = PeftModel.from_pretrained(LlavaForConditionalGeneration.from_pretrained(info["base"]), str(run_dir))
    projector = peft.base_model.model.model.multi_modal_projector.modules_to_save["default"]
    assert torch.equal(merged.model.multi_modal_projector.linear_1.weight, projector.linear_1.weight)
