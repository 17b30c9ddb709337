# The fuzz suite (tests/fuzz): every RPC of every service with generated requests, byte mutations and
# gRPC-web bodies through Envoy, against a real mesh. `make test` runs it with a fixed budget (about two
# minutes here: CHATMESH_FUZZ_EXAMPLES=50, CHATMESH_FUZZ_MUTATIONS=100 per RPC, derandomized); `make
# fuzz` runs only it, `make fuzz-long` a long randomized run (300 examples and 600 mutations per RPC: 186 tests passed in 7.5 minutes here on
# 2026-12-02, no finding) writing every finding
# to .chatmesh/fuzz-findings.jsonl. FUZZ_RUNNING=1 fuzzes the mesh `make up` already runs.

FUZZ_LONG_EXAMPLES ?= 300
FUZZ_LONG_MUTATIONS ?= 600
FUZZ_REPORT ?= .chatmesh/fuzz-findings.jsonl
FUZZ_ENV = $(if $(FUZZ_RUNNING),CHATMESH_FUZZ_RUNNING_MESH=1)

.PHONY: fuzz fuzz-long
fuzz: setup ## The fuzz suite alone, with `make test`'s budget
	$(FUZZ_ENV) $(PY) -m pytest tests/fuzz -q

fuzz-long: setup ## A long randomized fuzz run (FUZZ_LONG_EXAMPLES/MUTATIONS per RPC); findings in .chatmesh/fuzz-findings.jsonl
	mkdir -p $(dir $(FUZZ_REPORT))
	$(FUZZ_ENV) CHATMESH_FUZZ_EXAMPLES=$(FUZZ_LONG_EXAMPLES) CHATMESH_FUZZ_MUTATIONS=$(FUZZ_LONG_MUTATIONS) \
		CHATMESH_FUZZ_RANDOM=1 CHATMESH_FUZZ_REPORT=$(FUZZ_REPORT) $(PY) -m pytest tests/fuzz -q
