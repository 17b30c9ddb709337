# The forms service's benchmark (see bench/forms.py and services/forms/README.md).

.PHONY: bench-forms
bench-forms: setup ## Forms: 1,000 clients x 5 submits and 500/s open loop through Envoy, processed latency, vs raw JetStream
	$(PY) -m bench.forms

bench: bench-forms
