# Two commands: `make book` and `make test`. Everything else is a step they share.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
LOCK   := requirements.lock
DATA_STAMP := data/.verified
# The chapters the book shows (_toc.yml); a chapter being written is not executed or checked until it is listed.
CHAPTERS := $(patsubst %,%.ipynb,$(shell grep -o 'book/[0-9][^ ]*' _toc.yml))
NBVAL_SANITIZE := tests/nbval_sanitize.cfg
export PYTHONHASHSEED := 0
export MPLBACKEND := Agg
# MathJax 3 (npm) is copied into the build so that the book reads offline; the tarball is sha256-checked.
MATHJAX_VERSION := 3.2.2
MATHJAX_SHA256  := 1b9c0a1c44df864e915690558e72adb9cc5203360daefd385084ced3b6c64c09
MATHJAX_TGZ     := $(VENV)/mathjax-$(MATHJAX_VERSION).tgz
MATHJAX         := _vendor/mathjax/tex-mml-chtml.js

.PHONY: book test check venv data chapters html unit smoke unit-smoke nbval browser browser-deps system-deps slurm \
        clean-tree mathjax lock \
        lint bench clean paper-grid

book: chapters
	$(MAKE) html

# `make check` first (seconds): a broken edit stops the suite before the minutes of training and notebooks. The
# training tests and smoke runs use both cores while the package manager installs Chromium and SLURM beside them
# (downloads, mostly waiting); the two re-executions of the chapters (nbval, clean-tree: light, one thread each)
# run side by side, as do the browser test and the SLURM smoke sweep (mostly waiting).
test: check
	$(MAKE) -j2 --output-sync=target system-deps unit-smoke
	OMP_NUM_THREADS=1 $(MAKE) -j2 --output-sync=target nbval clean-tree
	$(MAKE) -j2 --output-sync=target browser slurm

unit-smoke:
	$(MAKE) unit
	$(MAKE) smoke

# What a contributor runs after every edit: ruff, then the pure tests (algebra, tables, parameters, rules), no
# training, no notebooks, no browser.
check: $(DATA_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest tests -q -m "not notebook and not browser and not train"

venv: $(STAMP)

# The whole dependency tree is pinned in $(LOCK) (uv pip compile, see `make lock`); pip installs it, so PyTorch
# comes from the wheels on local disk where pip is configured for them.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# Regenerate the lock after changing a pin in pyproject.toml: uv resolves the whole tree for linux x86-64 and
# Python 3.11 whatever machine runs it; no index or find-links lines are written.
UV := .venv-uv/bin/uv
lock:
	test -x $(UV) || { $(PYTHON) -m venv .venv-uv && .venv-uv/bin/python -m pip install --quiet uv==0.13.9; }
	$(UV) pip compile pyproject.toml --extra book --extra test --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --no-emit-index-url --no-emit-find-links \
	  --custom-compile-command "make lock" -o $(LOCK)

# Re-verified (sha256) whenever the fetcher changes; a no-op when files are present and valid.
$(DATA_STAMP): $(STAMP) src/cnode/core/data.py
	$(BIN)/python -m cnode.core.data fetch
	touch $@

data: $(DATA_STAMP)

# Refresh every chapter's outputs in place with its default parameters (the book never executes code).
chapters: $(DATA_STAMP)
	@for nb in $(CHAPTERS); do \
	  echo "executing $$nb"; \
	  $(BIN)/papermill --cwd book --kernel python3 --log-level WARNING "$$nb" "$$nb" || exit 1; \
	  $(BIN)/python -m cnode.runs.nbclean "$$nb" || exit 1; \
	done

$(MATHJAX_TGZ): | $(STAMP)
	cd $(VENV) && npm pack --silent mathjax@$(MATHJAX_VERSION) > /dev/null
	echo "$(MATHJAX_SHA256)  $@" | sha256sum --check --quiet || { rm -f $@; echo "mathjax tarball: checksum mismatch"; exit 1; }

$(MATHJAX): $(MATHJAX_TGZ)
	rm -rf _vendor/mathjax && mkdir -p _vendor/mathjax
	tar -xzf $< -C _vendor/mathjax --strip-components=2 package/es5
	touch $@

mathjax: $(MATHJAX)

html: $(STAMP) $(MATHJAX)
	$(BIN)/jupyter-book build . -W --keep-going

unit: $(DATA_STAMP)
	$(BIN)/python -m pytest tests -m "train" --durations=8

smoke: $(DATA_STAMP)
	$(BIN)/python -m pytest tests -m notebook --durations=8

nbval: $(DATA_STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider --nbval-lax --nbval-sanitize-with $(NBVAL_SANITIZE) \
	  --nbval-current-env $(CHAPTERS)

# `make book` keeps the tree clean on any machine: a fresh clone of HEAD executes every chapter as `make chapters`
# does (this checkout's venv and data) and git must see no change.
clean-tree: $(DATA_STAMP)
	.ci/clean-tree

# Ratios of step times, memory, lambda_max accuracy and PGD throughput on this machine (a few minutes on 2
# cores); writes benchmarks/results/<this machine>.json (one file per machine; chapter 5 reads one of them). Trained models come from results/.
bench: $(DATA_STAMP)
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

# Every paper-scale run, evaluation, measurement and audit of the book (issue 13): cnode.runs.grid's one queue
# (PAPER_GRID: chapters 3, 6, 7, 4, 8 in that priority). Resumable: a rerun skips what results/paper holds and
# resumes an interrupted run from its checkpoint. Hours on a laptop CPU; on a cluster: `cnode sweep` (README).
GRID_ARGS ?= --workers 1 --nice --deadline-min 1440
paper-grid: $(DATA_STAMP)
	$(BIN)/python -m cnode grid $(GRID_ARGS)

# Debian's packages the tests need, as root (elsewhere one line says what to install): Chromium and its driver for
# the browser test; with system-deps also SLURM and munge for the SLURM smoke, in one call of the package manager.
BROWSER_PACKAGES := chromium chromium-driver
SYSTEM_PACKAGES := $(BROWSER_PACKAGES) slurmctld slurmd slurm-client munge
APT_INSTALL = if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
  $(1) > /dev/null; else echo "the tests need Debian's packages $(1): sudo apt-get install $(1)"; exit 1; fi
HAVE_BROWSER = [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]
browser-deps:
	@$(HAVE_BROWSER) || { $(call APT_INSTALL,$(BROWSER_PACKAGES)); }
system-deps:
	@$(HAVE_BROWSER) && command -v slurmctld > /dev/null || { $(call APT_INSTALL,$(SYSTEM_PACKAGES)); }

# Build the HTML from the committed notebooks and open every page in headless Chromium; screenshots land in
# _build/screenshots/.
browser: html browser-deps
	$(BIN)/python -m pytest tests -m browser

# A one-node SLURM cluster from Debian's packages (root), then a smoke sweep through `--executor slurm`.
slurm: $(DATA_STAMP)
	.ci/slurm-smoke

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf _build _vendor
