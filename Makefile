# Two commands (README): `make demo` runs the whole pipeline on generated demo data, `make test` runs the tests.
# Each sets up its own isolated environment in .venv first; a second run reuses it.
PYTHON ?= python3
VENV ?= .venv
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUTPUT ?= output/demo
PY := $(VENV)/bin/python

.PHONY: venv lint test test-slurm test-all demo clean
venv: $(VENV)/.installed

$(VENV)/.installed: setup.py Makefile tools/install_detectron2.py tools/detectron2_stand_in/_C.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH_PINS)
	$(PY) -m pip install -e '.[dev]'
	$(PY) tools/install_detectron2.py
	$(PY) -c "import detectron2, faiss, sklearn, pycocotools, fvcore, safetensors, submitit, sslt_core, sslt_demo, eval, pretrain, transfer, evaluations, sslt_pipeline"
	touch $@

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

test: venv lint
	$(PY) -m pytest -m "not slow and not slurm" -q

# On a real one-node SLURM cluster that the tests start and stop (tests/cluster/slurm_up.sh; as root, installing
# slurm-wlm, slurmdbd, munge and mariadb-server with apt-get when missing); elsewhere they skip, saying why.
test-slurm: venv
	$(PY) -m pytest -m slurm -q tests/cluster

test-all: venv lint
	$(PY) -m pytest -q

demo: venv
	$(PY) tools/run_pipeline.py --config configs/pipeline/demo.yaml --output-dir $(DEMO_OUTPUT)

clean:
	rm -rf $(VENV) data/demo $(DEMO_OUTPUT)
