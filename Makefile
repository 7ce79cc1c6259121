# Two commands matter: `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
BUF := .tools/node_modules/.bin/buf

.PHONY: setup demo test lint typecheck buf-lint api-check generate check-generated pytest unit \
	contract integration test-clients deploy-check bench

setup:
	@bash scripts/setup.sh

demo: setup
	@$(VENV)/bin/quorum demo

test: setup lint typecheck api-check check-generated deploy-check test-clients pytest

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: setup
	$(VENV)/bin/mypy

buf-lint: setup
	$(BUF) lint

api-check: setup
	bash scripts/buf_checks.sh

deploy-check: setup
	bash scripts/check_deploy.sh

generate: setup
	bash scripts/generate.sh

check-generated: setup
	bash scripts/check_generated.sh

test-clients: setup
	bash scripts/test_clients.sh

pytest: setup
	@bash scripts/ensure_redis.sh
	$(VENV)/bin/pytest -q

unit: setup
	$(VENV)/bin/pytest -q tests/unit

contract: setup
	$(VENV)/bin/pytest -q tests/contract

integration: setup
	@bash scripts/ensure_redis.sh
	$(VENV)/bin/pytest -q tests/integration

bench: setup
	$(PY) -m bench.overhead
