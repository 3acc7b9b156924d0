# The two commands a new user needs: `make demo` and `make test` (see README.md).
# Both create .venv in the checkout (reused when present) and install what they need.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: demo test venv venv-dev browser lint serve worker clean help

help:
	@echo "make demo   - install, train the algorithms on the synthetic suite, serve http://$(HOST):$(PORT)"
	@echo "make test   - install (incl. test tools and Chromium) and run the whole test suite"
	@echo "make lint   - ruff check . and the architecture contracts (lint-imports, see pyproject.toml)"
	@echo "make worker - run a Celery worker (needs CELERY_BROKER_URL)"

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Reinstall only when a requirements file changed.
$(VENV)/.installed: requirements.txt | $(VENV)/bin/activate
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/activate
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

serve: venv
	$(PY) manage.py runserver $(HOST):$(PORT)

worker: venv
	$(VENV)/bin/celery -A config worker --loglevel=INFO --concurrency=1

clean:
	rm -rf var staticfiles .pytest_cache
