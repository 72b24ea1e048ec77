# The two commands: `make demo` and `make test` (and `make studies`, the paper's four studies at
# CPU scale). All create .venv on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
# Debian packages holding the English prose of the demo's text set (mdm/demo_data/text.py reads
# them, with the standard library's pydoc topics; keep the two lists in step), and one file
# each installs: when espeak-ng or one of them is missing, the install runs system-deps.
TEXT_PACKAGES := fortunes fortunes-min dict-gcide dict-devil dict-jargon
TEXT_FILES := /usr/share/games/fortunes/fortunes /usr/share/games/fortunes/computers \
	/usr/share/dictd/gcide.index /usr/share/dictd/devil.index /usr/share/dictd/jargon.index
HAVE_SYSTEM_DEPS := command -v espeak-ng >/dev/null 2>&1 && ls $(TEXT_FILES) >/dev/null 2>&1

.PHONY: demo showcase sampling-defaults studies test test-fast install clean system-deps

$(STAMP): setup.py
	@$(HAVE_SYSTEM_DEPS) || $(MAKE) --no-print-directory system-deps
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
	@$(HAVE_SYSTEM_DEPS) || $(MAKE) --no-print-directory system-deps
	$(VENV)/bin/python -m launch.demo

# One tri-modal model that does every task (launch/showcase.py), on the demo data `make demo`
# builds (built here too when missing); `sampling-defaults` adds the sampling study on it.
showcase: $(STAMP)
	@$(HAVE_SYSTEM_DEPS) || $(MAKE) --no-print-directory system-deps
	$(VENV)/bin/python -m launch.showcase

sampling-defaults: $(STAMP)
	@$(HAVE_SYSTEM_DEPS) || $(MAKE) --no-print-directory system-deps
	$(VENV)/bin/python -m launch.showcase --study

# The paper's studies at CPU scale (launch/studies.py): batch size / SDE, noise schedules,
# mixing, anti-masking; reuses the demo data and every finished run. STUDIES_ARGS passes
# options, e.g. STUDIES_ARGS="--data /tmp/data --only batch".
studies: $(STAMP)
	@$(HAVE_SYSTEM_DEPS) || $(MAKE) --no-print-directory system-deps
	$(VENV)/bin/python -m launch.studies $(STUDIES_ARGS)

clean:
	rm -rf $(VENV) *.egg-info

# Debian's espeak-ng synthesises the demo speech; the text packages (TEXT_PACKAGES, above:
# fortunes, Webster's 1913 dictionary, the Devil's Dictionary, the Jargon File; dict-* bring
# dictd along) hold the demo's English prose. Installed when we are root with apt-get;
# otherwise a note says how (the demo build stops with a clear error naming the same command).
system-deps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  apt-get install -y -q espeak-ng >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q espeak-ng >/dev/null 2>&1) || \
	  echo "note: could not install espeak-ng; run: sudo apt-get install espeak-ng"; \
	  apt-get install -y -q --no-install-recommends $(TEXT_PACKAGES) >/dev/null 2>&1 || \
	  (apt-get update -q >/dev/null 2>&1 && \
	   apt-get install -y -q --no-install-recommends $(TEXT_PACKAGES) >/dev/null 2>&1) || \
	  echo "note: could not install the demo's text packages; run: sudo apt-get install $(TEXT_PACKAGES)"; \
	else \
	  command -v espeak-ng >/dev/null 2>&1 || \
	    echo "note: espeak-ng is missing; run: sudo apt-get install espeak-ng"; \
	  ls $(TEXT_FILES) >/dev/null 2>&1 || \
	    echo "note: the demo's text packages are missing (apt-get not available or not root); run: sudo apt-get install $(TEXT_PACKAGES)"; \
	fi
