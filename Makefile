# The README's quick start: `make demo` and `make test`.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
OUT ?= out

.PHONY: demo test test-slow clean

$(VENV)/.installed: requirements.txt setup.py
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

.venv: $(VENV)/.installed

demo: .venv
	$(BIN)/python -m experiments.demo --out=$(OUT)

# The suite without the long learning checks (pytest.ini's `slow` marker); CI (.ci/run) runs both.
test: .venv
	$(BIN)/python -m pytest -q -n 2 --dist load -m "not slow" --durations=10 tests

test-slow: .venv
	$(BIN)/python -m pytest -q -n 2 --dist load -m slow tests

clean:
	rm -rf $(VENV) $(OUT)
