# codeexec developer tasks. `make demo` and `make test` set themselves up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# No registry is reachable on CI machines: sessions build on an image made from
# Debian packages (executor_image/make_base_image.sh). Real users keep python:3.12-slim.
export CODEEXEC_BASE_IMAGE ?= codeexec-base:bookworm

# A second engine in its own network namespace (root): tests/integration/test_remote_engine.py
# starts it itself; this target is for trying it by hand.
.PHONY: help venv engine engine2 image podman setup npm-clients demo check lint types unit test test-fast test-pythons bench docs clean

help:
	@echo "make demo   - set up and run a session end to end"
	@echo "make test   - every test, Docker ones included"
	@echo "make check  - lint, types, unit tests (no Docker)"
	@echo "make test-pythons - unit and end-to-end tests on Python 3.10 and 3.13"
	@echo "make bench  - benchmarks (docs/performance.md)"
	@echo "make docs   - regenerate docs/cli.md"
	@echo "make image  - build the offline base image"
	@echo "make podman - install podman and give it the base image (podman tests)"
	@echo "make npm-clients - install the pinned MCP clients the tests drive (npm ci)"

$(BIN)/codeexec: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/codeexec

engine:
	bash scripts/ensure_docker.sh

engine2: image
	bash scripts/second_engine.sh start

image: engine
	bash executor_image/make_base_image.sh "$(CODEEXEC_BASE_IMAGE)"

# podman beside Docker for tests/integration/test_podman.py (root, Debian packages).
podman: image
	bash scripts/ensure_podman.sh "$(CODEEXEC_BASE_IMAGE)"

setup: venv image

# The outside MCP clients the tests drive (tests/mcp_clients): the TypeScript SDK and
# the Inspector CLI, pinned by the lockfile; node and npm come from Debian.
NPM_CLIENTS := tests/mcp_clients/node_modules/.package-lock.json
$(NPM_CLIENTS): tests/mcp_clients/package-lock.json tests/mcp_clients/package.json
	bash scripts/ensure_npm_clients.sh

npm-clients: $(NPM_CLIENTS)

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

test: setup podman npm-clients
	$(BIN)/pytest -q --require-docker

test-fast: setup podman npm-clients
	$(BIN)/pytest -q --require-docker -m "not slow"

# The lowest and highest supported Pythons, each in its own .venv-3.X
# (scripts/test_pythons.sh says where the interpreters come from).
test-pythons: setup npm-clients
	bash scripts/test_pythons.sh

bench: setup npm-clients
	$(BIN)/python -m tests.benchmarks.run --heavy

docs: venv
	$(BIN)/python scripts/gen_cli_docs.py > docs/cli.md

clean:
	rm -rf $(VENV) $(VENV)-3.* build dist .pytest_cache .mypy_cache .ruff_cache
