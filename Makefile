# Two entry points, each doing its own set-up: `make demo` and `make test`.
PY := .venv/bin/python

.venv/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: .venv/.installed

demo: setup
	bash scripts/demo.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

.PHONY: setup demo test test-slow
