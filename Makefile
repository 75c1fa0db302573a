# The two commands a newcomer needs (see README.md):
#   make demo   set up, build the demo model for a Raspberry Pi 5, and generate text with the bundle
#   make test   set up and run the test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_BUNDLE := bundles/demo-qwen3-4l-h128-raspberry-pi-5
DEMO_PROMPT := What does os.path.join do?

.PHONY: setup demo test
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

test: setup
	$(BIN)/python -m pytest
