# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck bench bench-scale clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -r requirements-dev.txt
	@touch $(STAMP)

## run: the whole system (web :8000, worker, WeChat sandbox :8900, SQLite, local Redis; other ports: HONGLI_RUN_* in README)
run: $(STAMP)
	@scripts/run.sh

## test: throwaway PostgreSQL + Redis, then ruff, mypy and the whole pytest suite
test: $(STAMP)
	@scripts/test.sh

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy

## bench: side-by-side throughput ratios (see bench/README.md)
bench: $(STAMP)
	@scripts/with-services.sh $(VENV)/bin/python -m bench $(ARGS)

## bench-scale: one instance vs two vs two behind PgBouncer, with where the CPU went (docs/scaling.md)
bench-scale: $(STAMP)
	@scripts/with-services.sh $(VENV)/bin/python -m bench.scale $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
