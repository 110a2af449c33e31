"""What a run records about itself: package versions and the identity of the weights that answered."""

from __future__ import annotations

import json

from dfa_bench.environment import identity, model_identity, package_versions, weights_sha256


def test_package_versions_name_the_installed_ones():
    import torch

    versions = package_versions()
    assert versions["torch"] == torch.__version__.split("+")[0] and versions["lmms-eval"] == "0.7.3"
    assert versions["dfa-bench"]


def test_local_weights_are_identified_by_content(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text("{}")
    first = identity(str(model))
    assert first["path"] == str(model.resolve()) and first["weights_sha256"] == weights_sha256(model)
    (model / "config.json").write_text('{"a": 1}')  # not a weight file
    assert identity(str(model))["weights_sha256"] == first["weights_sha256"]
    (model / "model.safetensors").write_bytes(b"other weights")
    assert identity(str(model))["weights_sha256"] != first["weights_sha256"]
    assert identity(str(tmp_path / "empty-dir-not-there"))["name"]  # neither a path nor a hub id
    (tmp_path / "empty").mkdir()
    assert identity(str(tmp_path / "empty"))["weights_sha256"] is None


def test_a_lora_run_names_its_base_and_other_arguments(tmp_path):
    base, run = tmp_path / "base", tmp_path / "run"
    base.mkdir()
    run.mkdir()
    (base / "model.safetensors").write_bytes(b"base")
    (run / "adapter_model.safetensors").write_bytes(b"lora")
    (run / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 8}))
    found = model_identity({"pretrained": str(run), "dtype": "float32", "model": "gpt-4o"})
    assert set(found) == {"pretrained", "model"}
    assert found["pretrained"]["base"]["weights_sha256"] == weights_sha256(base)
    assert found["model"] == {"name": "gpt-4o"}
    hub = identity("org-that-is-not-cached/some-model")
    assert hub == {"hub_id": "org-that-is-not-cached/some-model", "revision": None}
