# Scale-out: replicas, rolling restarts, the scale benchmark (issue 14).

# The services `make restart-rolling` restarts, in order (default: every one).
SERVICES ?=

.PHONY: restart-rolling
restart-rolling: ## Restart every replica of SERVICES (default: all) one at a time, without a failed call
	$(PY) -m mesh restart --rolling $(SERVICES)

.PHONY: scale
scale: ## Start or stop replicas of a running mesh: make scale REPLICAS="presence=3 history=2"
	$(PY) -m mesh scale $(REPLICAS)

.PHONY: bench-scale
bench-scale: setup ## Scale-out: discovery time of new replicas, rolling restart of every service under load
	PYTHONPATH=$(PYTHONPATH):$(CURDIR)/sdk/python/src $(PY) -m bench.scale
