# Two entry points for a fresh machine (Python 3.11, no GPU):
#   make demo   set up .venv and run the whole pipeline on params/demo.yaml
#   make test   set up .venv (+ headless Chromium) and run the test suite
# Both are idempotent: the environment is reused until pyproject.toml changes.
PYTHON ?= python3.11
VENV   := .venv
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: setup demo test test-fast browser clean-runs

$(STAMP): pyproject.toml
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: setup
	$(VENV)/bin/yeay-nb pipeline -f params/demo.yaml

browser:
	bash scripts/install-browser.sh

test: setup browser
	$(VENV)/bin/python -m pytest -q

test-fast: setup
	$(VENV)/bin/python -m pytest -q -m "not slow and not browser"

clean-runs:
	rm -rf runs work
