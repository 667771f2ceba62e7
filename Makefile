# Two entry points on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test gate install install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

run: install
	$(BIN)/genbench run --models all --dataset pelvic

test: install-dev
	$(BIN)/python -m pytest -q

# CI regression gate: a short, deterministic run checked against reports/thresholds-ci.toml.
GATE_OUT := .ci-runs
gate: install
	rm -rf $(GATE_OUT)
	$(BIN)/genbench run --models ddpm,wgan-gp --dataset pelvic --size 16 --steps 40 \
		--set ddpm.sample_steps=10 --no-figures --out $(GATE_OUT) -q
	$(BIN)/genbench check $(GATE_OUT)/pelvic/quick --thresholds reports/thresholds-ci.toml

clean:
	rm -rf $(VENV) $(GATE_OUT)
