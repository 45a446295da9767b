PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install lock test demo lint bench clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Refresh requirements.lock from a fresh resolve of pyproject.toml (newest versions inside its bounds), in a
# throwaway venv; the header lines are kept. Run `make test` after it and commit both.
LOCK_VENV := .lock-venv
lock:
	rm -rf $(LOCK_VENV)
	$(PY) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(LOCK_VENV)/bin/python -m pip install --quiet -e '.[dev]'
	grep '^#' requirements.lock > requirements.lock.new
	$(LOCK_VENV)/bin/python -m pip freeze --exclude-editable | grep -vE '^(pip|setuptools|wheel)==' >> requirements.lock.new
	mv requirements.lock.new requirements.lock
	rm -rf $(LOCK_VENV)

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/clawback demo

lint: $(STAMP)
	$(BIN)/ruff check bot handlers workers prompts tests bench

bench: $(STAMP)
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) $(LOCK_VENV) .clawback build *.egg-info
