# The two commands a newcomer needs (see README.md):
#   make demo   set up, build the demo model for a Raspberry Pi 5 (checked on an emulated Cortex-A76), and
#               generate text with the bundle
#   make test   set up and run the test suite (the slow tests: make test-slow; CI runs both)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DEMO_BUNDLE := bundles/demo-qwen3-4l-h128-raspberry-pi-5
DEMO_PROMPT := What does os.path.join do?

.PHONY: setup demo test test-slow bench device-check-tools
setup: $(VENV)/.installed

# The device check runs arm64 bundles under QEMU in a Debian arm64 userland: two Debian packages,
# installed here when this runs as root (CI does); otherwise `make demo` builds without the check.
DEVICE_CHECK_PACKAGES := qemu-user-static mmdebstrap
device-check-tools:
	@if ! command -v qemu-aarch64-static >/dev/null || ! command -v mmdebstrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q --no-install-recommends $(DEVICE_CHECK_PACKAGES) >/dev/null 2>&1 || \
	      { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $(DEVICE_CHECK_PACKAGES) >/dev/null; }; \
	  else echo "make: the device check needs $(DEVICE_CHECK_PACKAGES): sudo apt-get install $(DEVICE_CHECK_PACKAGES)"; fi; \
	fi

# torch and torchvision are pinned in pyproject.toml to the builds pip finds on this machine's disk.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

demo: setup device-check-tools
	$(BIN)/edgeqwen build --target raspberry-pi-5 --out $(DEMO_BUNDLE) --force \
	  $$(command -v qemu-aarch64-static >/dev/null && command -v mmdebstrap >/dev/null || echo --no-device-check)
	$(BIN)/edgeqwen run $(DEMO_BUNDLE) "$(DEMO_PROMPT)" --max-new-tokens 80

# The default run takes about 15 minutes on a 2-core machine (the slow suite about 24); the slow tests (kill/interrupt builds,
# a fresh OpenVINO virtualenv, the quality ladder's climbs, the data-aware rungs) run in CI after it.
test: setup device-check-tools
	$(BIN)/python -m pytest -m "not slow" --durations=25

# The slow suite also fuzzes with Hypothesis's larger "ci" profile (tests/conftest.py).
test-slow: setup device-check-tools
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m pytest -m "slow or fuzz" --durations=40

# Not a test: the side-by-side speed benchmark (benchmarks/RESULTS.md), about 25 minutes on 2 cores.
bench: setup
	$(BIN)/python benchmarks/side_by_side.py
