# Two commands do all set-up on a fresh machine (only Python 3.11+ needed):
#   make demo   - create .venv, install morphoscope, run the main job on the bundled samples
#   make test   - create .venv, install morphoscope with test extras, run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch wheels: CPU or CUDA builds both work; override e.g. TORCH_SPEC="torch torchvision"
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: demo test install clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/morphoscope demo --out morphoscope-demo

test: $(VENV)/.installed
	bash scripts/install_browser_test_deps.sh || echo "browser tests will be skipped"
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
