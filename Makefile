# Two commands (README): `make demo` runs the main job on generated demo data, `make test` runs the tests.
# Each sets up its own isolated environment in .venv first; a second run reuses it.
PYTHON ?= python3
VENV ?= .venv
TORCH_PINS ?= torch==2.14.1 torchvision==0.29.1
DEMO_DATA ?= data/demo
DEMO_SIZE ?= default
PY := $(VENV)/bin/python

.PHONY: venv test test-all demo clean
venv: $(VENV)/.installed

$(VENV)/.installed: setup.py Makefile tools/install_detectron2.py tools/detectron2_stand_in/_C.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install $(TORCH_PINS)
	$(PY) -m pip install -e '.[dev]'
	$(PY) tools/install_detectron2.py
	$(PY) -c "import detectron2, faiss, sklearn, pycocotools, fvcore, pretrain, transfer, eval"
	touch $@

test: venv
	$(PY) -m pytest -m "not slow" -q

test-all: venv
	$(PY) -m pytest -q

demo: venv
	$(PY) tools/make_demo_data.py --out $(DEMO_DATA) --size $(DEMO_SIZE)
	$(PY) tools/check_datasets.py --data-root $(DEMO_DATA) --verify-images

clean:
	rm -rf $(VENV) $(DEMO_DATA)
