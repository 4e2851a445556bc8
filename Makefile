# tunesmith: the two commands a new user needs.
#   make demo   creates .venv, installs everything, finetunes MiniLM on rotten-tomatoes with LoRA,
#               evaluates it against its baseline and logs to MLflow (./mlflow.db).
#   make test   creates .venv, installs everything, runs ruff, mypy, the import contracts and
#               every test.
# Each install step leaves a stamp in .venv/, so a second run skips what is installed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
PIP_FLAGS := --disable-pip-version-check --progress-bar off -q
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test test-fast lint typecheck browser bench clean

install: $(VENV)/.stamp-assets

$(VENV)/.stamp-venv:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIP_FLAGS) --upgrade pip
	@touch $@

# torch first: on these machines torch==2.13.0 is the local CPU wheel; anything else pulls CUDA.
$(VENV)/.stamp-torch: $(VENV)/.stamp-venv constraints.txt
	$(PIP) install $(PIP_FLAGS) torch==2.13.0
	@touch $@

$(VENV)/.stamp-project: $(VENV)/.stamp-torch pyproject.toml constraints.txt
	$(PIP) install $(PIP_FLAGS) -c constraints.txt -e ".[dev]"
	@touch $@

$(VENV)/.stamp-assets: $(VENV)/.stamp-project assets-requirements.txt
	$(PIP) install $(PIP_FLAGS) --no-deps -r assets-requirements.txt
	@touch $@

demo: install
	$(VENV)/bin/tunesmith demo

# The browser tests (report.html, the review app) drive Debian's chromium through chromium-driver.
# As root on Debian (CI) they are installed when missing; elsewhere those tests skip with the reason.
browser:
	@if [ "$$(id -u)" = 0 ] && [ -f /etc/debian_version ] && command -v apt-get >/dev/null 2>&1 && \
	    { ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; }; then \
	  echo "installing chromium and chromium-driver for the browser tests"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
	    || echo "note: could not install chromium; the browser tests will skip"; \
	fi

# -n 2: the CI machine has 2 cores; integration tests that train are marked and spread evenly.
test: install lint typecheck browser
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -n 2 --dist loadgroup -q

test-fast: install
	$(PY) -m pytest -n 2 -q -m "not integration"

lint: install
	$(VENV)/bin/ruff check src tests bench

# mypy on src/ as configured in pyproject.toml ([tool.mypy]): 2-4 min cold on a busy 2-core
# machine (25-40 s of CPU), seconds once .mypy_cache holds the libraries.
typecheck: install
	$(PY) -m mypy

clean:
	rm -rf $(VENV) runs mlflow.db mlruns
