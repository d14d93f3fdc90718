# The two set-up commands of the README: `make demo` and `make test`. Both work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test bench venv clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	# PyTorch is a test oracle only (never a runtime dependency). On our machines torch==2.13.0 is a
	# local CPU build; where it cannot be installed the peer tests skip.
	$(PY) -m pip install -q torch==2.13.0 || echo "torch not installed: PyTorch oracle tests will skip"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) examples/demo.py

test: $(STAMP)
	$(PY) -m pytest -n 2 -q tests

# The peers are benchmark-only installs, never kernelflow dependencies.
bench: $(STAMP)
	$(PY) -m pip install -q -e '.[bench]' jax jaxlib
	$(PY) -m bench

clean:
	rm -rf $(VENV) build *.egg-info
