# The README's two commands: `make book` builds the site, `make test` runs every test.
# Both create the virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test lint bench clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "Python >= 3.11 is required"'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[book,scale,test]"
	touch $(STAMP)

book: $(STAMP)
	$(PY) scripts/execute_notebooks.py --missing
	$(VENV)/bin/jupyter-book build . -W -n --keep-going
	@echo "Open _build/html/index.html in a browser."

test: book
	$(PY) -m pytest -n 2 --dist loadfile

lint: $(STAMP)
	$(VENV)/bin/ruff check companion tests benchmarks book
	$(VENV)/bin/ruff format --check companion tests benchmarks book

bench: $(STAMP)
	$(PY) benchmarks/estimators.py
	$(PY) benchmarks/classification.py
	$(PY) benchmarks/maze.py
	$(PY) benchmarks/trl_generation.py

clean:
	rm -rf _build
