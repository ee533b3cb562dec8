# Quick start: `make demo` and `make test`. Both create .venv and install pinned dependencies.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint web bench-hashing bench-index bench-index-sync bench-index-stall bench-index-delta bench-shortlist-stall bench-shortlist-shard bench-service bench-robustness bench-derivatives bench-chance-fits bench-derivative-scale bench-investigate bench-startup bench-catch-up bench-protect-page bench-exchange bench-review screenshots fuzz crash soak clean

$(STAMP): pyproject.toml requirements/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade "pip==25.3"
	$(BIN)/pip install --quiet -c requirements/constraints.txt -e ".[dev]"
	touch $(STAMP)

# The protect page: npm's pinned packages (web/package-lock.json), built into the package.
WEB_STAMP := web/node_modules/.installed
PAGE := src/counterfake/pages/protect/index.html
# Debian's Chromium, for the headless-browser tests (installed once, as root).
CHROMIUM := /usr/bin/chromium

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

$(PAGE): $(WEB_STAMP) $(STAMP) web/build.mjs $(wildcard web/src/*)
	node web/build.mjs --cascade "$$($(BIN)/python -c 'import cv2, os; print(os.path.join(cv2.data.haarcascades, "haarcascade_frontalface_default.xml"))')"

web: $(PAGE)

$(CHROMIUM):
	apt-get install -y --no-install-recommends chromium || \
		(apt-get update && apt-get install -y --no-install-recommends chromium)

demo: $(STAMP)
	$(BIN)/counterfake demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

test: lint web $(CHROMIUM)
	cd web && npm test
	$(BIN)/pytest

bench-hashing: $(STAMP)
	$(BIN)/python benchmarks/hashing.py --corpus ../shared/corpus/photos

bench-index: $(STAMP)
	for size in 1M 10M; do for dist in uniform realistic; do \
		$(BIN)/python benchmarks/index.py --size $$size --distribution $$dist || exit 1; done; done

bench-index-sync: $(STAMP)
	$(BIN)/python benchmarks/index_sync.py --size 10M --database sqlite

bench-index-stall: $(STAMP)
	$(BIN)/python benchmarks/index_stall.py --size 10M --seconds 90

bench-index-delta: $(STAMP)
	$(BIN)/python benchmarks/index_delta.py --size 10M --rate 1000

bench-shortlist-stall: $(STAMP)
	$(BIN)/python benchmarks/shortlist_stall.py --corpus ../shared/corpus/photos --photos 30000

bench-shortlist-shard: $(STAMP)
	$(BIN)/python benchmarks/shortlist_shard.py --corpus ../shared/corpus/photos --photos 1000000

bench-service: $(STAMP)
	$(BIN)/python benchmarks/service.py --corpus ../shared/corpus/photos --entries 100000

bench-robustness: $(STAMP)
	$(BIN)/python benchmarks/robustness.py --corpus ../shared/corpus/photos --photos 200

bench-derivatives: $(STAMP)
	$(BIN)/python benchmarks/derivatives.py --corpus ../shared/corpus/photos --half report

bench-chance-fits: $(STAMP)
	$(BIN)/python benchmarks/chance_fits.py --corpus ../shared/corpus/photos

bench-derivative-scale: $(STAMP)
	$(BIN)/python benchmarks/derivative_scale.py --corpus ../shared/corpus/photos --photos 100000

bench-catch-up: $(STAMP)
	$(BIN)/python benchmarks/catch_up.py --entries 100000

bench-startup: $(STAMP)
	$(BIN)/python benchmarks/startup.py --corpus ../shared/corpus/photos

bench-investigate: $(STAMP)
	$(BIN)/python benchmarks/investigate.py --corpus ../shared/corpus/photos --scale 100000

bench-protect-page: web $(CHROMIUM)
	$(BIN)/python benchmarks/protect_page.py --corpus ../shared/corpus/photos --screenshots docs

bench-exchange: $(STAMP)
	$(BIN)/python benchmarks/exchange.py --entries 1000000 --increment 10000

clean:
	rm -rf $(VENV) build *.egg-info

bench-review: $(STAMP)
	$(BIN)/python benchmarks/review.py --cases 100000 --reviewers 8

# The review pages' screenshots in docs/, taken by their Chromium tests.
screenshots: $(STAMP) $(CHROMIUM)
	COUNTERFAKE_SCREENSHOTS=docs $(BIN)/pytest -q tests/pages/test_review_pages.py

# Coverage-guided fuzzing (atheris) of every parser of untrusted input, FUZZ_SECONDS each.
# Each works in .fuzz/TARGET, seeded from tests/fuzz/seeds/TARGET; findings land there.
FUZZ_SECONDS ?= 120
FUZZ_TARGETS := image signature_file import_lines ncmec stopncii telegram request_bodies
fuzz: $(STAMP)
	for t in $(FUZZ_TARGETS); do \
		mkdir -p .fuzz/$$t && cp tests/fuzz/seeds/$$t/* .fuzz/$$t/ && \
		(cd .fuzz && PYTHONPATH=$(CURDIR) ../$(BIN)/python -m tests.fuzz.run $$t \
			-max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=2048 \
			-print_final_stats=1 $$t) || exit 1; \
	done

# kill -9 mid-write, 50 times each: a running service, bulk adds and imports, intake, exchange fetches.
crash: $(STAMP)
	COUNTERFAKE_KILLS=50 $(BIN)/pytest -q tests/faults/test_kill.py tests/faults/test_kill_jobs.py \
		tests/exchange/test_follow.py -k killed

# The service for 30 minutes at 80% of its peak, on SQLite (SOAK_DATABASE_URL for PostgreSQL).
soak: $(STAMP)
	$(BIN)/python benchmarks/soak.py --minutes 30 $(if $(SOAK_DATABASE_URL),--database-url $(SOAK_DATABASE_URL))
