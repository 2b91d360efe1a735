# Two commands: `make train` (the quickstart experiment) and `make test` (the test suite).
# Both create the virtual environment first when it is missing.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: train test test-slow mutation bench venv clean

$(STAMP): pyproject.toml scripts/setup_venv.sh
	VENV=$(VENV) bash scripts/setup_venv.sh
	touch $(STAMP)

venv: $(STAMP)

train: $(STAMP)
	$(PY) train.py --preset quickstart $(ARGS)

# The fast suite on WORKERS processes (pytest-xdist; one per core here), a test file per
# worker at a time so a file's module fixtures (a local Ray instance) stay with its tests.
WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(WORKERS) --dist loadfile $(ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow $(ARGS)

# Mutation testing of one core module against its fast tests (docs/TESTING.md has the scores
# and the module list):  make mutation MODULE=agents/dqn.py [JOBS=2]
MODULE ?= train.py
JOBS ?= 1
mutation: $(STAMP)
	$(PY) scripts/mutation.py $(MODULE) --max-children $(JOBS) $(ARGS)

bench: $(STAMP)
	VENV=$(VENV) EXTRAS=dev,mujoco,bench bash scripts/setup_venv.sh
	@echo "benchmarks: see benchmarks/README or benchmarks/RESULTS.md for the commands"

clean:
	rm -rf $(VENV) runs .pytest_cache
