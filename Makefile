# make demo: a virtual board runs a real job end to end.  make test: the whole suite.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: setup esp32like demo test lint typecheck clean bench awscli

setup:
	@bash tools/setup.sh 2> >(grep -v "^WARNING: Location" >&2)

# The aws CLI in a venv of its own (build/awscli; it pins its own botocore), linked as .venv/bin/aws.
awscli: setup

# The set-up and the esp32like runtime: MicroPython v1.27.0 built from source as an ESP32 is (32-bit, single
# floats, the library frozen), cached under build/esp32like. The tests and benchmarks run on it; the demo does not.
esp32like:
	@bash tools/setup.sh --esp32like 2> >(grep -v "^WARNING: Location" >&2)

demo: setup
	$(VENV)/python tools/demo.py

lint: setup
	$(VENV)/ruff check firmware boards tools host_tests

typecheck: setup
	$(VENV)/mypy
	$(VENV)/mypy --config-file tools/mypy-firmware.ini

test: lint typecheck esp32like
	$(VENV)/pytest

# Figures against the naive client and the SDKs, side by side (BENCHMARKS.md); ARGS=--quick for a short run.
bench: esp32like
	$(VENV)/python -m bench $(ARGS)

clean:
	rm -rf build .venv .pytest_cache .mypy_cache .ruff_cache
