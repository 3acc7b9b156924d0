# The two commands a new user needs: `make demo` and `make test` (see README.md).
# Both create .venv in the checkout (reused when present) and install what they need.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
HOST   ?= 127.0.0.1
PORT   ?= 8000
# Queue names (config/queues.py; override with the same environment variables as the settings).
QUEUE_SCORING      ?= $(or $(VADI_QUEUE_SCORING),scoring)
QUEUE_BENCHMARKS   ?= $(or $(VADI_QUEUE_BENCHMARKS),benchmarks)
QUEUE_HOUSEKEEPING ?= $(or $(VADI_QUEUE_HOUSEKEEPING),housekeeping)
SCORING_CONCURRENCY ?= 2

.PHONY: demo test venv venv-dev browser lint mutation serve worker worker-scoring worker-gpu beat clean help

help:
	@echo "make demo   - install, train the algorithms on the synthetic suite, serve http://$(HOST):$(PORT)"
	@echo "make test   - install (incl. test tools and Chromium) and run the whole test suite"
	@echo "make lint   - ruff check . and the architecture contracts (lint-imports, see pyproject.toml)"
	@echo "make mutation MODULE=evaluation/scoring.py - mutation testing of one module against its own tests (mutmut)"
	@echo "make worker - run one Celery worker for every queue (development; needs CELERY_BROKER_URL)"
	@echo "make worker-scoring - a CPU worker: scoring + housekeeping queues (SCORING_CONCURRENCY=$(SCORING_CONCURRENCY))"
	@echo "make worker-gpu - one benchmark worker per GPU (scripts/gpu_workers.py; GPUs from VADI_GPUS or nvidia-smi)"
	@echo "make beat   - Celery beat: the stuck-job sweeper and benchmark dispatch, every minute"

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstall only when a requirements file changed.
$(VENV)/.installed: requirements.txt requirements-web.txt requirements-worker.txt | $(VENV)/bin/activate
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-web.txt requirements-worker.txt requirements-dev.txt | $(VENV)/bin/activate
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@ $(VENV)/.installed

venv: $(VENV)/.installed
venv-dev: $(VENV)/.installed-dev

# Headless Chromium for the browser tests (Debian's package; Playwright drives it).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  echo "Installing Chromium (Debian package) for the browser tests..."; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

demo: venv
	$(PY) manage.py migrate --noinput
	$(PY) manage.py setup_demo
	@echo "Serving the leaderboard on http://$(HOST):$(PORT)/ (Ctrl-C to stop)"
	$(PY) manage.py runserver --noreload $(HOST):$(PORT)

test: venv-dev browser
	$(PY) -m pytest $(PYTEST_ARGS)

lint: venv-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# Mutation testing of one module (a key of [tool.vadi-mutation.modules] in pyproject.toml) against
# its own tests; MUTATION_ARGS="--max-children 2 --fresh" to run in parallel or start over.
MODULE ?= evaluation/scoring.py
mutation: venv-dev
	nice -n 10 $(PY) scripts/mutation.py $(MODULE) $(MUTATION_ARGS)

serve: venv
	$(PY) manage.py runserver $(HOST):$(PORT)

# Development: one worker for every kind of work.
worker: venv
	$(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=1 \
	  -Q $(QUEUE_SCORING),$(QUEUE_BENCHMARKS),$(QUEUE_HOUSEKEEPING)

# Production: CPU workers score uploads (and run the sweeper); GPU machines run benchmark jobs.
worker-scoring: venv
	$(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=$(SCORING_CONCURRENCY) \
	  -Q $(QUEUE_SCORING),$(QUEUE_HOUSEKEEPING) -n scoring@%h

worker-gpu: venv
	$(PY) scripts/gpu_workers.py

beat: venv
	$(VENV)/bin/celery -A config beat --loglevel=INFO --schedule var/celerybeat-schedule

clean:
	rm -rf var staticfiles .pytest_cache
