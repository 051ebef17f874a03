# Two commands do everything: `make run` (set up + run the main job on the built-in sample)
# and `make test` (set up + run the fast tests; `make test-all` runs every test, as CI does).
# Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= configs/local.yaml
OUT    ?= out/local
SAMPLE := .cache/sample/sample.warc.gz

.PHONY: setup run test test-all sample bench clean browser native

setup: $(STAMP) native

# Compiled copies of the extractor's modules (operators/native.py): ~20 s when a source changed,
# nothing otherwise; without Cython or a compiler those modules run as Python (same output).
native: $(STAMP)
	@$(PY) -m flows.native build

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(SAMPLE): $(STAMP) flows/make_sample.py
	$(PY) -m flows.make_sample --out $(SAMPLE)

sample: $(SAMPLE)

run: $(SAMPLE) native
	$(PY) -m flows.crawl --config $(CONFIG) --output $(OUT)

test: $(STAMP) native
	$(PY) -m pytest -q -m "not slow" $(PYTEST_ARGS)

test-all: $(STAMP) native browser
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Headless Chromium (Debian's package) for the browser test of flows.show's HTML pages; installed
# when missing and apt-get can (root); otherwise that one test is skipped, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) || \
	      echo "make browser: apt-get could not install chromium; the browser test will be skipped"; \
	  else echo "make browser: no chromium and no root apt-get; the browser test will be skipped"; fi

clean:
	rm -rf $(VENV) .cache out operators/text/_native
