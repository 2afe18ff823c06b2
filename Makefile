# codeexec developer tasks. `make demo` and `make test` set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# No registry is reachable on CI machines: sessions build on an image made from
# Debian packages (executor_image/make_base_image.sh). Real users keep python:3.12-slim.
export CODEEXEC_BASE_IMAGE ?= codeexec-base:bookworm

.PHONY: help venv engine image setup demo check lint types unit test test-fast bench docs clean

help:
	@echo "make demo   - set up and run a session end to end"
	@echo "make test   - every test, Docker ones included"
	@echo "make check  - lint, types, unit tests (no Docker)"
	@echo "make bench  - benchmarks (docs/performance.md)"
	@echo "make docs   - regenerate docs/cli.md"
	@echo "make image  - build the offline base image"

$(BIN)/codeexec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/codeexec

engine:
	bash scripts/ensure_docker.sh

image: engine
	bash executor_image/make_base_image.sh "$(CODEEXEC_BASE_IMAGE)"

setup: venv image

demo: setup
	$(BIN)/python examples/demo.py

lint: venv
	$(BIN)/ruff check codeexec executor_image tests scripts examples
	$(BIN)/ruff format --check codeexec executor_image tests scripts examples

types: venv
	$(BIN)/mypy

unit: venv
	$(BIN)/pytest -q -m "not docker"

check: lint types unit

test: setup
	$(BIN)/pytest -q --require-docker

test-fast: setup
	$(BIN)/pytest -q --require-docker -m "not slow"

bench: setup
	$(BIN)/python -m tests.benchmarks.run

docs: venv
	$(BIN)/python scripts/gen_cli_docs.py > docs/cli.md

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
