# Entry points, each doing its own set-up: `make demo`, `make test`, `make train-demo`.
PY := .venv/bin/python

.venv/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

setup: .venv/.installed

demo: setup
	bash scripts/demo.sh

train-demo: setup
	bash scripts/train_demo.sh

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

.PHONY: setup demo train-demo test test-slow
