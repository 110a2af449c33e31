"""Two processes (DDP over gloo, on the CPU) train like one process at the same global batch size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from dfa_gpt_fixtures import make_training_data
from safetensors.torch import load_file

from dfa_bench.tiny_models import build_tiny_llava

# LoRA dropout off: its masks are drawn per process, so they could never agree between 1 and 2 processes
ARGS = ("--no-bf16 --lora-rank 8 --lora-alpha 16 --lora-dropout 0 --lr 1e-2 --projector-lr 1e-3 --max-steps 4 "
        "--workers 0 --save-steps 100 --cpu").split()  # fmt: skip
BIN = Path(sys.executable).parent


def run(command: list[str], cwd: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_equal_one_at_the_same_global_batch(tmp_path):
    build_tiny_llava(tmp_path / "base", initializer_range=0.2)
    make_training_data(tmp_path)
    common = ["train", "--base", "base", "--data", "train.json", "--images", "images", *ARGS]
    # accelerate's multi-process launcher (torch elastic); --cpu makes the Trainer use gloo
    launch = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "dfa_gpt"]  # fmt: skip
    run([*launch, *common, "--batch-size", "2", "--output", "two"], tmp_path)
    run([sys.executable, "-m", "dfa_gpt", *common, "--batch-size", "4", "--output", "one"], tmp_path)
    curves = {n: json.loads((tmp_path / n / "dfa_gpt_run.json").read_text())["loss_curve"] for n in ("one", "two")}
    assert [row["step"] for row in curves["two"]] == [1, 2, 3, 4]
    for a, b in zip(curves["one"], curves["two"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4), a["step"]
    one, two = (load_file(tmp_path / n / "adapter_model.safetensors") for n in ("one", "two"))
    assert one.keys() == two.keys()
    for key in one:
        torch.testing.assert_close(one[key], two[key], atol=1e-5, rtol=1e-4)
