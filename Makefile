# Everything a fresh machine needs: `make demo` and `make test` create .venv when it is absent.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench summary clean

# torch/torchvision pinned to the releases on this project's machines' disk (a CUDA build of the
# same versions elsewhere); everything else from setup.py's ranges.
$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

# Until the detector lands, the demo runs what exists: the Table-1 summary, pretraining on the
# generated miniature ImageNet (a second run finds it finished and only re-scores it), the
# backbone benchmark.
demo: $(STAMP)
	$(PY) -m backbone.summary
	$(PY) tools/pretrain_backbone.py configs/pretrain_toy.yaml
	$(PY) tools/benchmark.py backbone --repeats 3

bench: $(STAMP)
	$(PY) tools/benchmark.py backbone
	$(PY) tools/benchmark.py pretrain
	$(PY) tools/benchmark.py data
	$(PY) tools/benchmark.py eval
	$(PY) tools/benchmark.py detector

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
