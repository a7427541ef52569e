# LayerScope: `make run` and `make test` each create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
SAMPLE ?=

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TF_CPP_MIN_LOG_LEVEL := 3

.PHONY: run test lint bench samples clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "LayerScope needs $(PYTHON) on PATH (set PYTHON=...)." >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

run: $(STAMP)
	$(PY) main.py $(SAMPLE)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: lint
	QT_QPA_PLATFORM=offscreen $(VENV)/bin/pytest -q

bench: $(STAMP)
	$(PY) bench/open_large.py
	@for f in bench/*.py; do [ "$$f" = bench/open_large.py ] || $(PY) $$f || exit $$?; done

samples: $(STAMP)
	$(PY) assets/build_samples.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
