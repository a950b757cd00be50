# Two commands do all set-up on a fresh machine (only Python 3.11+ needed):
#   make demo   - create .venv, install morphoscope, run the main job on the bundled samples
#   make test   - create .venv, install morphoscope with every extra and the test tools, build the
#                 documentation site (mkdocs build --strict) and run the test suite
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch: where no NVIDIA GPU is found (no nvidia-smi) the CPU build is tried first from PyTorch's
# CPU index (~0.2 GB installed instead of ~5 GB with the CUDA libraries); where that index cannot
# be reached, PyPI's build is installed, which runs on CPUs as well (docs/install.md).
# TORCH_CPU_INDEX= (empty) skips the CPU index; TORCH_SPEC picks other versions.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
EXTRAS ?= all,test
SITE ?= $(VENV)/site

.PHONY: demo test docs install clean-venv

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@if [ -n "$(TORCH_CPU_INDEX)" ] && ! command -v nvidia-smi >/dev/null 2>&1 \
	    && ! $(PY) -c "import torch" >/dev/null 2>&1; then \
	  echo "no NVIDIA GPU found: trying the CPU build of torch from $(TORCH_CPU_INDEX)"; \
	  $(PY) -m pip install -q --retries 0 --timeout 20 --index-url $(TORCH_CPU_INDEX) $(TORCH_SPEC) \
	    || echo "the CPU index cannot be reached: installing PyPI's torch (runs on CPUs too)"; \
	fi
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/morphoscope demo --out morphoscope-demo

docs: $(VENV)/.installed
	$(PY) -m mkdocs build --strict --quiet --site-dir $(SITE)

test: $(VENV)/.installed docs
	bash scripts/install_browser_test_deps.sh || echo "browser tests will be skipped"
	HF_HUB_OFFLINE=1 MPLBACKEND=Agg $(PY) -m pytest -q

clean-venv:
	rm -rf $(VENV)
