# notifier: `make dev` runs the service, `make test` runs every check.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: dev test check lint format typecheck bench fuzz soak install system-deps test-system-deps clean docker-check

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

test-system-deps:
	@scripts/ensure-system-deps --browser

system-deps:
	@scripts/ensure-system-deps

dev: install system-deps
	$(VENV)/bin/notifier dev

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck: install
	$(VENV)/bin/mypy

# Each xdist worker runs its own session fixtures (Redis, SMTP server, Celery worker) on free
# ports; --dist loadfile keeps a file's tests, and its module fixtures, on one worker.
TEST_WORKERS ?= 2

test: install test-system-deps lint typecheck
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=20

check: test

# The schemathesis run of `make test` at release strength (a few minutes): many more examples
# per API operation; FUZZ_SEED=<n> tries another seed.
FUZZ_MAX_EXAMPLES ?= 300
fuzz: install test-system-deps
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) $(PY) -m pytest -q --timeout 1800 \
		tests/e2e/api/test_hardening_fuzz.py

# The repeated whole-worker SIGKILL test of `make test` at full strength: 20 rounds (bursts of
# 1,000 on Redis, 300 on RabbitMQ, both brokers; ten minutes or so); FETCH_WINDOW_SEED=<n>
# replays a run's random waits.
FETCH_WINDOW_ROUNDS ?= 20
soak: install test-system-deps
	FETCH_WINDOW_ROUNDS=$(FETCH_WINDOW_ROUNDS) $(PY) -m pytest -q -s --timeout 3600 \
		tests/reliability/test_fetch_window.py

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: install system-deps
	$(PY) -m pip install -q -e '.[dev,bench]'
	$(PY) bench/run.py

# Builds and runs the real Docker stack (minutes; needs root for dockerd/debootstrap).
docker-check:
	scripts/docker-check

clean:
	rm -rf $(VENV) .notifier .pytest_cache .mypy_cache .ruff_cache
