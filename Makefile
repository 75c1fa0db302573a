# The two commands a newcomer needs (see README.md):
#   make demo   set up, build the demo model for a Raspberry Pi 5, and generate text with the bundle
#   make test   set up and run the test suite (the slow tests: make test-slow; CI runs both)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_BUNDLE := bundles/demo-qwen3-4l-h128-raspberry-pi-5
DEMO_PROMPT := What does os.path.join do?

.PHONY: setup demo test test-slow bench
setup: $(VENV)/.installed

# torch and torchvision are pinned in pyproject.toml to the builds pip finds on this machine's disk.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: setup
	$(BIN)/edgeqwen build --target raspberry-pi-5 --out $(DEMO_BUNDLE) --force
	$(BIN)/edgeqwen run $(DEMO_BUNDLE) "$(DEMO_PROMPT)" --max-new-tokens 80

# The default run takes about 14 minutes on a 2-core machine; the slow tests (kill/interrupt builds,
# a fresh OpenVINO virtualenv, the quality ladder's climbs, the data-aware rungs) run in CI after it.
test: setup
	$(BIN)/python -m pytest -m "not slow"

test-slow: setup
	$(BIN)/python -m pytest -m slow

# Not a test: the side-by-side speed benchmark (benchmarks/RESULTS.md), about 25 minutes on 2 cores.
bench: setup
	$(BIN)/python benchmarks/side_by_side.py
