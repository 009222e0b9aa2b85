# Everything runs inside .venv, created on first use. Installs are pinned by constraints.txt
# (torch==2.13.0, the CPU wheel); a second `make` finds the stamp and skips the install.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.seqattn-installed
PIP    := $(BIN)/python -m pip
# Tests and CI never reach the Hugging Face Hub.
OFFLINE := HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1
PYTEST_ARGS ?=

.PHONY: help setup demo test test-all lint format bench bench-peers bench-rounds clean

help:
	@echo "make demo      set up .venv and run the main job on the embedded default data"
	@echo "make test      set up .venv and run the fast test suite (what CI runs)"
	@echo "make test-all  also run the slow end-to-end tests"
	@echo "make bench     run the benchmarks (about 45-55 minutes on 2 cores; writes benchmarks/results/)"
	@echo "make bench-peers  the peer toolkits, then seqattn, on one workload (about 40 minutes)"
	@echo "make bench-rounds training tokens/s against OpenNMT-py, 3 alternating rounds (after bench-peers)"
	@echo "make lint      ruff check and format check"

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -c constraints.txt -e '.[dev]'
	@$(BIN)/python .ci/check_env.py
	@touch $(STAMP)

setup: $(STAMP)

DEMO_RECIPES := dates-rnn-bahdanau dates-rnn-luong dates-transformer sentiment-attnpool

# The three dates models and the sentiment classifier, trained, evaluated and plotted, then one
# comparison table (about 9-14 minutes on 2 CPU cores; results in runs/demo/NAME/results.json).
demo: setup
	$(OFFLINE) $(BIN)/seqattn recipe run $(DEMO_RECIPES) --output-dir runs/demo

test: setup
	$(OFFLINE) $(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: setup
	$(OFFLINE) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: setup
	$(OFFLINE) $(BIN)/python benchmarks/attention.py
	$(OFFLINE) $(BIN)/python benchmarks/data_pipeline.py
	$(OFFLINE) $(BIN)/python benchmarks/translation.py
	$(OFFLINE) $(BIN)/python benchmarks/training_floor.py --models transformer rnn
	$(OFFLINE) $(BIN)/python benchmarks/lstm_paths.py
	$(OFFLINE) $(BIN)/python benchmarks/memory.py
	$(OFFLINE) $(BIN)/python benchmarks/int8.py

# The peer toolkits (JoeyNMT, OpenNMT-py) measured by their harness, then seqattn on the same
# workload, back to back, so the ratios come from one run on one machine. The harness installs
# the peers into their own environments under PEERS_WORK; it is a measuring tool, not part of
# seqattn.
PEERS_HARNESS ?= ../shared/bench/peers
MULTI30K      ?= ../shared/data/multi30k
PEERS_WORK    ?= /tmp/seqattn-peers

bench-peers: setup
	mkdir -p $(PEERS_WORK)/multi30k
	for f in $(MULTI30K)/*.gz; do gunzip -c "$$f" > $(PEERS_WORK)/multi30k/$$(basename "$$f" .gz); done
	WORK_DIR=$(PEERS_WORK) bash $(PEERS_HARNESS)/setup.sh
	WORK_DIR=$(PEERS_WORK) DATA_DIR=$(PEERS_WORK)/multi30k RUN_DIR=$(PEERS_WORK)/runs bash $(PEERS_HARNESS)/run.sh
	$(OFFLINE) $(BIN)/python benchmarks/translation.py --from $(MULTI30K) \
		--peer-spm $(PEERS_HARNESS)/data/spm.model --peers $(PEERS_WORK)/runs/results.json --peers-same-run \
		--save-models $(PEERS_WORK)/seqattn-models
	$(OFFLINE) $(BIN)/python benchmarks/same_checkpoint.py --from $(MULTI30K) --models $(PEERS_WORK)/seqattn-models \
		--peers-work $(PEERS_WORK) --harness $(PEERS_HARNESS)

# Training throughput against OpenNMT-py, the toolkits alternating over three rounds, medians
# (one same-run ratio moves by up to 25% on a shared machine). Needs bench-peers' environments.
bench-rounds: setup
	$(OFFLINE) $(BIN)/python benchmarks/train_rounds.py --from $(MULTI30K) --peers-work $(PEERS_WORK) \
		--harness $(PEERS_HARNESS) --peer-spm $(PEERS_HARNESS)/data/spm.model

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
