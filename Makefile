# Everything a fresh machine needs: `make demo` and `make test` create .venv when it is absent.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-classification test lint bench check clean web browser

# Selective Search (tools/make_proposals.py) is in OpenCV contrib. albumentations requires the plain
# wheel by name and both install the one cv2 module, so the contrib wheel of the same version goes in
# last, over it (README "Dependencies"); detector/proposals/selective_search.py names the same wheel.
OPENCV_CONTRIB := opencv-contrib-python-headless==4.14.0.94

# torch/torchvision pinned to the releases on this project's machines' disk (a CUDA build of the
# same versions elsewhere); everything else from setup.py's ranges.
$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install --quiet -e '.[test,ray,web]'
	$(PY) -m pip install --quiet --no-deps --force-reinstall $(OPENCV_CONTRIB)
	@touch $(STAMP)

# The browser tests (tests/test_web.py) drive Debian's chromium: installed where absent (a browser
# that downloads itself cannot be had on this project's machines); without it they skip, saying so.
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
		( (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && \
		   apt-get install -y -q chromium >/dev/null 2>&1)) && echo "installed chromium" ) || \
		echo "chromium could not be installed (apt-get as root): the browser tests will skip"

# ruff (pyproject.toml): pyflakes, pycodestyle, import order, bugbear, pyupgrade; the tests run after it.
lint: $(STAMP)
	$(PY) -m ruff check .

# pytest-xdist: one worker per core (tests/conftest.py shares the cores out as threads); TEST_WORKERS=0
# runs the suite in this one process.
TEST_WORKERS ?= auto
test: lint browser
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

# The whole job on the built-in miniature (README: "The demo"): the Table-1 summary; pretraining on
# the generated miniature ImageNet; six detectors on the generated miniature ILSVRC DET, each its
# own data order (model_index); their mAP and the six-model ensemble's, with plots and drawn
# detections, and report.html (the whole evaluation on one page). A second run finds each stage done and
# only re-scores (cached detections).
# The detectors train JOBS at a time, the cores shared out (on 2 CPU cores two members with a thread
# each train at 1.8x the pace of one with two). The *_ARGS add key=value overrides
# (tests/test_demo.py runs it smaller through them); DET_ARGS go to eval_map too, which must see the
# same data and work dir.
ENSEMBLE ?= 6
JOBS ?= 2
PRETRAIN_ARGS ?=
DET_ARGS ?=
EVAL_ARGS ?=
demo: $(STAMP)
	$(PY) -m backbone.summary
	$(PY) tools/pretrain_backbone.py configs/pretrain_toy.yaml $(PRETRAIN_ARGS)
	$(PY) tools/train_det.py configs/toy_det.yaml --ensemble $(ENSEMBLE) --jobs $(JOBS) $(DET_ARGS)
	$(PY) tools/eval_map.py configs/toy_det.yaml --ensemble $(ENSEMBLE) --metric all --draw 8 --report $(DET_ARGS) $(EVAL_ARGS)

# The paper's Table 3 on the miniature (README "Classification ensembles"): pretraining members
# model_index=0..2 (member 0 is the demo's run, not retrained when done), scored alone and as an
# ensemble with 1, 10 and 144 crops; the table goes to work_dirs/googlenet_toy/table3.json.
CLS_MEMBERS ?= 0 1 2
demo-classification: $(STAMP)
	@for k in $(CLS_MEMBERS); do echo "== pretraining member $$k: tools/pretrain_backbone.py configs/pretrain_toy.yaml model_index=$$k"; \
		$(PY) tools/pretrain_backbone.py configs/pretrain_toy.yaml model_index=$$k $(PRETRAIN_ARGS) || exit 1; done
	$(PY) tools/pretrain_backbone.py configs/pretrain_toy.yaml $(PRETRAIN_ARGS) --crops 1 10 144 --eval-only \
		$(foreach k,$(CLS_MEMBERS),work_dirs/googlenet_toy$(if $(filter 0,$(k)),,_m$(k))/backbone.pth)

# The web page (tools/web_demo.py) on the demo's members: http://127.0.0.1:$(PORT) until Ctrl-C.
PORT ?= 7860
web: $(STAMP)
	$(PY) tools/web_demo.py configs/toy_det.yaml --port $(PORT) $(DET_ARGS)

# Every CUDA path once (README: "On a GPU"): run it first on a new machine.
check: $(STAMP)
	$(PY) tools/selfcheck.py

bench: $(STAMP)
	$(PY) tools/benchmark.py backbone
	$(PY) tools/benchmark.py pretrain
	$(PY) tools/benchmark.py data
	$(PY) tools/benchmark.py eval
	$(PY) tools/benchmark.py detector
	$(PY) tools/benchmark.py ensemble
	$(PY) tools/benchmark.py proposals
	$(PY) tools/benchmark.py engines
	$(PY) tools/benchmark.py gpu $$($(PY) -c "import torch; print('--batch 8 --size 600 --pretrain-batch 256' \
		if torch.cuda.is_available() else '')")

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
