# The ingest service: its benchmark. The Qdrant server it needs is ../shared/bin/qdrant (or
# CHATMESH_QDRANT_BIN, or `qdrant` on PATH); see mesh/deps/qdrant.py.

.PHONY: bench-ingest
bench-ingest: setup ## Ingest through the gateway vs qdrant-client / Qdrant Edge direct, 1,536 dims, documents vs Embed alone
	$(PY) -m bench.ingest
