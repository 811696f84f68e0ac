# The README's two commands: `make book` builds the site, `make test` runs every test.
# Both create the virtual environment in .venv and install what they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: book test lint bench mutants clean test-trl-versions

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

# The TRL releases the bridge is tested on (companion.integrations.trl.TESTED_TRL_VERSIONS; a
# test keeps the two equal). `make test` uses the newest, pinned in pyproject's `scale` extra;
# this target runs the bridge's tests under each, one environment per release in
# $(TRL_VENVS)/<version>. Each sees the book environment's packages (torch, transformers, ...)
# through a .pth file (the book environment's pip installs into it) and gets only its own trl
# wheel, so nothing large is downloaded and torch stays the book's.
TRL_VERSIONS := 1.15.0 1.16.0
TRL_VENVS ?= .trl-versions
TRL_TESTS ?= tests/test_trl_bridge.py tests/test_trl_maze.py

test-trl-versions: $(STAMP)
	@set -e; base=$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	for version in $(TRL_VERSIONS); do \
	  venv=$(TRL_VENVS)/$$version; \
	  if [ ! -x $$venv/bin/python ]; then \
	    $(PY) -m venv --without-pip $$venv; \
	    site=$$($$venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	    echo "import site; site.addsitedir('$$base')" > $$site/book-environment.pth; \
	    $(PY) -m pip --python $$venv/bin/python install -q --no-deps "trl==$$version"; \
	  fi; \
	  $(PY) -m pip --python $$venv/bin/python check; \
	  $$venv/bin/python -c "import sys, trl; assert trl.__version__ == sys.argv[1], trl.__version__" $$version; \
	  echo "== trl $$version =="; \
	  PYTHONPATH=$(CURDIR) $$venv/bin/python -m pytest -p no:nbval -o addopts="" -q $(TRL_TESTS); \
	done

lint: $(STAMP)
	$(VENV)/bin/ruff check companion tests benchmarks book
	$(VENV)/bin/ruff format --check companion tests benchmarks book

bench: $(STAMP)
	$(PY) benchmarks/estimators.py
	$(PY) benchmarks/classification.py
	$(PY) benchmarks/maze.py
	$(PY) benchmarks/trl_generation.py

# Mutation testing, not part of `make test`: mutmut (configured in pyproject.toml) changes the
# code in MUTATE one small edit at a time and runs the unit tests against each mutant; a mutant
# that no test notices is listed by `mutmut results` (inspect one with `mutmut show NAME`).
# The default, the core modules, takes about 17 minutes on 2 cores (tests/mutation_testing.md),
# against the core's own unit tests; `make mutants MUTATE=companion/` mutates everything and
# adds the experiments' tests (many hours). Any list of files or folders works, e.g. MUTATE=companion/passk.py.
CORE_MODULES := $(patsubst %,companion/%.py,estimators objectives passk exact _checks runtime)
MUTATE ?= $(CORE_MODULES)
ifeq ($(strip $(MUTATE)),$(strip $(CORE_MODULES)))
MUTANT_PYTEST_ADDOPTS := --ignore-glob='tests/test_classification*.py' \
	--ignore-glob='tests/test_maze*.py' --ignore-glob='tests/test_trl*.py'
endif
MUTANT_NAMES = $(foreach path,$(MUTATE),'$(subst /,.,$(patsubst %.py,%,$(patsubst %/,%,$(path)))).*')

mutants: $(STAMP)
	rm -rf mutants
	ulimit -v 8000000; PYTEST_ADDOPTS="$(MUTANT_PYTEST_ADDOPTS)" OMP_NUM_THREADS=1 \
		$(VENV)/bin/mutmut run --max-children 2 $(MUTANT_NAMES)
	$(VENV)/bin/mutmut results

clean:
	rm -rf _build mutants
