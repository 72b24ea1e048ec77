# The two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install clean system-deps

$(STAMP): setup.py
	@command -v espeak-ng >/dev/null 2>&1 || $(MAKE) --no-print-directory system-deps
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -q --durations=15 tests

test-fast: $(STAMP)
	$(VENV)/bin/python -m pytest -q -m "not slow" tests

demo: $(STAMP)
	$(VENV)/bin/python -m launch.demo

clean:
	rm -rf $(VENV) *.egg-info

# Debian's espeak-ng synthesises the demo speech. Installed when we are root with apt-get;
# otherwise a note says how (the demo generator raises a clear error without it).
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get install -y -q espeak-ng >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q espeak-ng >/dev/null 2>&1) || \
	  echo "note: could not install espeak-ng; run: sudo apt-get install espeak-ng"; \
	else echo "note: espeak-ng is missing; run: sudo apt-get install espeak-ng"; fi
