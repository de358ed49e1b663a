# `make demo` and `make test` work on a fresh machine: both install into .venv first (once).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo test test-slow lint format data bench clean

$(STAMP): pyproject.toml tools/install_torch.sh tools/install_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	bash tools/install_torch.sh $(PY)
	bash tools/install_deps.sh $(PY)
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/accelerate launch --config_file accelerate_config_cpu.yaml recipes/zeshel_som.py \
		--config recipes/configs/demo_som.yaml

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix . && $(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) outputs
