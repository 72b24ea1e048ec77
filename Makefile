# The two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean

$(STAMP): setup.py
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow" tests

demo: $(STAMP)
	$(VENV)/bin/python -m mdm.demo

clean:
	rm -rf $(VENV) *.egg-info
