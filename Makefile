# The two set-up commands in the README are `make serve` and `make test`.
PY ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)

.PHONY: setup models serve test lint test-fast report sweep bench bench-quick bench-peers bench-ops bench-isa stress audit runtime-size clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first and alone, pinned, so nothing can pull a CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[pipeline,service,dev]'
	touch $(STAMP)

setup: $(STAMP)

## Build every variant in models/recipes.toml that is not built yet.
models: $(STAMP)
	$(BIN)/python -m compression build --if-missing
	$(BIN)/python -m compression heads --if-missing

## Set up, build the models if missing, and serve the default compressed model.
serve: models
	$(BIN)/python -m service

## Set up, lint (ruff check and format check), and run the whole test suite; skipped tests are listed with
## the package that would run them.
test: $(STAMP) lint
	$(BIN)/python -m pytest -q -rs

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

report: $(STAMP)
	$(BIN)/python -m compression report

sweep: $(STAMP)
	$(BIN)/python -m compression sweep

## Benchmark every variant and sentence-transformers; refresh bench/latest/ and the README block.
bench: models
	$(BIN)/python -m bench --publish
	$(BIN)/python -m bench.long_inputs --publish

bench-quick: models
	$(BIN)/python -m bench --quick

## Ours beside sentence-transformers ONNX (fp32, int8), fastembed and model2vec, each in its own venv.
bench-peers: models
	$(BIN)/python -m bench.peers --publish
	$(BIN)/python -m bench.peers --publish --cpu avx2

## Per-operator profile and wall-clock session time of each variant, natively and on the AVX2 kernels (docs/benchmark.md's ops blocks).
bench-ops: models
	$(BIN)/python -m bench.ops --models minilm-l6-int8 minilm-l6-fact minilm-l6 --wall 15 --publish
	$(BIN)/python -m bench.ops --models minilm-l6-int8 minilm-l6-fact minilm-l6 --wall 15 --publish --cpu avx2

## Each model's host check natively, with AVX-512 hidden from cpuid and on an emulated AVX2 CPU (needs qemu-user; docs/results.md's isa block).
bench-isa: models
	$(BIN)/python -m bench.isa_fidelity --publish

## Hostile input, a burst, concurrency, a soak, schema fuzzing and pip-audit on the real models.
stress: models
	$(BIN)/python -m bench.stress

audit: $(STAMP)
	$(BIN)/pip-audit --skip-editable

## What the Docker runtime stage ships, measured without an engine: the service-only venv and the models.
runtime-size:
	rm -rf /tmp/embed-runtime-venv && $(PY) -m venv /tmp/embed-runtime-venv
	/tmp/embed-runtime-venv/bin/pip install -q '.[service]' && sh deploy/slim-venv.sh /tmp/embed-runtime-venv
	@! /tmp/embed-runtime-venv/bin/python -c 'import torch' 2>/dev/null || (echo "torch in the runtime venv"; exit 1)
	du -sm /tmp/embed-runtime-venv models/minilm-l6 models/minilm-l6-int8 models/minilm-l6-fact

clean:
	rm -rf models/*/ models/.cache reports
