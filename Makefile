# Quick start: `make demo` and `make test`. Both create .venv and install pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench-hashing bench-index bench-index-sync bench-service bench-robustness bench-derivatives bench-derivative-scale bench-investigate bench-startup bench-catch-up clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/counterfake demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

bench-hashing: $(STAMP)
	$(BIN)/python benchmarks/hashing.py --corpus ../shared/corpus/photos

bench-index: $(STAMP)
	for size in 1M 10M; do for dist in uniform realistic; do \
		$(BIN)/python benchmarks/index.py --size $$size --distribution $$dist || exit 1; done; done

bench-index-sync: $(STAMP)
	$(BIN)/python benchmarks/index_sync.py --size 10M --database sqlite

bench-service: $(STAMP)
	$(BIN)/python benchmarks/service.py --corpus ../shared/corpus/photos --entries 100000

bench-robustness: $(STAMP)
	$(BIN)/python benchmarks/robustness.py --corpus ../shared/corpus/photos --photos 200

bench-derivatives: $(STAMP)
	$(BIN)/python benchmarks/derivatives.py --corpus ../shared/corpus/photos --half report

bench-derivative-scale: $(STAMP)
	$(BIN)/python benchmarks/derivative_scale.py --corpus ../shared/corpus/photos --photos 100000

bench-catch-up: $(STAMP)
	$(BIN)/python benchmarks/catch_up.py --entries 100000

bench-startup: $(STAMP)
	$(BIN)/python benchmarks/startup.py --corpus ../shared/corpus/photos

bench-investigate: $(STAMP)
	$(BIN)/python benchmarks/investigate.py --corpus ../shared/corpus/photos --scale 100000

clean:
	rm -rf $(VENV) build *.egg-info
