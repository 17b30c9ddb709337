# Durability under faults (README "## Durability"): a whole mesh under load, each process
# SIGKILLed in turn, then a 3-node Cassandra and a 3-node NATS cluster with one node of each
# killed. Not part of `make test` (tests/chaos runs only with CHATMESH_CHAOS=1); CI runs both.
# The meshes' state and logs stay in build/test-output/chaos/ for a look after a failure.

.PHONY: test-chaos
test-chaos: setup ## Kill every process of a loaded mesh in turn, then a node of each 3-node cluster; print acked/stored/delivered per fault
	mkdir -p build/test-output
	CHATMESH_CHAOS=1 $(PY) -m pytest tests/chaos -q -rA --basetemp=build/test-output/chaos
