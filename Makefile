# Two commands: `make book` and `make test`. Everything else is a step they share.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DATA_STAMP := data/.verified
CHAPTERS := $(sort $(wildcard book/[0-9]*.ipynb))
NBVAL_SANITIZE := tests/nbval_sanitize.cfg
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg

.PHONY: book test venv data chapters html unit smoke nbval lint bench clean

book: chapters
	$(MAKE) html

test: unit smoke nbval

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[book,test]'
	touch $@

# Re-verified (sha256) whenever the fetcher changes; a no-op when files are present and valid.
$(DATA_STAMP): $(STAMP) src/cnode/data.py
	$(BIN)/python -m cnode.data fetch
	touch $@

data: $(DATA_STAMP)

# Refresh every chapter's outputs in place with its default parameters (the book never executes code).
chapters: $(DATA_STAMP)
	@for nb in $(CHAPTERS); do \
	  echo "executing $$nb"; \
	  $(BIN)/papermill --cwd book --kernel python3 --log-level WARNING "$$nb" "$$nb" || exit 1; \
	done

html: $(STAMP)
	$(BIN)/jupyter-book build . -W --keep-going

unit: $(DATA_STAMP)
	$(BIN)/python -m pytest tests -m "not notebook"

smoke: $(DATA_STAMP)
	$(BIN)/python -m pytest tests -m notebook

nbval: $(DATA_STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider --nbval-lax --nbval-sanitize-with $(NBVAL_SANITIZE) \
	  --nbval-current-env $(CHAPTERS)

# Ratios of step times, memory, lambda_max accuracy and PGD throughput on this machine (a few minutes on 2
# cores); writes benchmarks/results/<device>.json, which chapter 5 reads. Trained models come from results/.
bench: $(DATA_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf _build
