# The two commands of the README:
#   make demo   the main job: the whole ROMA experiment at CPU scale, offline
#   make test   the test suite, offline
# Both create or refresh .venv themselves (python3 -m venv + pip).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.roma-installed
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1
export HF_DATASETS_OFFLINE = 1
export TOKENIZERS_PARALLELISM = false

.PHONY: venv test demo lint clean

venv: $(STAMP)

# Reinstall whenever the pins change.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	$(PY) src/roma/envcheck.py  # refuses only a torchvision that cannot work beside torch
	touch $(STAMP)

test: venv
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/roma demo $(DEMO_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
