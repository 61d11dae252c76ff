# tlbench: the two commands a user needs.
#   make study   set up .venv, run the default (offline) study, write report.html
#   make test    set up .venv, run the test suite (the docs build and its browser check included)
#   make docs    build the documentation site (mkdocs-material, --strict) into site/
#   make config-reference  regenerate docs/config.md from the study config's JSON schema
#   make results run the five measured seed studies on ../shared (hours on 2 cores)
#                and regenerate docs/results.md from their outputs
#   make results-pages  rebuild docs/results.md and each section from its committed evidence
#                (docs/results/<name>.evidence.zip): no training, a minute or two
#   make quickstart-page  after `make study`: the quickstart's generated section of
#                docs/results.md (docs/results/quickstart.md; docs/measured.md points to it)
# Everything is installed from the package registries into .venv; nothing else is needed.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CORES  ?= all
CONFIG ?= config.yaml
PYTEST_ARGS ?=
# make test: pytest-xdist workers, one per core (at most TEST_MAX_WORKERS: each holds a
# TensorFlow). --dist loadfile keeps each test file on one worker, so a file's module-scoped
# fixtures (trained tiny models, study outputs, the real SLURM cluster of test_slurm.py) are
# built once. (xdist_group marks/loadgroup do not group under pytest 9 with pytest-xdist
# 3.8: xdist renames item._nodeid, which pytest 9 no longer reads.)
TEST_WORKERS ?= auto
TEST_MAX_WORKERS ?= 4
SHARED ?= $(abspath ../shared)
MEASURED ?= $(sort $(wildcard configs/measured/seed*.yaml))

.PHONY: study test lint venv clean results results-pages quickstart-page docs config-reference

venv: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-no-deps.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	$(BIN)/pip install --quiet --no-deps -r requirements-no-deps.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

study: $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --report report.html

# One study after another (each uses all cores); each ends by rewriting docs/results.md.
results: $(VENV)/.installed
	for config in $(MEASURED); do \
	  KERAS_HOME=$(SHARED)/keras PATH="$(abspath $(BIN)):$$PATH" \
	    $(BIN)/snakemake --cores $(CORES) --configfile $$config || exit 1; \
	done

# Every section that has committed evidence, and the page, rebuilt from the evidence alone.
results-pages: $(VENV)/.installed
	PYTHONPATH=src $(BIN)/python -m tlbench.report.pages.results_pages

# The quickstart (config.yaml) with a results_section: only the section and the page are
# new jobs after `make study` (tlbench.report.pages.studies).
QUICKSTART_SECTION := results_section={"title": "Offline quickstart: digits with 20 labelled images per class, transfer from a fractal-pretrained CNN", "page": "docs/results/quickstart.md"}

quickstart-page: $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG) --config '$(QUICKSTART_SECTION)'

test: $(VENV)/.installed
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -ra -n $(TEST_WORKERS) --maxprocesses $(TEST_MAX_WORKERS) --dist loadfile $(PYTEST_ARGS)

docs: $(VENV)/.installed
	$(BIN)/mkdocs build --strict

config-reference: $(VENV)/.installed
	PYTHONPATH=src $(BIN)/python -m tlbench.report.pages.config_reference docs/config.md

# lint-imports: the layers contract of pyproject.toml ([tool.importlinter]; docs/ARCHITECTURE.md)
lint: $(VENV)/.installed
	$(BIN)/ruff check src tests scripts benchmarks
	$(BIN)/ruff format --check src tests scripts benchmarks
	$(BIN)/lint-imports
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --lint

clean:
	rm -rf results .snakemake report.html report.zip site
