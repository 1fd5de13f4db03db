# The course in two commands:  make lab  (set up, open JupyterLab)   make test  (set up, run every test)
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
NBVAL   = --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg
PORT   ?= 8888
HOST   ?= 127.0.0.1
# JupyterLab refuses to run as root unless told; pods and containers often are root.
ROOT_FLAG = $(if $(filter 0,$(shell id -u)),--allow-root)

.PHONY: lint setup lab test unit notebooks clean aiperf

setup: $(VENV)/.installed models/efficientnet_lite0/1/model.onnx models/efficientnet_lite0/1/model.pt $(BIN)/perf_analyzer

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh
	touch $@

# One prepare builds the model files and puts Perf Analyzer 2.51.0 into the environment
# (triton_course/perf_analyzer.py says how); `&:` makes the three one target group.
models/efficientnet_lite0/1/model.onnx models/efficientnet_lite0/1/model.pt $(BIN)/perf_analyzer &: $(VENV)/.installed
	$(BIN)/triton-course prepare

lab: setup
	$(BIN)/jupyter lab --ip $(HOST) --port $(PORT) --notebook-dir . $(ROOT_FLAG) notebooks/00_setup.ipynb

# Two workers, then what must run alone (conftest.py says which); both parts run, either failing fails the test.
# --durations: where the time goes, printed at the end of each part.
SUITE = --durations=20 tests $(NBVAL) notebooks labs/solutions
test: setup lint
	$(BIN)/python -m pytest -n 2 -m "not alone" $(SUITE); parallel=$$?; \
	$(BIN)/python -m pytest -m alone $(SUITE) && exit $$parallel

lint: setup
	$(BIN)/ruff check conftest.py triton_course tests scripts

unit: setup
	$(BIN)/python -m pytest tests

notebooks: setup
	$(BIN)/python -m pytest $(NBVAL) notebooks labs/solutions

# NVIDIA's LLM benchmark for lesson 16, in its own environment: its ~140 packages do not meet the course's pins.
# Not part of setup (about 150 s and 1 GB); the lesson says so when it is missing.
AIPERF = aiperf==0.13.0
aiperf: $(VENV)-aiperf/bin/aiperf
$(VENV)-aiperf/bin/aiperf:
	$(PYTHON) -m venv $(VENV)-aiperf
	$(VENV)-aiperf/bin/pip install --quiet $(AIPERF)

clean:
	rm -rf $(VENV) $(VENV)-aiperf workspace models/*/[0-9]*/model.onnx models/*/[0-9]*/model.pt
