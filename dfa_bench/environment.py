"""What a run was made with: package versions and the identity of the model's weights.

`dfa-bench eval` records both in run.json, and `dfa-bench submit` copies them into the leaderboard entry,
so a reader sees which code scored a row and which weights answered. A local checkpoint is identified
by a sha256 over its weight files (name and content), a hub id by the revision in the local hub cache,
an API model by its name.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dfa_bench.io import sha256_file

PACKAGES = ("dfa-bench", "lmms-eval", "transformers", "torch", "peft", "accelerate")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".onnx", ".npz", ".msgpack", ".h5")
MODEL_ARGS = ("pretrained", "lora", "head", "base", "model")  # the arguments that name weights


def package_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def weights_sha256(path: Path) -> str | None:
    """sha256 over the weight files' names and contents: a file, or a directory's top level (None: no weights)."""
    files = _weight_files(path)
    if not files:
        return None
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}\0{sha256_file(file)}\n".encode())
    return digest.hexdigest()


def _weight_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES) if path.is_dir() else []


def lora_base(path: Path) -> str | None:
    """The base a LoRA adapter directory was trained on, by PEFT's convention (adapter_config.json's
    base_model_name_or_path; a DFA-GPT run writes it as its dfa_gpt_run.json does). None: not an adapter."""
    config = path / "adapter_config.json"
    if not config.is_file():
        return None
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, ValueError, AttributeError):
        return None
    return str(base) if base else None


def weights_stamp(value: str) -> list | None:
    """A cheap stamp of the weights a model argument names: (name, size, mtime_ns) of each weight file, and the
    base of a LoRA adapter. Weights replaced at the same path get a new stamp without hashing gigabytes: what the
    response cache keys answers by (run.json's weights_sha256 is the full identity). None: not a local path."""
    path = Path(value).expanduser()
    if not path.exists():
        return None
    stamp: list = [[f.name, (st := f.stat()).st_size, st.st_mtime_ns] for f in _weight_files(path)]
    if (base := lora_base(path)) is not None:
        stamp.append(["base", weights_stamp(base)])
    return stamp


def identity(value: str) -> dict:
    """One model argument's identity: local weights by sha256, a hub id by its cached revision, else its name."""
    path = Path(value).expanduser()
    if path.exists():
        out: dict = {"path": str(path.resolve()), "weights_sha256": weights_sha256(path)}
        if (base := lora_base(path)) is not None:  # a LoRA (a DFA-GPT run): the adapter above, its base here
            out["base"] = identity(base)
        return out
    if value.count("/") == 1 and not value.startswith((".", "/", "~")):  # org/name
        return {"hub_id": value, "revision": _cached_revision(value)}
    return {"name": value}


def _cached_revision(repo_id: str) -> str | None:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, local_files_only=True)).name  # the snapshot folder is the commit
    except Exception:  # not cached, or no huggingface_hub: the revision is unknown, not an error
        return None


def model_identity(model_args: dict[str, str]) -> dict:
    """{argument: identity} for the model arguments that name weights."""
    return {key: identity(str(model_args[key])) for key in MODEL_ARGS if model_args.get(key)}
