# chatmesh: `make up` runs the whole mesh on loopback, `make test` runs every test.
# Every target installs what it needs first and is safe to re-run.

SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON_SYS ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BUF := $(VENV)/bin/buf
export PYTHONPATH := $(CURDIR):$(CURDIR)/gen/python
export GOFLAGS := -mod=mod

PROTOVALIDATE_VERSION := v1.2.2
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2
GRPCURL_VERSION := v1.9.3
PROTODEPS := build/protodeps/protovalidate/buf/validate/validate.proto

# llama-cpp-python builds from source: a portable AVX2 build (a native build crashed in
# ggml's AMX kernel on the first multi-token prompt, and a native wheel in pip's cache
# would not run on another CPU). For NVIDIA GPUs, `make setup-cuda` after `make setup`.
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
# The GPU's compute capability for setup-cuda: native (the GPU in this machine), or 90 (H100/H200), 89, 80...
CUDA_ARCH ?= native

# Areas add their own targets in make/*.mk, and what `make test` and `make up` need first
# to TEST_PREREQS and UP_PREREQS.
TEST_PREREQS :=
UP_PREREQS :=
-include make/*.mk

STAMP_PY := $(VENV)/.stamp-requirements
STAMP_NODE := tools/node_modules/.stamp
GO_TOOLS := bin/protoc-gen-go bin/protoc-gen-go-grpc bin/grpcurl

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2}'

# ---- setup ---------------------------------------------------------------------------

$(STAMP_PY): requirements.txt
	test -x $(PY) || $(PYTHON_SYS) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(STAMP_NODE): tools/package.json
	cd tools && npm install --no-audit --no-fund --loglevel=error
	touch $@

bin/protoc-gen-go:
	GOBIN=$(CURDIR)/bin go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
bin/protoc-gen-go-grpc:
	GOBIN=$(CURDIR)/bin go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)
bin/grpcurl:
	GOBIN=$(CURDIR)/bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)

# protovalidate's validate.proto, from its Go module (no BSR here; not committed).
$(PROTODEPS):
	mkdir -p $(dir $@)
	dir=$$(cd /tmp && go mod download -json github.com/bufbuild/protovalidate@$(PROTOVALIDATE_VERSION) | $(CURDIR)/$(PY) -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') && \
	  install -m 0644 $$dir/proto/protovalidate/buf/validate/validate.proto $@

.PHONY: setup
setup: $(STAMP_PY) $(STAMP_NODE) $(GO_TOOLS) $(PROTODEPS) ## Install everything the mesh and its tests need
	$(PY) -m mesh.deps.cassandra install
	$(PY) -m mesh.deps.s3proxy install

LLAMA_VERSION := $(shell sed -n 's/^llama-cpp-python==//p' requirements.txt)

.PHONY: setup-cuda
setup-cuda: $(STAMP_PY) ## Rebuild llama-cpp-python with CUDA (needs nvcc); then CHATMESH_INFERENCE_N_GPU_LAYERS=-1
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) -DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=$(CUDA_ARCH) -DLLAVA_BUILD=OFF" \
	  $(PY) -m pip install --force-reinstall --no-deps --no-binary llama-cpp-python --no-cache-dir \
	  llama-cpp-python==$(LLAMA_VERSION)

# ---- contracts -----------------------------------------------------------------------

.PHONY: generate
generate: $(STAMP_PY) $(STAMP_NODE) bin/protoc-gen-go bin/protoc-gen-go-grpc $(PROTODEPS) ## Regenerate gen/ (Python, TypeScript, Go) from proto/
	rm -rf gen/python/chatmesh gen/python/buf gen/ts/chatmesh gen/ts/buf gen/go/chatmesh
	$(BUF) generate --path proto/chatmesh

.PHONY: check-generated
check-generated: generate ## Fail if gen/ differs from what proto/ generates
	@if [ -n "$$(git status --porcelain -- gen)" ]; then \
	  echo "gen/ is stale: run 'make generate' and commit the result"; git status --short -- gen; exit 1; fi

# ---- quality -------------------------------------------------------------------------

.PHONY: lint
lint: $(STAMP_PY) $(PROTODEPS) ## ruff, mypy, buf lint, buf breaking against main
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy services mesh gateway bench tools deploy sdk/python/src
	$(BUF) lint
	$(BUF) format --diff --exit-code proto
	./tools/buf-breaking.sh main

.PHONY: fmt
fmt: $(STAMP_PY) ## Format Python and proto files
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(BUF) format -w proto

.PHONY: test
test: setup lint check-generated $(TEST_PREREQS) ## Every test: lint, generation check, unit, integration and e2e (real NATS, Cassandra, Envoy)
	$(PY) -m pytest

# ---- running the mesh ----------------------------------------------------------------

.PHONY: up
up: setup $(UP_PREREQS) ## Run the whole mesh on loopback in the foreground (Ctrl-C stops it)
	$(PY) -m mesh up

.PHONY: up-detached
up-detached: setup $(UP_PREREQS) ## Start the mesh in the background; returns once every health check is green
	$(PY) -m mesh up --detach

.PHONY: down
down: ## Stop a detached mesh; leaves no process or port behind
	$(PY) -m mesh down

.PHONY: status
status: ## Is a detached mesh running?
	$(PY) -m mesh status

# ---- benchmarks ----------------------------------------------------------------------

.PHONY: bench
bench: bench-gateway bench-chat bench-history bench-inference ## Every benchmark

.PHONY: bench-gateway
bench-gateway: setup ## Gateway overhead: unary and server-streaming through Envoy vs direct
	$(PY) -m bench.gateway

.PHONY: bench-chat
bench-chat: setup ## Chat end to end through Envoy: 1,000 Connect streams, send rate, latency, vs raw NATS
	$(PY) -m bench.chat

.PHONY: bench-history
bench-history: setup ## History: SendMessage rate, loading 1M messages, ListMessages page latency vs bare CQL
	$(PY) -m bench.history

.PHONY: bench-inference-gpu
bench-inference-gpu: setup ## The bundled model on the CPU and on the GPU (after make setup-cuda), same run
	$(PY) -m bench.inference_gpu

.PHONY: bench-inference
bench-inference: setup ## Inference on the bundled SmolLM2: stream vs in-process llama.cpp, cancel, concurrency, turn-20 TTFT
	$(PY) -m bench.inference
